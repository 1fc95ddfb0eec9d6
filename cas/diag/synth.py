"""Synthetic scrambled transport streams with chosen faults, for the probe's tests and benchmark.

The stream is a constant-bitrate multiplex (ISO/IEC 13818-1) of a few services, built slot by
slot: packet ``k`` is at ``k·1504/bitrate`` seconds.  Per service a video and an audio PID with
random payloads (what scrambled payloads look like), the scrambling parity of crypto-period
``n = ⌊t / crypto_period⌋`` in transport_scrambling_control, a PCR in the video PID's
adaptation field every ``pcr_interval_ms``, an ECM section (table_id ``0x80 | n & 1``, our
clear ECM header, a dummy sealed body) every ``ecm_interval_ms``; PAT, CAT, PMTs and SDT every
``psi_interval_ms``; EMM sections (unique, shared, global) as a carousel at
``emm_bitrate_bps``.  Nothing is really scrambled: the probe looks only at headers.

Faults (per service or stream-wide): ECMs that stop or pause, a control word that never
changes, a service scrambled without any CA_descriptor, dropped packets (continuity errors),
garbage bytes (sync loss), no PCR, no EMMs.
"""

from __future__ import annotations

import io
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from cas import DEFAULT_CA_SYSTEM_ID
from cas.formats.ecm import Ecm, EcmHeader, build_ecm
from cas.formats.emm import (
    Emm,
    EmmHeader,
    GlobalAddress,
    SharedAddress,
    UniqueAddress,
    build_emm,
)
from cas.formats.psi import (
    CaDescriptor,
    Cat,
    Pat,
    PatProgram,
    Pmt,
    PmtStream,
    Sdt,
    SdtService,
    ServiceDescriptor,
    build_cat,
    build_pat,
    build_pmt,
    build_sdt,
)
from cas.formats.ts import Packetizer

PACKET_BITS = 188 * 8
PCR_HZ = 27_000_000
PCR_MODULUS = (1 << 33) * 300
START_S = 1_750_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class SynthService:
    """One service of the synthetic stream, and its faults."""

    service_id: int
    name: str
    video_pid: int
    audio_pid: int
    pmt_pid: int
    ecm_pid: int | None  # None: no CA_descriptor (a scrambled service then has no ECM)
    scrambled: bool = True
    provider: str = "cas-sim"
    video_share: int = 4
    audio_share: int = 1
    #: no ECM at or after this time (s)
    ecm_stop_s: float | None = None
    #: no ECM within [start, end) (s)
    ecm_gap_s: tuple[float, float] | None = None
    #: the control word never changes: one parity and one ECM for the whole stream
    cw_frozen: bool = False


def default_services(count: int = 4, *, first_id: int = 101) -> tuple[SynthService, ...]:
    """``count`` scrambled services with the PIDs the scrambler would give them."""
    return tuple(
        SynthService(service_id=first_id + i, name=f"Channel {first_id + i}",
                     video_pid=0x100 + 0x10 * i, audio_pid=0x101 + 0x10 * i,
                     pmt_pid=0x1000 + i, ecm_pid=0xC01 + i)
        for i in range(count))


def default_emms(*, count: int = 24, first_serial: int = 2_000_000_001) -> tuple[bytes, ...]:
    """A mix of unique, shared and global EMM sections (dummy sealed bodies)."""
    out: list[bytes] = []
    for i in range(count):
        kind = i % 4
        address: UniqueAddress | SharedAddress | GlobalAddress
        if kind in (0, 1):
            address = UniqueAddress(serial=first_serial + i)
        elif kind == 2:
            address = SharedAddress.of(0x000100 + i, [0, 1, 2, i % 256])
        else:
            address = GlobalAddress()
        header = EmmHeader(address=address, seq=i + 1, not_after_s=START_S + 86_400,
                           nonce=bytes(12))
        out.append(build_emm(Emm(header=header, body=bytes(48))))
    return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class SynthOptions:
    duration_s: float = 10.0
    bitrate_bps: int = 20_000_000
    crypto_period_s: float = 10.0
    ecm_interval_ms: int = 100
    pcr_interval_ms: int = 40
    psi_interval_ms: int = 100
    ca_system_id: int = DEFAULT_CA_SYSTEM_ID
    emm_pid: int | None = 0x0BFF
    emm_bitrate_bps: int = 32_000
    emm_sections: tuple[bytes, ...] | None = None  # None: default_emms()
    pcr: bool = True
    #: PCR of packet 0 (27 MHz ticks); near 2**33 * 300 to test the wrap
    pcr_start_ticks: int = 0
    transport_stream_id: int = 1
    #: (PID, time s): drop the first packet of PID at or after that time (a CC error)
    drop_packets: tuple[tuple[int, float], ...] = ()
    #: (time s, byte count): garbage bytes inserted there (a sync loss)
    garbage: tuple[tuple[float, int], ...] = ()
    seed: int = 1
    extra_pids: tuple[int, ...] = field(default=())  # clear PIDs in no PMT (unreferenced)


