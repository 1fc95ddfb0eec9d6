"""The stream scanner: :class:`StreamProbe` takes bytes in any chunking and fills its
:class:`.state.ScanState`; :meth:`StreamProbe.finish` hands it to :mod:`.assembly`.

Speed.  A 10-minute 20 Mbit/s stream is 8 million packets; Python cannot look at each one
and stay under 10 s, so the probe never loops over packets.  It reads 12 MB at a time and
works on *columns*: ``chunk[1::188]`` is every packet's byte 1 in one C-level slice.

* PID -> a one-byte *code* per packet: for each PID high-byte class ``h`` present,
  ``lo.translate(lut_h)`` masked by ``hi == h`` (``bytes.translate`` + big-integer AND).
* counts: ``codes.count(code)``; scrambled even / odd: the codes masked by the
  transport_scrambling_control column, counted the same way; parity changes: alternate
  ``find`` calls on those two masked columns (one call per change).
* continuity: up to 15 PIDs share a group whose byte per packet is ``code4 << 4 | cc``
  (payload-less packets zeroed); ``translate(None, delete=...)`` pulls out one PID's CC
  sequence, and pairs ``(cc[i], cc[i+1])`` built with a big-integer shift are checked against
  the 16 good and 16 duplicate pairs by another ``translate``.
* only packets on PSI, ECM and EMM PIDs, and packets whose adaptation field carries a PCR
  or a discontinuity_indicator, are handled one by one in Python.
"""

from __future__ import annotations

import struct
from collections import Counter
from itertools import compress

from cas import DEFAULT_CA_SYSTEM_ID
from cas.diag.alarms import Thresholds
from cas.diag.probe.assembly import assemble
from cas.diag.probe.columns import (
    AF,
    AF_AND_PAYLOAD,
    AF_GE168,
    CC,
    CC_OK,
    CHUNK_PACKETS,
    DEL_NOT,
    DISC_FLAG,
    EQ,
    GE1,
    GE7,
    IS_ZERO,
    MASK_EVEN,
    MASK_ODD,
    MASK_RSVD,
    MAX_CC_EVENTS,
    MAX_CODES,
    NO_PAYLOAD,
    NO_TEI,
    NOT_DUP,
    NOT_RSVD,
    NULL_PID,
    OVERFLOW_CODE,
    PACKET_SIZE,
    PAYLOAD,
    PCR_FLAG,
    PID_HI,
    SYNC_BYTE,
    TSC_CLEAR,
    as_int,
)
from cas.diag.probe.report import CaEntry, ProbeReport
from cas.diag.probe.state import CaKind, CaPidState, PidState, ProgramState, ScanState
from cas.errors import FormatError, StreamError, UsageError
from cas.formats import psi
from cas.formats.emm import EmmAddressType
from cas.formats.ts import Pcr, SectionReassembler

_ECM_HDR = struct.Struct(">HBI")  # channel_id, ecm_key_index, timestamp_s after the 3 bytes
_U32 = struct.Struct(">I")


