"""The scrambler: a clear MPEG-TS in, a scrambled test stream with ECMs and EMMs out.

What it does to the stream (ISO/IEC 13818-1 §2.4.4, EN 300 468, ETSI TS 100 289, TS 103 127):

* **Prescan.** Reads the start of the input until the PAT and every PMT it lists are complete,
  so it knows each service's elementary PIDs and PCR PID before touching a payload.
* **PSI.** Every PMT gets a program-level CA_descriptor (tag 0x09, our CA_system_ID,
  CA_PID = the service's ECM PID) and, for CISSA, a scrambling_descriptor (tag 0x65, mode 0x10)
  — the input's PMT packets are dropped and ours put in their place. A CAT (PID 1) with one
  CA_descriptor pointing at the EMM PID follows every PAT; an input CAT is replaced by ours,
  keeping its other descriptors.
* **SDT.** With ``channel_numbers`` (the catalog's numbers by service_id), the SDT actual
  (table_id 0x42, PID 0x0011) is rewritten so that each listed service carries a
  private_data_specifier_descriptor (EACEM) and a logical_channel_descriptor (tag 0x83) with
  its number, and each scrambled service free_CA_mode = 1; boxes then show the head-end's
  channel numbers, not service_ids. The table is gathered until its last section and sent
  whole, over as many sections as its services now need. Other sections on PID 0x0011 pass
  unchanged (re-packetised). Without ``channel_numbers`` the SDT is not touched.
* **Crypto-periods.** Stream time comes from the PCR of the first service (or, for a stream
  without PCR, from the packet position at a nominal bitrate). Crypto-period ``n`` covers
  ``[n·P, (n+1)·P)``; its packets carry parity ``n & 1`` in transport_scrambling_control
  (``10`` even, ``11`` odd) and are scrambled with CW(n) of their service.
* **ECMs.** At the start of every crypto-period and then every repetition period, one ECM
  section per service (table_id ``0x80 | (n & 1)``) on the service's ECM PID. ECM(n) carries
  CW(n) and CW(n+1), so a box always holds the next key before the switch.
* **EMMs.** Sections from an EMM file, packetised on the EMM PID and inserted as a carousel at
  a fixed bitrate.
* **Payloads.** Only TS payloads are scrambled; headers and adaptation fields stay clear. The
  hot path is batched: packet classification is one small Python loop, the cipher work is
  one call per batch (libdvbcsa's bitslice batch API for CSA2, column-wise AES-CBC for CISSA,
  see :mod:`cas.headend.payload_ciphers`).

Inserted packets (CAT, ECM, EMM, rewritten PMTs and SDTs) are added to the stream — they do not
replace null packets — so the output is slightly longer than the input; PCR values are left
as they are (a file-based test stream, not a constant-rate multiplex).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from itertools import compress
from typing import IO, Protocol

import cas
from cas.crypto.cw import reduce_cw
from cas.errors import FormatError, StreamError, UsageError
from cas.formats import psi, ts
from cas.formats.sections import (
    MAX_PSI_SECTION_LENGTH,
    LongSection,
    parse_section,
    section_total_length,
)

PACKET_SIZE = 188
SYNC_BYTE = 0x47
PAT_PID = 0x0000
CAT_PID = 0x0001
NULL_PID = 0x1FFF
TID_PAT = 0x00
TID_CAT = 0x01
TID_PMT = 0x02
SDT_PID = psi.SDT_PID
#: EN 300 468 scrambling_mode for DVB-CISSA version 1.
SCRAMBLING_MODE_CISSA = 0x10
#: Where PID allocation for EMM/ECM starts when not given (clear of ffmpeg's 0x100.. ES PIDs
#: and 0x1000.. PMT PIDs).
DEFAULT_FIRST_CA_PID = 0x0C00
#: 27 MHz PCR clock (ISO/IEC 13818-1 §2.4.2.2); the PCR is 33-bit base × 300 + 9-bit ext.
PCR_HZ = 27_000_000
PCR_MODULUS = (1 << 33) * 300
#: How far into the input the prescan looks for PAT and PMTs.
PRESCAN_LIMIT_BYTES = 32 * 1024 * 1024
#: Packets processed per chunk (large chunks amortise the Python work per packet).
CHUNK_PACKETS = 8192


class Algorithm(StrEnum):
    CSA2 = "csa2"
    CISSA = "cissa"

    @property
    def cw_length(self) -> int:
        return 8 if self is Algorithm.CSA2 else 16


class PayloadCipher(Protocol):
    """Scrambles, in place, the clear payloads of the packets of ``pids`` in a run of TS
    packets with one control word, setting their transport_scrambling_control to ``parity``
    (0 even ``10``, 1 odd ``11``); returns how many packets it scrambled."""

    def scramble(self, view: memoryview, *, parity: int, pids: Collection[int],
                 cw: bytes) -> int: ...


class ServiceCrypto(Protocol):
    """What the scrambler needs per service: the CW of a crypto-period and its ECM section."""

    @property
    def channel_id(self) -> int: ...

    def cw(self, cp: int) -> bytes: ...

    def ecm_section(self, cp: int) -> bytes: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrambleConfig:
    """Scrambler settings; defaults: 10 s crypto-period, 100 ms ECM repetition."""

    algorithm: Algorithm = Algorithm.CSA2
    crypto_period_ms: int = 10_000
    ecm_repetition_ms: int = 100
    ca_system_id: int = cas.DEFAULT_CA_SYSTEM_ID
    emm_pid: int | None = None
    #: ECM PIDs by service id; services not listed get the next free PID.
    ecm_pids: Mapping[int, int] = field(default_factory=dict)
    #: EMM carousel bitrate (bit/s) and whether it loops over the EMM file.
    emm_bitrate_bps: int = 32_000
    emm_repeat: bool = True
    #: Used to time ECMs when the stream carries no PCR.
    nominal_bitrate_bps: int = 2_000_000
    #: Crypto-period number of the first period (ECM body and CW log carry it).
    first_cp: int = 0
    chunk_packets: int = CHUNK_PACKETS
    #: Logical channel numbers by service id, carried in the SDT (empty: SDT left as it is).
    channel_numbers: Mapping[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.crypto_period_ms <= 0 or self.ecm_repetition_ms <= 0:
            raise UsageError("crypto-period and ECM repetition must be positive")
        if self.ecm_repetition_ms > self.crypto_period_ms:
            raise UsageError("ECM repetition period longer than the crypto-period")
        if not 0 < self.ca_system_id <= 0xFFFF:
            raise UsageError(f"CA_system_ID {self.ca_system_id:#x} outside 0x0001..0xFFFF")
        if self.emm_pid is not None and not 0x20 <= self.emm_pid < NULL_PID:
            raise UsageError(f"EMM PID {self.emm_pid:#x} outside 0x0020..0x1FFE")
        for pid in self.ecm_pids.values():
            if not 0x20 <= pid < NULL_PID:
                raise UsageError(f"ECM PID {pid:#x} outside 0x0020..0x1FFE")
        if self.emm_bitrate_bps <= 0 or self.nominal_bitrate_bps <= 0:
            raise UsageError("bitrates must be positive")
        if self.chunk_packets <= 0:
            raise UsageError("chunk size must be positive")
        for sid, number in self.channel_numbers.items():
            if not 0 <= sid <= 0xFFFF:
                raise UsageError(f"service_id {sid} outside 0..65535")
            # logical_channel_number is 10 bits; 0 means "no number" to EACEM receivers.
            if not 1 <= number <= 1023:
                raise UsageError(f"channel number {number} of service {sid} outside 1..1023 "
                                 "(the logical_channel_descriptor has 10 bits)")


@dataclass(frozen=True, slots=True, kw_only=True)
class CwLogEntry:
    """One line of ``--cw-log``: which CW scrambled which packets of a channel."""

    channel_id: int
    service_id: int
    cp: int
    parity: str
    cw: bytes
    first_packet: int
    last_packet: int
    packets: int

    def to_json(self) -> dict[str, object]:
        return {"channel_id": self.channel_id, "service_id": self.service_id, "cp": self.cp,
                "parity": self.parity, "cw": self.cw.hex(), "first_packet": self.first_packet,
                "last_packet": self.last_packet, "packets": self.packets}


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceInfo:
    """A service as found in the input's PAT and PMT."""

    service_id: int
    pmt_pid: int
    pcr_pid: int
    es_pids: tuple[int, ...]
    ecm_pid: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrambleReport:
    """What a run did (for the CLI and the tests)."""

    algorithm: Algorithm
    packets_in: int
    packets_out: int
    scrambled_packets: int
    ecm_packets: int
    emm_packets: int
    crypto_periods: int
    timing: str  # "pcr" or "bitrate"
    emm_pid: int
    services: tuple[ServiceInfo, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "algorithm": self.algorithm.value, "packets_in": self.packets_in,
            "packets_out": self.packets_out, "scrambled_packets": self.scrambled_packets,
            "ecm_packets": self.ecm_packets, "emm_packets": self.emm_packets,
            "crypto_periods": self.crypto_periods, "timing": self.timing,
            "emm_pid": self.emm_pid,
            "services": [{"service_id": s.service_id, "pmt_pid": s.pmt_pid,
                          "pcr_pid": s.pcr_pid, "es_pids": list(s.es_pids),
                          "ecm_pid": s.ecm_pid} for s in self.services],
        }