@dataclass(frozen=True, slots=True, kw_only=True)
class SynthSummary:
    packets: int
    bytes: int
    ecm_sections: int
    emm_sections: int
    pcrs: int


def _pcr_packet(pid: int, cc: int, ticks: int, tsc: int, payload: bytes) -> bytes:
    base, ext = divmod(ticks, 300)
    base &= (1 << 33) - 1
    af = bytes((7, 0x10, (base >> 25) & 0xFF, (base >> 17) & 0xFF, (base >> 9) & 0xFF,
                (base >> 1) & 0xFF, ((base & 1) << 7) | 0x7E | (ext >> 8), ext & 0xFF))
    header = bytes((0x47, 0x40 | (pid >> 8), pid & 0xFF, (tsc << 6) | 0x30 | cc))
    return header + af + payload[:188 - 4 - len(af)]


def write_stream(out: BinaryIO, services: Sequence[SynthService],
                 options: SynthOptions = SynthOptions()) -> SynthSummary:
    """Write the synthetic stream to ``out``."""
    opt = options
    rng = random.Random(opt.seed)
    rate = opt.bitrate_bps
    total = int(opt.duration_s * rate / PACKET_BITS)

    def slot(t: float) -> int:
        return -(-round(t * rate) // PACKET_BITS)  # ceil(t * rate / 1504) on integers

    # --- PSI -------------------------------------------------------------------------------
    pat = build_pat(Pat(transport_stream_id=opt.transport_stream_id,
                        programs=tuple(PatProgram(program_number=s.service_id, pid=s.pmt_pid)
                                       for s in services)))
    cat = build_cat(Cat(descriptors=(CaDescriptor(ca_system_id=opt.ca_system_id,
                                                  ca_pid=opt.emm_pid),)
                        if opt.emm_pid is not None else ()))
    sdt = build_sdt(Sdt(transport_stream_id=opt.transport_stream_id, original_network_id=1,
                        services=tuple(SdtService(
                            service_id=s.service_id, eit_schedule_flag=False,
                            eit_present_following_flag=False, running_status=4,
                            free_ca_mode=s.scrambled,
                            descriptors=(ServiceDescriptor.of(0x01, s.provider, s.name),))
                            for s in services)))
    pmts = [build_pmt(Pmt(program_number=s.service_id, pcr_pid=s.video_pid,
                          descriptors=((CaDescriptor(ca_system_id=opt.ca_system_id,
                                                     ca_pid=s.ecm_pid),)
                                       if s.ecm_pid is not None else ()),
                          streams=(PmtStream(stream_type=0x1B, elementary_pid=s.video_pid),
                                   PmtStream(stream_type=0x0F, elementary_pid=s.audio_pid))))
            for s in services]
    psi_packetizers = [(Packetizer(0x0000), pat), (Packetizer(0x0001), cat),
                       (Packetizer(0x0011), sdt)] + [
        (Packetizer(s.pmt_pid), pmt) for s, pmt in zip(services, pmts, strict=True)]
    ecm_pk = {s.service_id: Packetizer(s.ecm_pid) for s in services if s.ecm_pid is not None}
    emm_sections = list(opt.emm_sections if opt.emm_sections is not None else default_emms())
    emm_pk = Packetizer(opt.emm_pid) if opt.emm_pid is not None else None

    def ecm_section(svc: SynthService, cp: int) -> bytes:
        header = EcmHeader(channel_id=svc.service_id, ecm_key_index=1,
                           timestamp_s=START_S + int(cp * opt.crypto_period_s),
                           table_id=0x80 | (cp & 1), nonce=cp.to_bytes(12, "big"))
        return build_ecm(Ecm(header=header, body=rng.randbytes(40)))

    # --- ES templates: (pid) -> [tsc][cc] packet ---------------------------------------------
    es_pids: list[tuple[int, SynthService]] = []
    pattern: list[int] = []
    for s in services:
        es_pids += [(s.video_pid, s), (s.audio_pid, s)]
    for pid in opt.extra_pids:
        es_pids.append((pid, SynthService(service_id=0, name="", video_pid=pid, audio_pid=pid,
                                          pmt_pid=0, ecm_pid=None, scrambled=False)))
    index = {pid: i for i, (pid, _) in enumerate(es_pids)}
    for s in services:
        pattern += [index[s.video_pid]] * s.video_share + [index[s.audio_pid]] * s.audio_share
    pattern += [index[pid] for pid in opt.extra_pids]
    payloads = [rng.randbytes(184) for _ in es_pids]
    templates = [[[bytes((0x47, pid >> 8, pid & 0xFF, (tsc << 6) | 0x10 | cc)) + payloads[i]
                   for cc in range(16)] for tsc in range(4)] for i, (pid, _) in enumerate(es_pids)]
    cc = [0] * len(es_pids)
    scrambled = [s.scrambled for _, s in es_pids]
    frozen = [s.cw_frozen for _, s in es_pids]
    pcr_due = {index[s.video_pid]: False for s in services}

    # --- schedules (slot numbers) ----------------------------------------------------------
    psi_every = slot(opt.psi_interval_ms / 1000)
    ecm_every = slot(opt.ecm_interval_ms / 1000)
    pcr_every = slot(opt.pcr_interval_ms / 1000)
    emm_every = (max(1, slot(PACKET_BITS / opt.emm_bitrate_bps))
                 if emm_pk is not None and opt.emm_bitrate_bps > 0 and emm_sections else None)
    drops = sorted((slot(t), pid) for pid, t in opt.drop_packets)
    garbage = sorted((slot(t), n) for t, n in opt.garbage)
    cp_slots = slot(opt.crypto_period_s)
    next_psi = next_ecm = next_pcr = 0
    next_emm = 0 if emm_every is not None else total + 1
    due: deque[bytes] = deque()
    ecm_cache: dict[tuple[int, int], bytes] = {}
    emm_queue: deque[bytes] = deque()
    emm_i = 0
    n_ecm = n_emm = n_pcr = 0
    plen = len(pattern)
    pick = 0
    buf: list[bytes] = []
    written = 0
    k = 0
    next_event = 0
    while k < total:
        if k >= next_event:
            t = k * PACKET_BITS / rate
            if k >= next_psi:
                for pk, section in psi_packetizers:
                    due.extend(pk.packetize(section))
                next_psi += psi_every
            if k >= next_ecm:
                for s in services:
                    if s.ecm_pid is None:
                        continue
                    if s.ecm_stop_s is not None and t >= s.ecm_stop_s:
                        continue
                    if s.ecm_gap_s is not None and s.ecm_gap_s[0] <= t < s.ecm_gap_s[1]:
                        continue
                    cp = 0 if s.cw_frozen else k // cp_slots
                    key = (s.service_id, cp)
                    ecm = ecm_cache.get(key)
                    if ecm is None:
                        ecm = ecm_cache[key] = ecm_section(s, cp)
                    due.extend(ecm_pk[s.service_id].packetize(ecm))
                    n_ecm += 1
                next_ecm += ecm_every
            if k >= next_pcr:
                if opt.pcr:
                    for i in pcr_due:
                        pcr_due[i] = True
                next_pcr += pcr_every
            if emm_every is not None and k >= next_emm and emm_pk is not None:
                if not emm_queue:
                    emm_queue.extend(emm_pk.packetize(emm_sections[emm_i % len(emm_sections)]))
                    emm_i += 1
                    n_emm += 1
                due.append(emm_queue.popleft())
                next_emm += emm_every
            while garbage and garbage[0][0] <= k:
                buf.append(bytes(rng.randrange(0, 0x47) for _ in range(garbage.pop(0)[1])))
            next_event = min(next_psi, next_ecm, next_pcr, next_emm,
                             garbage[0][0] if garbage else total)
        if due:
            buf.append(due.popleft())
        else:
            i = pattern[pick]
            pick = pick + 1 if pick + 1 < plen else 0
            if drops and drops[0][0] <= k and drops[0][1] == es_pids[i][0]:
                drops.pop(0)
                cc[i] = (cc[i] + 1) & 15  # the packet is lost: its counter value is skipped
            tsc = 0
            if scrambled[i]:
                tsc = 2 if frozen[i] else 2 + (k // cp_slots & 1)
            if pcr_due.get(i):
                pcr_due[i] = False
                ticks = (opt.pcr_start_ticks + k * PACKET_BITS * PCR_HZ // rate) % PCR_MODULUS
                buf.append(_pcr_packet(es_pids[i][0], cc[i], ticks, tsc, payloads[i]))
                n_pcr += 1
            else:
                buf.append(templates[i][tsc][cc[i]])
            cc[i] = (cc[i] + 1) & 15
        k += 1
        if len(buf) >= 8192:
            data = b"".join(buf)
            out.write(data)
            written += len(data)
            buf.clear()
    data = b"".join(buf)
    out.write(data)
    written += len(data)
    return SynthSummary(packets=total, bytes=written, ecm_sections=n_ecm, emm_sections=n_emm,
                        pcrs=n_pcr)


def make_stream(services: Sequence[SynthService] | None = None,
                options: SynthOptions = SynthOptions()) -> bytes:
    """The synthetic stream as bytes (for tests: keep it short)."""
    out = io.BytesIO()
    write_stream(out, services if services is not None else default_services(), options)
    return out.getvalue()
