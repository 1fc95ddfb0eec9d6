"""The scrambler engine: prescan, PID allocation, then chunk after chunk the insertions
(ECMs, EMMs, CAT, rewritten PMTs and SDTs), crypto-period switches and the payload cipher.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress
from typing import IO

from cas.errors import FormatError, StreamError, UsageError
from cas.formats import psi, ts
from cas.formats.sections import (
    MAX_PSI_SECTION_LENGTH,
    LongSection,
    parse_section,
)
from cas.headend.scrambler.ciphers import Algorithm, PayloadCipher
from cas.headend.scrambler.config import (
    DEFAULT_FIRST_CA_PID,
    SCRAMBLING_MODE_CISSA,
    ScrambleConfig,
    ScrambleReport,
    ServiceCrypto,
    ServiceInfo,
)
from cas.headend.scrambler.cwlog import CwLogEntry
from cas.headend.scrambler.psirewrite import build_cat, rewrite_pmt, rewrite_sdt_table
from cas.headend.scrambler.tsinput import (
    CAT_PID,
    NULL_PID,
    PACKET_SIZE,
    PAT_PID,
    PRESCAN_LIMIT_BYTES,
    SDT_PID,
    SYNC_BYTE,
    TID_PMT,
    Prescan,
    SectionCollector,
    prescan,
    read_chunks,
    read_packets,
)

#: 27 MHz PCR clock (ISO/IEC 13818-1 §2.4.2.2); the PCR is 33-bit base × 300 + 9-bit ext.
PCR_HZ = 27_000_000
PCR_MODULUS = (1 << 33) * 300


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
            raise StreamError(f"lost TS sync at packet {bad} of a chunk (expected 0x47)").with_id(
                "headend.lost_ts_sync_packet", bad=bad)
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
        head = read_packets(src, PRESCAN_LIMIT_BYTES)
        scan = prescan(head)
        unknown = sorted(set(scan.pat) - set(self.services))
        if unknown:
            raise UsageError(f"service(s) {unknown} in the stream have no channel in the lineup").with_id(
                "headend.service_stream_no_channel", unknown=unknown)
        services, used = self._allocate(scan)
        cfg = self.config
        emm_pid = cfg.emm_pid if cfg.emm_pid is not None else _free_pid(used)
        if emm_pid in scan.pids:
            raise UsageError(f"EMM PID {emm_pid:#x} is already used in the input").with_id(
                "headend.emm_pid_already_used", emm_pid=f"{emm_pid:#x}")
        state = _RunState(self, scan, services, emm_pid)
        for chunk in read_chunks(head, src, cfg.chunk_packets):
            state.process(bytearray(chunk), dst)
            if self.progress is not None:
                self.progress(len(chunk) // PACKET_SIZE)
        state.finish()
        return state.report()

    # --- helpers ---------------------------------------------------------------------------
    def _allocate(self, scan: Prescan) -> tuple[list[ServiceInfo], set[int]]:
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
                raise UsageError(f"ECM PID {ecm_pid:#x} for service {number} is already in use").with_id(
                    "headend.ecm_pid_service_already", ecm_pid=f"{ecm_pid:#x}", number=number)
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
        raise UsageError("no free PID left for the EMM stream").with_id("headend.no_free_pid_left")
    return pid


class _RunState:
    """The mutable state of one scrambler run, chunk after chunk."""

    def __init__(self, owner: Scrambler, scan: Prescan, services: list[ServiceInfo],
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
        self.sdt_collector = SectionCollector()
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
                raise StreamError("the input already has scrambled packets").with_id(
                    "headend.input_already_scrambled_packets")
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