# --- PSI rewriting ---------------------------------------------------------------------------

def _is_ours(desc: psi.Descriptor, ca_system_id: int) -> bool:
    return isinstance(desc, psi.CaDescriptor) and desc.ca_system_id == ca_system_id


def rewrite_pmt(section: bytes, *, ca_system_id: int, ecm_pid: int,
                scrambling_mode: int | None) -> bytes:
    """The PMT section with our CA_descriptor (and scrambling_descriptor) at program level.

    Existing CA_descriptors of our CA_system_ID and scrambling_descriptors are replaced; other
    descriptors (including other CA systems', for SimulCrypt) are kept in order.
    """
    pmt = psi.parse_pmt(section)
    kept: list[psi.Descriptor] = [
        d for d in pmt.descriptors
        if not _is_ours(d, ca_system_id) and not isinstance(d, psi.ScramblingDescriptor)]
    kept.append(psi.CaDescriptor(ca_system_id=ca_system_id, ca_pid=ecm_pid))
    if scrambling_mode is not None:
        kept.append(psi.ScramblingDescriptor(scrambling_mode=scrambling_mode))
    return psi.build_pmt(replace(pmt, descriptors=tuple(kept)))


def _is_lcn_or_eacem_pds(desc: psi.Descriptor) -> bool:
    return isinstance(desc, psi.RawDescriptor) and (
        desc.tag == psi.LOGICAL_CHANNEL_DESCRIPTOR_TAG
        or (desc.tag == psi.PRIVATE_DATA_SPECIFIER_DESCRIPTOR_TAG
            and desc.data == psi.EACEM_PRIVATE_DATA_SPECIFIER.to_bytes(4, "big")))