class StreamProbe(ScanState):
    """Feed bytes (any chunking), then :meth:`finish` for the :class:`ProbeReport`."""

    def __init__(self, *, ca_system_id: int = DEFAULT_CA_SYSTEM_ID,
                 nominal_bitrate_bps: int | None = None, thresholds: Thresholds | None = None,
                 source: str = "<stream>") -> None:
        if nominal_bitrate_bps is not None and nominal_bitrate_bps <= 0:
            raise UsageError("the nominal bitrate must be positive").with_id(
                "diag.nominal_bitrate_positive")
        super().__init__(ca_system_id=ca_system_id, nominal_bitrate_bps=nominal_bitrate_bps,
                         thresholds=thresholds or Thresholds(), source=source)
        self._carry = b""
        self._synced = False
        self._ever_synced = False
        # PID codes
        self._by_code: list[PidState | None] = [None] * 256
        self._luts: dict[int, bytearray] = {}
        self._groups: list[tuple[bytes, list[tuple[int, PidState]]]] = []
        self._groups_dirty = True
        # sections
        self._interesting: set[int] = {0x0000, 0x0001, 0x0011}
        self._interest_table = bytes(256)
        self._interest_dirty = True
        self._idle: dict[int, bool] = {}  # no partial section in the PID's reassembler
        self._last_good: dict[int, bytes] = {}  # last long section that passed its CRC
        self._last_pat: dict[int, bytes] = {}
        self._last_cat: dict[int, bytes] = {}
        self._last_sdt: dict[int, bytes] = {}
        self._psi_errors: Counter[str] = Counter()

    # --- input -----------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Take the next bytes of the stream."""
        self.size_bytes += len(data)
        buf = self._carry + bytes(data) if self._carry else bytes(data)
        self._carry = b""
        n = len(buf)
        pos = 0
        while pos < n:
            if not self._synced:
                found = self._find_sync(buf, pos)
                if found < 0:
                    # Keep enough bytes to confirm a sync position with the next data.
                    keep = max(pos, n - 3 * PACKET_SIZE)
                    self.skipped_bytes += keep - pos
                    self._carry = buf[keep:]
                    return
                self.skipped_bytes += found - pos
                pos = found
                self._synced = True
                self._ever_synced = True
            avail = (n - pos) // PACKET_SIZE
            if avail == 0:
                break
            count = min(avail, CHUNK_PACKETS)
            end = pos + count * PACKET_SIZE
            sync = buf[pos:end:PACKET_SIZE]
            good = count - len(sync.lstrip(b"\x47"))
            if good:
                self._process(buf, pos, good)
                pos += good * PACKET_SIZE
            if good < count:
                # Sync lost at this packet: resync from the next byte (TR 101 290 1.1/1.2).
                self.sync_losses += 1
                self.sync_loss_at.append(self.packets)
                self._synced = False
                pos += 1
                self.skipped_bytes += 1
        self._carry = buf[pos:]

    def _find_sync(self, buf: bytes, pos: int) -> int:
        """First offset >= pos with 0x47 there and one and two packets further; -1: need data."""
        n = len(buf)
        while True:
            i = buf.find(b"\x47", pos)
            if i < 0 or i + 2 * PACKET_SIZE >= n:
                return -1
            if buf[i + PACKET_SIZE] == SYNC_BYTE and buf[i + 2 * PACKET_SIZE] == SYNC_BYTE:
                return i
            pos = i + 1

    # --- PID codes -----------------------------------------------------------------------------
    def _add_pid(self, pid: int) -> None:
        if pid in self.pids:
            return
        hi, lo = pid >> 8, pid & 0xFF
        lut = self._luts.get(hi)
        if lut is None:
            lut = self._luts[hi] = bytearray([OVERFLOW_CODE if self.overflow else 0]) * 256
        if len(self.pids) >= MAX_CODES:
            self._start_overflow()
            lut[lo] = OVERFLOW_CODE
            return
        code = len(self.pids) + 1
        st = PidState(pid, code)
        self.pids[pid] = st
        self._by_code[code] = st
        lut[lo] = code
        self._groups_dirty = True
        self._interest_dirty = True

    def _start_overflow(self) -> None:
        """More than 254 PIDs: the rest are counted together under code 255."""
        if self.overflow:
            return
        self.overflow = True
        for h in range(32):
            lut = self._luts.get(h)
            if lut is None:
                self._luts[h] = bytearray([OVERFLOW_CODE]) * 256
            else:
                for lo in range(256):
                    if lut[lo] == 0:
                        lut[lo] = OVERFLOW_CODE

    def _codes(self, hi: bytes, lo: bytes, count: int) -> bytes:
        while True:
            acc = 0
            for h, lut in self._luts.items():
                mask = as_int(hi.translate(EQ[h]))
                if mask:
                    acc |= as_int(lo.translate(lut)) & mask
            codes = acc.to_bytes(count, "big")
            if codes.find(0) < 0:
                return codes
            for h, low in set(compress(zip(hi, lo, strict=True), codes.translate(IS_ZERO))):
                self._add_pid((h << 8) | low)

    def _regroup(self) -> None:
        members = [st for st in self.pids.values() if st.pid != NULL_PID]
        groups: list[tuple[bytes, list[tuple[int, PidState]]]] = []
        for g in range(0, len(members), 15):
            part = members[g:g + 15]
            table = bytearray(256)
            entries = []
            for k, st in enumerate(part, start=1):
                table[st.code] = k
                entries.append((k, st))
            groups.append((bytes(table), entries))
        self._groups = groups
        self._groups_dirty = False

    def _interest(self, pid: int) -> None:
        if pid not in self._interesting:
            self._interesting.add(pid)
            self._interest_dirty = True

    def _interest_codes(self) -> bytes:
        table = bytearray(256)
        for pid in self._interesting:
            st = self.pids.get(pid)
            if st is not None:
                table[st.code] = 1
        return bytes(table)

    # --- the column work -------------------------------------------------------------------
    def _process(self, buf: bytes, start: int, count: int) -> None:
        base = self.packets
        end = start + count * PACKET_SIZE
        c1 = buf[start + 1:end:PACKET_SIZE]
        c2 = buf[start + 2:end:PACKET_SIZE]
        c3 = buf[start + 3:end:PACKET_SIZE]
        hi = c1.translate(PID_HI)
        codes = self._codes(hi, c2, count)
        if self._groups_dirty:
            self._regroup()

        tei = c1.translate(None, NO_TEI)
        if tei:
            self.transport_errors += len(tei)
            if self.first_tei is None:
                self.first_tei = base + min(i for i, b in enumerate(c1) if b & 0x80)

        states = list(self.pids.values())
        for st in states:
            st.packets += codes.count(st.code)

        # adaptation fields: PCRs and discontinuity indicators
        disc: dict[int, list[int]] = {}
        af = c3.translate(AF)
        short = as_int(c3.translate(NO_PAYLOAD))  # 0xFF: no payload, or too short to scramble
        if af.find(1) >= 0:
            c4 = buf[start + 4:end:PACKET_SIZE]
            c5 = buf[start + 5:end:PACKET_SIZE]
            afi = as_int(af)
            short |= as_int(c3.translate(AF_AND_PAYLOAD)) & as_int(c4.translate(AF_GE168))
            pcr = (afi & as_int(c4.translate(GE7)) & as_int(c5.translate(PCR_FLAG))).to_bytes(
                count, "big")
            j = pcr.find(1)
            while j >= 0:
                owner = self._by_code[codes[j]]
                if owner is not None:
                    p = start + j * PACKET_SIZE
                    b = buf[p + 6:p + 12]
                    pcr_value = Pcr(base=(b[0] << 25) | (b[1] << 17) | (b[2] << 9) | (b[3] << 1)
                                    | (b[4] >> 7), extension=((b[4] & 1) << 8) | b[5])
                    owner.pcr_idx.append(base + j)
                    owner.pcr_ticks.append(pcr_value.ticks_27mhz)
                j = pcr.find(1, j + 1)
            dmask = (afi & as_int(c4.translate(GE1)) & as_int(c5.translate(DISC_FLAG))).to_bytes(
                count, "big")
            j = dmask.find(1)
            while j >= 0:
                disc.setdefault(codes[j], []).append(j)
                j = dmask.find(1, j + 1)

        # scrambling: counts per parity and the parity changes
        codes_i = as_int(codes)
        scrambled = c3.translate(None, TSC_CLEAR)
        if scrambled:
            even = (codes_i & as_int(c3.translate(MASK_EVEN))).to_bytes(count, "big")
            odd = (codes_i & as_int(c3.translate(MASK_ODD))).to_bytes(count, "big")
            rsvd = ((codes_i & as_int(c3.translate(MASK_RSVD))).to_bytes(count, "big")
                    if scrambled.translate(None, NOT_RSVD) else None)
            for st in states:
                cb = st.code
                ne = even.count(cb)
                no = odd.count(cb)
                nr = rsvd.count(cb) if rsvd is not None else 0
                st.even += ne
                st.odd += no
                st.reserved += nr
                if ne or no:
                    self._parity(st, even, odd, base)
        for st in states:
            st.clear = st.packets - st.even - st.odd - st.reserved

        # continuity counters, 15 PIDs per group
        pm = as_int(c3.translate(PAYLOAD))
        if short:
            short_codes = (codes_i & short).to_bytes(count, "big")
            for st in states:
                st.no_payload += short_codes.count(st.code)
        cci = as_int(c3.translate(CC))
        for table, members in self._groups:
            gi = as_int(codes.translate(table))
            if not gi:
                continue
            v = (((gi << 4) | cci) & pm).to_bytes(count, "big")
            for k, st in members:
                sub = v.translate(None, DEL_NOT[k])
                if sub:
                    self._cc(st, sub, k, buf, start, codes, base, disc.get(st.code))

        # sections on PSI / ECM / EMM PIDs, one packet at a time
        walked = bytearray(256)  # codes whose packets in this chunk went to the reassemblers
        while True:
            if self._interest_dirty:
                self._interest_table = self._interest_codes()
                self._interest_dirty = False
            table = bytes(1 if want and not seen else 0
                          for want, seen in zip(self._interest_table, walked, strict=True))
            if not any(table):
                break
            for code, want in enumerate(table):
                if want:
                    walked[code] = 1
            marks = codes.translate(table)
            j = marks.find(1)
            while j >= 0:
                owner = self._by_code[codes[j]]
                if owner is not None:
                    p = start + j * PACKET_SIZE
                    self._section_packet(owner.pid, buf[p:p + PACKET_SIZE], base + j)
                j = marks.find(1, j + 1)
            # A PAT / PMT / CAT in this chunk may have named PIDs whose packets are in it too.
            if not self._interest_dirty:
                break
        self.packets += count

    def _parity(self, st: PidState, even: bytes, odd: bytes, base: int) -> None:
        cb = st.code
        pos = 0
        cur = st.parity
        if cur is None:
            e = even.find(cb)
            o = odd.find(cb)
            if o < 0 or (0 <= e < o):
                cur, pos = 2, e
            else:
                cur, pos = 3, o
            st.first_scrambled = base + pos
        while True:
            j = (odd if cur == 2 else even).find(cb, pos)
            if j < 0:
                break
            cur = 5 - cur
            st.parity_changes.append(base + j)
            pos = j
        st.parity = cur
        st.last_scrambled = base + max(even.rfind(cb), odd.rfind(cb))

    def _cc(self, st: PidState, sub: bytes, k: int, buf: bytes, start: int, codes: bytes,
            base: int, disc: list[int] | None) -> None:
        prev = st.last_cc
        s = bytes(((k << 4) | prev,)) + sub if prev is not None else sub
        st.last_cc = s[-1] & 0x0F
        if len(s) < 2:
            return
        lo = s.translate(CC)
        pairs = ((as_int(lo[:-1]) << 4) | as_int(lo[1:])).to_bytes(len(s) - 1, "big")
        bad = len(pairs.translate(None, CC_OK))
        dups = len(pairs.translate(None, NOT_DUP))
        if not bad and not (disc and dups):
            st.duplicates += dups
            return
        if not disc and len(st.cc_events) >= MAX_CC_EVENTS:
            st.cc_errors += bad
            st.duplicates += dups
            return
        # Slow path: walk this PID's packets in the chunk to place (and excuse) each error.
        last = prev
        cb = st.code
        j = codes.find(cb)
        errors = duplicates = 0
        disc_set = set(disc or ())
        while j >= 0:
            p = start + j * PACKET_SIZE
            b3 = buf[p + 3]
            if b3 & 0x10:
                cc = b3 & 0x0F
                if last is not None and j not in disc_set:
                    if cc == last:
                        duplicates += 1
                    elif cc != (last + 1) & 0x0F:
                        errors += 1
                        if len(st.cc_events) < MAX_CC_EVENTS:
                            st.cc_events.append((base + j, (last + 1) & 0x0F, cc))
                last = cc
            j = codes.find(cb, j + 1)
        st.cc_errors += errors
        st.duplicates += duplicates

    # --- sections --------------------------------------------------------------------------
    def _section_packet(self, pid: int, packet: bytes, index: int) -> None:
        r = self.reasm.get(pid)
        if r is None:
            r = self.reasm[pid] = SectionReassembler(pid, max_events=0)
        # Fast path for the common case — one whole section starting right after a zero
        # pointer_field, stuffing after it, no section in progress: a short section (ECM,
        # EMM: no CRC) is taken as it is, a long one only if it repeats the last section
        # that passed its CRC on this PID (PSI tables are repeated unchanged).
        if packet[1] & 0x40 and packet[3] & 0xF0 == 0x10 and packet[4] == 0 and \
                self._idle.get(pid, True):
            total = 3 + (((packet[6] & 0x0F) << 8) | packet[7])
            end = 5 + total
            if end == PACKET_SIZE or (end < PACKET_SIZE and packet[end] == 0xFF):
                section = packet[5:end]
                if not packet[6] & 0x80 or section == self._last_good.get(pid):
                    r.reset()  # its continuity check is ours anyway (see _cc)
                    self._section(pid, section, index)
                    return
        sections = r.feed(packet)
        self._idle[pid] = r.idle
        for section in sections:
            if section[1] & 0x80:
                self._last_good[pid] = section
            self._section(pid, section, index)

    def _section(self, pid: int, section: bytes, index: int) -> None:
        try:
            self._on_section(pid, section, index)
        except FormatError:
            self._psi_errors[f"0x{pid:04X}"] += 1

    def _on_section(self, pid: int, section: bytes, index: int) -> None:
        tid = section[0]
        if pid == 0x0000 and tid == psi.TABLE_ID_PAT:
            self.pat_times.append(index)
            if self._last_pat.get(section[6]) != section:
                self._last_pat[section[6]] = section
                self._on_pat(psi.parse_pat(section))
        elif pid == 0x0001 and tid == psi.TABLE_ID_CAT:
            self.cat_times.append(index)
            if self._last_cat.get(section[6]) != section:
                self._last_cat[section[6]] = section
                self._on_cat(section)
        elif pid == 0x0011 and tid == psi.TABLE_ID_SDT_ACTUAL:
            if self._last_sdt.get(section[6]) != section:
                self._last_sdt[section[6]] = section
                self._on_sdt(psi.parse_sdt(section))
        elif tid == psi.TABLE_ID_PMT and pid in self.pmt_pids:
            number = (section[3] << 8) | section[4]
            prog = self.programs.get(number)
            if prog is None or prog.pmt_pid != pid:
                return  # a PMT for a program the PAT puts elsewhere
            prog.pmt_times.append(index)
            if prog.last_pmt != section:
                prog.last_pmt = section
                self._on_pmt(prog, section)
        elif 0x80 <= tid <= 0x8F:
            ca = self.ca_pids.get(pid)
            if ca is not None:
                self._on_ca_section(ca, section, index)

    def _program(self, number: int) -> ProgramState:
        prog = self.programs.get(number)
        if prog is None:
            prog = self.programs[number] = ProgramState(number)
        return prog

    def _on_pat(self, pat: psi.Pat) -> None:
        self.transport_stream_id = pat.transport_stream_id
        for entry in pat.programs:
            if entry.program_number == 0:
                continue  # network_PID
            prog = self._program(entry.program_number)
            prog.in_pat = True
            if prog.pmt_pid != entry.pid:
                if prog.pmt_pid is not None:
                    self.pmt_pids.get(prog.pmt_pid, set()).discard(prog.number)
                prog.pmt_pid = entry.pid
                prog.last_pmt = b""
            self.pmt_pids.setdefault(entry.pid, set()).add(entry.program_number)
            self._interest(entry.pid)

    def _on_cat(self, section: bytes) -> None:
        refs = psi.find_ca_descriptors(section)
        entries = [CaEntry(ca_system_id=r.ca_system_id, ca_pid=r.ca_pid, table="CAT")
                   for r in refs]
        self.cat = list(dict.fromkeys([*self.cat, *entries]))
        for e in entries:
            self._ca_pid(e.ca_pid, CaKind.EMM, e.ca_system_id)

    def _ca_pid(self, pid: int, kind: CaKind, ca_system_id: int) -> None:
        if pid not in self.ca_pids:
            self.ca_pids[pid] = CaPidState(pid, kind, ca_system_id)
            self._interest(pid)

    def _on_sdt(self, sdt: psi.Sdt) -> None:
        if self.transport_stream_id is None:
            self.transport_stream_id = sdt.transport_stream_id
        for svc in sdt.services:
            prog = self._program(svc.service_id)
            prog.in_sdt = True
            prog.free_ca_mode = svc.free_ca_mode
            for d in svc.descriptors:
                if isinstance(d, psi.ServiceDescriptor):
                    prog.name = d.name_text
                    prog.provider = d.provider_text
                    prog.service_type = d.service_type

    def _on_pmt(self, prog: ProgramState, section: bytes) -> None:
        pmt = psi.parse_pmt(section)
        refs = psi.find_ca_descriptors(section)
        prog.has_pmt = True
        prog.pcr_pid = None if pmt.pcr_pid == NULL_PID else pmt.pcr_pid
        prog.streams = [(s.elementary_pid, s.stream_type) for s in pmt.streams]
        prog.ca = [CaEntry(ca_system_id=r.ca_system_id, ca_pid=r.ca_pid, table="PMT",
                           service_id=prog.number, es_pid=r.elementary_pid) for r in refs]
        mode = None
        for d in pmt.descriptors:
            if isinstance(d, psi.ScramblingDescriptor):
                mode = d.scrambling_mode
        prog.scrambling_mode = mode
        for e in prog.ca:
            self._ca_pid(e.ca_pid, CaKind.ECM, e.ca_system_id)

    def _on_ca_section(self, ca: CaPidState, section: bytes, index: int) -> None:
        tid = section[0]
        ca.times.append(index)
        ca.tids.append(tid)
        ca.tables[tid] += 1
        ca.bytes += len(section)
        new = section != ca.last_section
        if new:
            ca.distinct += 1
            ca.last_section = section
        ours = ca.ca_system_id == self.ca_system_id
        if ca.kind is CaKind.ECM:
            if tid in (0x80, 0x81):
                if ca.last_tid is not None and tid != ca.last_tid:
                    ca.parity_changes.append(index)
                ca.last_tid = tid
            if ours and new and len(section) >= 3 + _ECM_HDR.size:
                channel_id, key_index, _ = _ECM_HDR.unpack_from(section, 3)
                ca.channel_ids.add(channel_id)
                ca.key_indexes.add(key_index)
            return
        if not ours:
            ca.address_counts["other"] += 1
            return
        # Clear EMM headers (docs/formats.md §5.1, cas.formats.emm.EMM_HEADERS) after the
        # 3-byte section header: unique serial u32, seq u32 | shared address u24, members
        # 32 bytes, seq u32 | global seq u32.  Read with struct: only addresses are needed.
        n = len(section)
        if tid == EmmAddressType.UNIQUE and n >= 11:
            serial = _U32.unpack_from(section, 3)[0]
            seq = _U32.unpack_from(section, 7)[0]
            u = ca.unique.get(serial)
            if u is None:
                ca.unique[serial] = [1, seq, index]
            else:
                u[0] += 1
                u[1] = max(u[1], seq)
                u[2] = index
            ca.address_counts["unique"] += 1
        elif tid == EmmAddressType.SHARED and n >= 42:
            addr = (section[3] << 16) | (section[4] << 8) | section[5]
            members = int.from_bytes(section[6:38], "big")
            seq = _U32.unpack_from(section, 38)[0]
            g = ca.shared.get(addr)
            if g is None:
                ca.shared[addr] = [1, seq, index, members]
            else:
                g[0] += 1
                g[1] = max(g[1], seq)
                g[2] = index
                g[3] |= members
            ca.address_counts["shared"] += 1
        elif tid == EmmAddressType.GLOBAL and n >= 7:
            seq = _U32.unpack_from(section, 3)[0]
            ca.global_last_seq = max(ca.global_last_seq or 0, seq)
            ca.address_counts["global"] += 1
        else:
            ca.address_counts["other"] += 1

    # --- the report --------------------------------------------------------------------------
    def _flush_tail(self) -> None:
        """End of stream: the last packets cannot be confirmed by three sync bytes in a row;
        accept a position whose every 188th byte up to the end is a sync byte."""
        buf = self._carry
        pos = 0
        while not self._synced:
            i = buf.find(b"\x47", pos)
            if i < 0 or len(buf) - i < PACKET_SIZE:
                return
            if buf[i:len(buf) - (len(buf) - i) % PACKET_SIZE:PACKET_SIZE].lstrip(b"\x47"):
                pos = i + 1
                continue
            self.skipped_bytes += i
            self._carry = b""
            self._synced = self._ever_synced = True
            self.size_bytes -= len(buf)  # feed() counts them again
            self.feed(buf[i:])

    def finish(self) -> ProbeReport:
        if not self._synced and self._carry:
            self._flush_tail()
        if not self._ever_synced:
            if self.size_bytes == 0:
                raise StreamError(f"{self.source}: empty stream").with_id(
                    "empty_stream", source=self.source)
            raise StreamError(f"{self.source}: not an MPEG transport stream "
                              "(no 188-byte packet sync found)").with_id(
                                  "not_ts", source=self.source)
        if self._carry:
            self.skipped_bytes += len(self._carry)
            self._carry = b""
        return assemble(self)