def _rewrite_service(sv: psi.SdtService, channel_numbers: Mapping[int, int],
                     scrambled: Collection[int]) -> psi.SdtService:
    number = channel_numbers.get(sv.service_id)
    descriptors = sv.descriptors
    if number is not None:
        kept = [d for d in descriptors if not _is_lcn_or_eacem_pds(d)]
        kept.append(psi.private_data_specifier_descriptor(psi.EACEM_PRIVATE_DATA_SPECIFIER))
        kept.append(psi.logical_channel_descriptor([(sv.service_id, number)]))
        descriptors = tuple(kept)
    # EN 300 468 §5.2.3: free_CA_mode 1 = one or more components are controlled by a CA system.
    return replace(sv, descriptors=descriptors,
                   free_ca_mode=sv.free_ca_mode or sv.service_id in scrambled)


def rewrite_sdt_table(sections: Sequence[bytes], channel_numbers: Mapping[int, int], *,
                      scrambled: Collection[int] = ()) -> tuple[bytes, ...]:
    """The complete SDT actual table ``sections`` (section 0..last, in order) with a
    logical_channel_descriptor for every service in ``channel_numbers`` (EN 300 468 §5.2.3
    service loop; EACEM/IEC 62216 tag 0x83 after an EACEM private_data_specifier_descriptor,
    §6.2.31, so it is in scope) and free_CA_mode = 1 on every service in ``scrambled``.

    A listed service's earlier LCN and EACEM specifier descriptors are replaced; everything
    else is kept in order. The services are spread over as many sections as they now need
    (:func:`cas.formats.psi.split_sdt`: the descriptors added to a full section would not fit
    it). SDT other (0x46) and tables where nothing changes come back unchanged, byte for byte.
    """
    tables = [psi.parse_sdt(section) for section in sections]
    first = tables[0]
    if not first.actual:
        return tuple(sections)
    services = [sv for table in tables for sv in table.services]
    new = [_rewrite_service(sv, channel_numbers, scrambled) for sv in services]
    if new == services:
        return tuple(sections)
    whole = replace(first, services=tuple(new), section_number=0, last_section_number=0)
    return tuple(psi.build_sdt(part) for part in psi.split_sdt(whole))


def rewrite_sdt(section: bytes, channel_numbers: Mapping[int, int], *,
                scrambled: Collection[int] = ()) -> bytes:
    """:func:`rewrite_sdt_table` for an SDT that is one section and stays one section
    (:class:`FormatError` when the rewritten services need more than one)."""
    out = rewrite_sdt_table([section], channel_numbers, scrambled=scrambled)
    if len(out) != 1:
        raise FormatError(f"the rewritten SDT needs {len(out)} sections",
                          path="sdt.section_length")
    return out[0]


def build_cat(*, ca_system_id: int, emm_pid: int,
              other_descriptors: Iterable[psi.Descriptor] = (), version: int = 0) -> bytes:
    """A CAT section (ISO/IEC 13818-1 §2.4.4.6) announcing ``emm_pid`` for our CA system."""
    loop = [d for d in other_descriptors if not _is_ours(d, ca_system_id)]
    loop.append(psi.CaDescriptor(ca_system_id=ca_system_id, ca_pid=emm_pid))
    return psi.build_cat(psi.Cat(version_number=version, descriptors=tuple(loop)))


# --- packetising ---------------------------------------------------------------------------

class _Packetizer:
    """Sections → TS packets (:class:`cas.formats.ts.Packetizer`), one continuity counter per
    PID across everything this run inserts (ISO/IEC 13818-1 §2.4.3.3)."""

    def __init__(self) -> None:
        self._per_pid: dict[int, ts.Packetizer] = {}

    def _for(self, pid: int) -> ts.Packetizer:
        pk = self._per_pid.get(pid)
        if pk is None:
            pk = self._per_pid[pid] = ts.Packetizer(pid)
        return pk

    def packets(self, pid: int, section: bytes) -> bytes:
        """One section, starting in a fresh packet, tail stuffed with 0xFF."""
        return b"".join(self._for(pid).packetize(section))

    def restamp(self, pid: int, packet: bytes) -> bytes:
        """A pre-built packet with this PID's next continuity counter."""
        pk = self._for(pid)
        cc = pk.continuity_counter
        pk.continuity_counter = (cc + 1) & 0x0F
        return packet[:3] + bytes(((packet[3] & 0xF0) | cc,)) + packet[4:]


# --- prescan ---------------------------------------------------------------------------------

@dataclass(slots=True)
class _Prescan:
    pat: dict[int, int] = field(default_factory=dict)
    pmts: dict[int, bytes] = field(default_factory=dict)  # program_number -> section bytes
    cat_descriptors: tuple[psi.Descriptor, ...] = ()
    cat_seen: bool = False
    pids: set[int] = field(default_factory=set)
    has_pcr: bool = False


class _SectionCollector:
    """Minimal section reassembly for the prescan (PAT/PMT/CAT PIDs only)."""

    def __init__(self) -> None:
        self._buf: dict[int, bytearray] = {}

    def feed(self, pid: int, pkt: bytes | memoryview) -> list[bytes]:
        afc = (pkt[3] >> 4) & 3
        if not afc & 1:
            return []
        start = 4 + (1 + pkt[4] if afc == 3 else 0)
        if start >= PACKET_SIZE:
            return []
        payload = bytes(pkt[start:PACKET_SIZE])
        out: list[bytes] = []
        if pkt[1] & 0x40:
            ptr = payload[0]
            tail, payload = payload[1 : 1 + ptr], payload[1 + ptr :]
            if pid in self._buf:
                self._buf[pid] += tail
                out += self._drain(pid)
            self._buf[pid] = bytearray(payload)
        elif pid in self._buf:
            self._buf[pid] += payload
        else:
            return out
        out += self._drain(pid)
        return out

    def _drain(self, pid: int) -> list[bytes]:
        buf = self._buf[pid]
        out = []
        while len(buf) >= 3 and buf[0] != 0xFF:
            total = section_total_length(buf)
            if len(buf) < total:
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
        if buf[:1] == b"\xff":
            del self._buf[pid]
        return out


def _prescan(data: bytes) -> _Prescan:
    """Find PAT, every PMT and any CAT in the first packets of ``data``."""
    info = _Prescan()
    col = _SectionCollector()
    pmt_pids: set[int] = set()
    pcr_pids: set[int] = set()
    for off in range(0, len(data) - PACKET_SIZE + 1, PACKET_SIZE):
        pkt = data[off : off + PACKET_SIZE]
        if pkt[0] != SYNC_BYTE:
            raise StreamError(f"lost TS sync at byte {off} (expected 0x47)")
        pid = ((pkt[1] & 0x1F) << 8) | pkt[2]
        info.pids.add(pid)
        if pid in pcr_pids and pkt[3] & 0x20 and pkt[4] >= 7 and pkt[5] & 0x10:
            info.has_pcr = True
        if pid != PAT_PID and pid != CAT_PID and pid not in pmt_pids:
            continue
        for sec in col.feed(pid, pkt):
            try:
                if pid == PAT_PID and sec[0] == TID_PAT and not info.pat:
                    pat = psi.parse_pat(sec)
                    info.pat = {p.program_number: p.pid for p in pat.programs
                                if p.program_number != 0}
                    pmt_pids = set(info.pat.values())
                elif pid == CAT_PID and sec[0] == TID_CAT and not info.cat_seen:
                    info.cat_descriptors = psi.parse_cat(sec).descriptors
                    info.cat_seen = True
                elif pid in pmt_pids and sec[0] == TID_PMT:
                    pmt = psi.parse_pmt(sec)
                    if pmt.program_number in info.pat and pmt.program_number not in info.pmts:
                        info.pmts[pmt.program_number] = sec
                        pcr_pids.add(pmt.pcr_pid)
            except FormatError as exc:
                raise StreamError(f"bad PSI section on PID {pid:#06x}: {exc}") from exc
        if info.pat and len(info.pmts) == len(info.pat) and (info.has_pcr or off > 4_000_000):
            break
    if not info.pat:
        raise StreamError("no PAT found at the start of the stream")
    missing = sorted(set(info.pat) - set(info.pmts))
    if missing:
        raise StreamError(f"no PMT found for program(s) {missing}")
    return info


# --- the scrambler -------------------------------------------------------------------------

def _byte_table(pred: Callable[[int], bool]) -> bytes:
    return bytes(int(pred(b)) for b in range(256))


# Lookup tables over byte 3 of the TS header (scrambling control | AF control | CC).
_HAS_AF = _byte_table(lambda b: bool(b & 0x20))
_HAS_PAYLOAD = _byte_table(lambda b: bool(b & 0x10))
_IS_SCRAMBLED = _byte_table(lambda b: bool(b & 0xC0))


def _pid_tables(pid: int) -> tuple[bytes, bytes]:
    """translate() tables matching header byte 1 (low 5 bits) and byte 2 against ``pid``."""
    hi = bytes(int(b & 0x1F == pid >> 8) for b in range(256))
    lo = bytes(int(b == pid & 0xFF) for b in range(256))
    return hi, lo


def _and(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "little") & int.from_bytes(b, "little")).to_bytes(len(a), "little")


def _or(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "little") | int.from_bytes(b, "little")).to_bytes(len(a), "little")


class _Headers:
    """Header bytes 1..3 of every packet of a chunk, pulled out with strided slices.

    Per-PID masks (one byte per packet, 1 = match) are built with ``bytes.translate`` and
    big-integer ``&``/``|``: C loops, so that Python never visits a packet it does not need.
    """

    def __init__(self, view: memoryview) -> None:
        self.n = len(view) // PACKET_SIZE
        if bytes(view[0::PACKET_SIZE]).count(SYNC_BYTE) != self.n:
            bad = next(i for i, b in enumerate(bytes(view[0::PACKET_SIZE])) if b != SYNC_BYTE)
            raise StreamError(f"lost TS sync at packet {bad} of a chunk (expected 0x47)")
        self.b1 = bytes(view[1::PACKET_SIZE])
        self.b2 = bytes(view[2::PACKET_SIZE])
        self.b3 = bytes(view[3::PACKET_SIZE])

    def pid_mask(self, pids: Iterable[int]) -> bytes:
        mask = 0
        for pid in set(pids):
            hi, lo = _pid_tables(pid)
            mask |= (int.from_bytes(self.b1.translate(hi), "little")
                     & int.from_bytes(self.b2.translate(lo), "little"))
        return mask.to_bytes(self.n, "little")

    def flag(self, table: bytes) -> bytes:
        return self.b3.translate(table)


@dataclass(slots=True)
class _Segment:
    """Packets ``[start, end)`` of a chunk that belong to crypto-period ``cp``."""

    start: int
    end: int
    cp: int


@dataclass(slots=True)
class _CpStats:
    first: int = -1
    last: int = -1
    packets: int = 0


class Scrambler:
    """Turns one clear TS into a scrambled one (see the module docstring)."""

    def __init__(self, config: ScrambleConfig, services: Mapping[int, ServiceCrypto],
                 cipher: PayloadCipher, *, emm_sections: Sequence[bytes] = (),
                 cw_log: Callable[[CwLogEntry], None] | None = None,
                 progress: Callable[[int], None] | None = None) -> None:
        self.config = config
        self.services = dict(services)
        self.cipher = cipher
        self.emm_sections = list(emm_sections)
        self.cw_log = cw_log
        self.progress = progress

    def run(self, src: IO[bytes], dst: IO[bytes]) -> ScrambleReport:
        """Scramble ``src`` into ``dst``; returns what was done."""
        head = _read_packets(src, PRESCAN_LIMIT_BYTES)
        scan = _prescan(head)
        unknown = sorted(set(scan.pat) - set(self.services))
        if unknown:
            raise UsageError(f"service(s) {unknown} in the stream have no channel in the lineup")
        services, used = self._allocate(scan)
        cfg = self.config
        emm_pid = cfg.emm_pid if cfg.emm_pid is not None else _free_pid(used)
        if emm_pid in scan.pids:
            raise UsageError(f"EMM PID {emm_pid:#x} is already used in the input")
        state = _RunState(self, scan, services, emm_pid)
        for chunk in _chunks(head, src, cfg.chunk_packets):
            state.process(bytearray(chunk), dst)
            if self.progress is not None:
                self.progress(len(chunk) // PACKET_SIZE)
        state.finish()
        return state.report()

    # --- helpers ---------------------------------------------------------------------------
    def _allocate(self, scan: _Prescan) -> tuple[list[ServiceInfo], set[int]]:
        """ECM PIDs per service; returns the services and every PID now in use."""
        used = set(scan.pids) | set(scan.pat.values())
        pmts = {number: psi.parse_pmt(scan.pmts[number]) for number in scan.pat}
        for pmt in pmts.values():
            used.update(st.elementary_pid for st in pmt.streams)
        taken: set[int] = set()
        if self.config.emm_pid is not None:
            taken.add(self.config.emm_pid)
        wanted = set(self.config.ecm_pids.values())
        out: list[ServiceInfo] = []
        nxt = DEFAULT_FIRST_CA_PID
        for number in sorted(scan.pat):
            pmt = pmts[number]
            ecm_pid = self.config.ecm_pids.get(number)
            if ecm_pid is None:
                while nxt in used or nxt in taken or nxt in wanted:
                    nxt += 1
                ecm_pid = nxt
            elif ecm_pid in used or ecm_pid in taken:
                raise UsageError(f"ECM PID {ecm_pid:#x} for service {number} is already in use")
            taken.add(ecm_pid)
            es = tuple(st.elementary_pid for st in pmt.streams
                       if st.elementary_pid not in (PAT_PID, CAT_PID, NULL_PID))
            out.append(ServiceInfo(service_id=number, pmt_pid=scan.pat[number],
                                   pcr_pid=pmt.pcr_pid, es_pids=es, ecm_pid=ecm_pid))
        return out, taken | used


def _free_pid(used: set[int]) -> int:
    pid = DEFAULT_FIRST_CA_PID
    while pid in used:
        pid += 1
    if pid >= NULL_PID:
        raise UsageError("no free PID left for the EMM stream")
    return pid


class _RunState:
    """The mutable state of one scrambler run, chunk after chunk."""

    def __init__(self, owner: Scrambler, scan: _Prescan, services: list[ServiceInfo],
                 emm_pid: int) -> None:
        cfg = owner.config
        self.cfg = cfg
        self.owner = owner
        self.services = services
        self.emm_pid = emm_pid
        self.crypto = [owner.services[s.service_id] for s in services]
        self.pk = _Packetizer()
        mode = SCRAMBLING_MODE_CISSA if cfg.algorithm is Algorithm.CISSA else None
        self.pmt_sections = {
            s.service_id: rewrite_pmt(scan.pmts[s.service_id], ca_system_id=cfg.ca_system_id,
                                      ecm_pid=s.ecm_pid, scrambling_mode=mode)
            for s in services}
        self.pmt_programs: dict[int, list[int]] = {}
        for svc in services:
            self.pmt_programs.setdefault(svc.pmt_pid, []).append(svc.service_id)
        self.cat_section = build_cat(ca_system_id=cfg.ca_system_id, emm_pid=emm_pid,
                                     other_descriptors=scan.cat_descriptors)
        self.time_pid = services[0].pcr_pid if scan.has_pcr else -1
        self.psi_pids = {PAT_PID, CAT_PID, *self.pmt_programs}
        # SDT rewriting (only with channel numbers): every section on PID 0x0011 is reassembled
        # and sent again on our continuity counters, SDT actual with the LCNs added.
        self.channel_numbers = dict(cfg.channel_numbers)
        self.scrambled_sids = frozenset(svc.service_id for svc in services)
        self.sdt_collector = _SectionCollector()
        self.sdt_cache: dict[tuple[bytes, ...], tuple[bytes, ...]] = {}
        #: The SDT actual being gathered: (transport_stream_id, version, last_section_number)
        #: and its sections by section_number.
        self.sdt_table: tuple[int, int, int] | None = None
        self.sdt_parts: dict[int, bytes] = {}
        if self.channel_numbers:
            self.psi_pids.add(SDT_PID)
        # The EMM carousel: sections packed back to back, continuity counters restamped as the
        # packets go out (the carousel loops).
        self.emm_packets = ts.Packetizer(emm_pid).packetize_many(owner.emm_sections)
        self.emm_pos = 0
        self.emm_sent = 0
        self.emm_pps = cfg.emm_bitrate_bps / (PACKET_SIZE * 8)
        self.cp = cfg.first_cp
        self.cws = [c.cw(self.cp) for c in self.crypto]
        self.cp_count = 1
        self.stats = [_CpStats() for _ in services]
        self.next_ecm_ms = 0
        self.now_ms = 0
        self.pcr0 = -1
        self.pcr_prev = -1
        self.pcr_wraps = 0
        self.started = False
        self.packets_in = 0
        self.packets_out = 0
        self.scrambled = 0
        self.ecm_packets = 0
        self.ms_per_packet = PACKET_SIZE * 8 * 1000 / cfg.nominal_bitrate_bps

    # --- insertions ------------------------------------------------------------------------
    def _ecms(self) -> bytes:
        out = b"".join(self.pk.packets(svc.ecm_pid, c.ecm_section(self.cp))
                       for svc, c in zip(self.services, self.crypto, strict=True))
        self.ecm_packets += len(out) // PACKET_SIZE
        return out

    def _emms(self) -> bytes:
        if not self.emm_packets:
            return b""
        due = int(self.now_ms * self.emm_pps / 1000) + 1 - self.emm_sent
        parts = []
        while due > 0:
            if self.emm_pos >= len(self.emm_packets):
                if not self.cfg.emm_repeat:
                    break
                self.emm_pos = 0
            parts.append(self.pk.restamp(self.emm_pid, self.emm_packets[self.emm_pos]))
            self.emm_pos += 1
            self.emm_sent += 1
            due -= 1
        return b"".join(parts)

    def _sdt(self, section: bytes) -> tuple[bytes, ...]:
        """What goes out for one section on the SDT PID: the SDT actual is gathered until its
        last section and then sent whole, rewritten (it may now need more sections than it
        came in); any other section, or one that does not parse, goes out as it came."""
        if section[0] != psi.TABLE_ID_SDT_ACTUAL:
            return (section,)
        try:
            head = parse_section(section, max_section_length=MAX_PSI_SECTION_LENGTH)
        except FormatError:
            # A section that does not parse (bad CRC, truncated) is passed on as it came: the
            # box drops it just as it would have without us.
            return (section,)
        if not isinstance(head, LongSection) or not head.current_next_indicator:
            return (section,)
        table = (head.table_id_extension, head.version_number, head.last_section_number)
        if table != self.sdt_table:
            self.sdt_table, self.sdt_parts = table, {}
        self.sdt_parts[head.section_number] = section
        if head.section_number != head.last_section_number:
            return ()
        if len(self.sdt_parts) != head.last_section_number + 1:
            return ()  # the table is not complete yet: it goes out at its next last section
        sections = tuple(self.sdt_parts[n] for n in range(head.last_section_number + 1))
        done = self.sdt_cache.get(sections)
        if done is None:
            try:
                done = rewrite_sdt_table(sections, self.channel_numbers,
                                         scrambled=self.scrambled_sids)
            except FormatError:
                done = sections  # a service loop we cannot rebuild: as it came
            if len(self.sdt_cache) < 64:
                self.sdt_cache[sections] = done
        return done

    def _pcr_ms(self, buf: bytearray, off: int) -> int | None:
        if buf[off + 4] < 7 or not buf[off + 5] & 0x10:
            return None
        base = (buf[off + 6] << 25 | buf[off + 7] << 17 | buf[off + 8] << 9
                | buf[off + 9] << 1 | buf[off + 10] >> 7)
        pcr = base * 300 + ((buf[off + 10] & 1) << 8 | buf[off + 11])
        if self.pcr0 < 0:
            self.pcr0 = pcr
        elif pcr < self.pcr_prev - PCR_MODULUS // 2:
            self.pcr_wraps += 1
        self.pcr_prev = pcr
        return (pcr + self.pcr_wraps * PCR_MODULUS - self.pcr0) // (PCR_HZ // 1000)

    # --- one chunk -------------------------------------------------------------------------
    def process(self, buf: bytearray, dst: IO[bytes]) -> None:
        view = memoryview(buf)
        hdr = _Headers(view)
        n = hdr.n
        if any(hdr.flag(_IS_SCRAMBLED)):
            es = hdr.pid_mask(p for s in self.services for p in s.es_pids)
            if any(_and(es, hdr.flag(_IS_SCRAMBLED))):
                raise StreamError("the input already has scrambled packets")
        wanted = hdr.pid_mask(self.psi_pids)
        if self.time_pid >= 0:
            wanted = _or(wanted, _and(hdr.pid_mask((self.time_pid,)), hdr.flag(_HAS_AF)))
        candidates: Iterable[int] = compress(range(n), wanted)
        if self.time_pid < 0:
            # No PCR: time by position; visit one packet per repetition period.
            step = max(1, int(self.cfg.ecm_repetition_ms / self.ms_per_packet))
            first = (-self.packets_in) % step
            candidates = sorted(set(candidates) | set(range(first, n, step)))
        inserts: list[tuple[int, bytes, bool]] = []
        segments: list[_Segment] = []
        seg_start = 0
        if not self.started:
            self.started = True
            inserts.append((0, self._ecms(), False))
            self.next_ecm_ms = self.cfg.ecm_repetition_ms
        for i in candidates:
            off = i * PACKET_SIZE
            pid = ((buf[off + 1] & 0x1F) << 8) | buf[off + 2]
            if pid == self.time_pid and buf[off + 3] & 0x20:
                t = self._pcr_ms(buf, off)
                if t is not None:
                    self.now_ms = t
            elif self.time_pid < 0:
                self.now_ms = int((self.packets_in + i) * self.ms_per_packet)
            if self.now_ms >= self.next_ecm_ms:
                new_cp = self.cfg.first_cp + self.now_ms // self.cfg.crypto_period_ms
                if new_cp != self.cp:
                    segments.append(_Segment(start=seg_start, end=i, cp=self.cp))
                    seg_start = i
                    self._close_cp(segments[-1], hdr, inserts, buf, new_cp)
                inserts.append((i, self._ecms() + self._emms(), False))
                rep = self.cfg.ecm_repetition_ms
                self.next_ecm_ms = (self.now_ms // rep + 1) * rep
            if pid == PAT_PID:
                if buf[off + 1] & 0x40 and buf[off + 3] & 0x10:
                    inserts.append((i + 1, self.pk.packets(CAT_PID, self.cat_section), False))
            elif pid == CAT_PID:
                inserts.append((i, b"", True))
            elif pid in self.pmt_programs:
                out = b""
                if buf[off + 1] & 0x40:
                    for number in _pmt_programs_in(buf, off, self.pmt_programs[pid]):
                        out += self.pk.packets(pid, self.pmt_sections[number])
                inserts.append((i, out, True))
            elif pid == SDT_PID and self.channel_numbers:
                sections = self.sdt_collector.feed(pid, bytes(buf[off : off + PACKET_SIZE]))
                out = b"".join(self.pk.packets(SDT_PID, part)
                               for sec in sections for part in self._sdt(sec))
                inserts.append((i, out, True))
        last = _Segment(start=seg_start, end=n, cp=self.cp)
        self._scramble(last, hdr, inserts, buf)
        self._write(view, n, inserts, dst)
        view.release()
        self.packets_in += n

    def _close_cp(self, seg: _Segment, hdr: _Headers, inserts: list[tuple[int, bytes, bool]],
                  buf: bytearray, new_cp: int) -> None:
        self._scramble(seg, hdr, inserts, buf)
        self._log_cp()
        self.cp_count += new_cp - self.cp
        self.cp = new_cp
        self.cws = [c.cw(new_cp) for c in self.crypto]

    def _scramble(self, seg: _Segment, hdr: _Headers, inserts: list[tuple[int, bytes, bool]],
                  buf: bytearray) -> None:
        if seg.end <= seg.start:
            return
        view = memoryview(buf)[seg.start * PACKET_SIZE : seg.end * PACKET_SIZE]
        parity = seg.cp & 1
        payload = hdr.flag(_HAS_PAYLOAD)
        for k, svc in enumerate(self.services):
            mask = _and(hdr.pid_mask(svc.es_pids), payload)
            first = mask.find(1, seg.start, seg.end)
            if first < 0:
                continue
            self.scrambled += self.owner.cipher.scramble(view, parity=parity, pids=svc.es_pids,
                                                   cw=self.cws[k])
            st = self.stats[k]
            if st.first < 0:
                st.first = self._out_index(first, inserts)
            st.last = self._out_index(mask.rfind(1, seg.start, seg.end), inserts)
            st.packets += mask.count(1, seg.start, seg.end)
        view.release()

    def _out_index(self, i: int, inserts: list[tuple[int, bytes, bool]]) -> int:
        """Output packet index of input packet ``i`` of this chunk (never a dropped one)."""
        delta = 0
        for idx, data, drop in inserts:
            if idx > i:
                break
            delta += len(data) // PACKET_SIZE - (1 if drop and idx < i else 0)
        return self.packets_out + i + delta

    def _log_cp(self) -> None:
        log = self.owner.cw_log
        for k, st in enumerate(self.stats):
            if log is not None and st.packets:
                log(CwLogEntry(channel_id=self.crypto[k].channel_id,
                               service_id=self.services[k].service_id, cp=self.cp,
                               parity="odd" if self.cp & 1 else "even", cw=self.cws[k],
                               first_packet=st.first, last_packet=st.last, packets=st.packets))
            self.stats[k] = _CpStats()

    def _write(self, view: memoryview, n: int, inserts: list[tuple[int, bytes, bool]],
               dst: IO[bytes]) -> None:
        prev = 0
        written = 0
        for idx, data, drop in sorted(inserts, key=lambda e: e[0]):
            if idx > prev:
                dst.write(view[prev * PACKET_SIZE : idx * PACKET_SIZE])
                written += idx - prev
                prev = idx
            if data:
                dst.write(data)
                written += len(data) // PACKET_SIZE
            if drop:
                prev = idx + 1
        if prev < n:
            dst.write(view[prev * PACKET_SIZE :])
            written += n - prev
        self.packets_out += written

    def finish(self) -> None:
        self._log_cp()

    def report(self) -> ScrambleReport:
        return ScrambleReport(
            algorithm=self.cfg.algorithm, packets_in=self.packets_in,
            packets_out=self.packets_out, scrambled_packets=self.scrambled,
            ecm_packets=self.ecm_packets, emm_packets=self.emm_sent,
            crypto_periods=self.cp_count, timing="pcr" if self.time_pid >= 0 else "bitrate",
            emm_pid=self.emm_pid, services=tuple(self.services))


def _pmt_programs_in(buf: bytearray, off: int, programs: list[int]) -> list[int]:
    """Which of ``programs`` has a PMT section starting in this (PUSI) packet."""
    if len(programs) == 1:
        return programs
    afc = (buf[off + 3] >> 4) & 3
    start = off + 4 + (1 + buf[off + 4] if afc == 3 else 0)
    sec = start + 1 + buf[start]
    if sec + 5 > off + PACKET_SIZE or buf[sec] != TID_PMT:
        return []
    number = (buf[sec + 3] << 8) | buf[sec + 4]
    return [number] if number in programs else []


def _read_packets(src: IO[bytes], limit: int) -> bytes:
    """Up to ``limit`` bytes (a whole number of packets) from the start of ``src``."""
    data = src.read(limit - limit % PACKET_SIZE)
    if not data:
        raise StreamError("empty input stream")
    if data[0] != SYNC_BYTE:
        raise StreamError("input does not start with a TS sync byte (0x47)")
    return data


def _chunks(head: bytes, src: IO[bytes], chunk_packets: int) -> Iterable[bytes]:
    size = chunk_packets * PACKET_SIZE
    carry = b""
    data = head
    while True:
        data = carry + data
        whole = len(data) - len(data) % PACKET_SIZE
        for pos in range(0, whole, size):
            yield data[pos : min(pos + size, whole)]
        carry = data[whole:]
        data = src.read(size)
        if not data:
            break
    if carry:
        raise StreamError(f"input ends with a partial packet of {len(carry)} bytes")


def write_cw_log_line(fh: IO[str], entry: CwLogEntry) -> None:
    """One JSON object per line (``--cw-log``)."""
    fh.write(json.dumps(entry.to_json(), sort_keys=True) + "\n")


def read_cw_log(lines: Iterable[str]) -> list[dict[str, object]]:
    """Parse a ``--cw-log`` file back (test benches, the round-trip tests)."""
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FormatError(f"line {n}: not JSON", path="cw_log") from exc
        if not isinstance(obj, dict):
            raise FormatError(f"line {n}: not an object", path="cw_log")
        out.append(obj)
    return out


class _EngineCipher:
    """:class:`PayloadCipher` over a :mod:`cas.crypto` scrambler (``Csa2``/``Cissa``), which
    holds an even and an odd CW and scrambles a buffer of packets per call."""

    def __init__(self, engine: _Engine) -> None:
        self._engine = engine

    def scramble(self, view: memoryview, *, parity: int, pids: Collection[int],
                 cw: bytes) -> int:
        self._engine.set_cw(parity, cw)
        return self._engine.scramble(view, parity, pids=pids)


class _Engine(Protocol):
    def set_cw(self, parity: int, cw: bytes) -> None: ...

    def scramble(self, buf: memoryview, parity: int, *, pids: Collection[int] | None) -> int: ...


class _ReducedCsa2:
    """libdvbcsa keyed with the entropy-reduced CW (:func:`cas.crypto.reduce_cw`).

    A DVB-CSA2 receiver reduces the CW it gets from the ECM before descrambling, so whatever
    CW a service's ECMs carry (full 64 bits from another vendor's SCS, or already reduced
    from ours), scrambling with its reduction is what every box can open.
    """

    def __init__(self) -> None:
        from cas.crypto.csa2 import Csa2

        self._csa2 = Csa2()

    def set_cw(self, parity: int, cw: bytes) -> None:
        self._csa2.set_cw(parity, reduce_cw(cw))

    def scramble(self, buf: memoryview, parity: int, *, pids: Collection[int] | None) -> int:
        return self._csa2.scramble(buf, parity, pids=pids)


def payload_cipher(algorithm: Algorithm) -> PayloadCipher:
    """The batch payload cipher for ``algorithm`` (libdvbcsa for CSA2, keyed with the
    reduced CW; AES-CBC for CISSA)."""
    if algorithm is Algorithm.CSA2:
        return _EngineCipher(_ReducedCsa2())
    from cas.crypto.cissa import Cissa

    return _EngineCipher(Cissa())
