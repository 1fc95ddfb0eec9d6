"""Section carriage in TS packets (ISO/IEC 13818-1 §2.4.4.1-2): :class:`Packetizer` turns
sections into packets (pointer_field, sections spanning packets, 0xFF stuffing) and
:class:`SectionReassembler` gets them back from a damaged stream, counting what it tolerated.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from cas.errors import FormatError
from cas.formats._common import check_bits
from cas.formats.crc import crc32_mpeg2
from cas.formats.sections import MAX_PRIVATE_SECTION_LENGTH, section_total_length
from cas.formats.ts.packet import PACKET_SIZE, PAYLOAD_SIZE, SYNC_BYTE

# --- section carriage --------------------------------------------------------------------------


class Packetizer:
    """Turns sections into TS packets on one PID (ISO/IEC 13818-1 §2.4.4.1-2).

    A packet in which a section starts has payload_unit_start_indicator = 1 and a pointer_field
    giving the offset of that start; sections may span packets; the unused end of the last
    packet is stuffed with 0xFF.  The continuity_counter runs on across calls.
    """

    def __init__(self, pid: int, *, continuity_counter: int = 0) -> None:
        check_bits("packetizer.PID", pid, 13)
        check_bits("packetizer.continuity_counter", continuity_counter, 4)
        self.pid = pid
        self.continuity_counter = continuity_counter

    def packetize(self, section: bytes) -> list[bytes]:
        """One section, starting in a new packet."""
        return self.packetize_many([section])

    def packetize_many(self, sections: Iterable[bytes]) -> list[bytes]:
        """Several sections packed back to back (each next one starts right after the last);
        stuffing only after the final one."""
        data = bytearray()
        starts: list[int] = []
        for i, section in enumerate(sections):
            section = bytes(section)
            try:
                total = section_total_length(section)
            except FormatError as exc:
                raise FormatError(str(exc), path=f"packetizer.sections[{i}]").with_id(
                    "formats.within", field=f"packetizer.sections[{i}]", inner=exc) from exc
            if total != len(section):
                raise FormatError(
                    f"section_length implies {total} bytes, got {len(section)}",
                    path=f"packetizer.sections[{i}]",
                ).with_id(
                    "formats.section_length_implies_bytes", field=f"packetizer.sections[{i}]",
                    total=total, n=len(section))
            if section[0] == 0xFF:
                raise FormatError(
                    "table_id 0xFF is reserved for stuffing", path=f"packetizer.sections[{i}]"
                ).with_id("formats.table_id_xff_reserved", field=f"packetizer.sections[{i}]")
            starts.append(len(data))
            data += section
        packets: list[bytes] = []
        pid_hi = self.pid >> 8
        pid_lo = self.pid & 0xFF
        pos = 0
        si = 0  # index of the next section start not yet signalled
        n = len(data)
        while pos < n:
            while si < len(starts) and starts[si] < pos:
                si += 1
            if si < len(starts) and starts[si] - pos <= PAYLOAD_SIZE - 2:
                # A section starts in this packet: one byte goes to the pointer_field.
                pointer = starts[si] - pos
                chunk = bytes((pointer,)) + data[pos : pos + PAYLOAD_SIZE - 1]
                pos += PAYLOAD_SIZE - 1
                b1 = 0x40 | pid_hi
            elif si < len(starts) and starts[si] - pos == PAYLOAD_SIZE - 1:
                # The next section would start on this packet's last byte, where no
                # pointer_field can point: end the packet with one stuffing byte after the
                # section before it, and start the next one in the next packet.
                chunk = bytes(data[pos : pos + PAYLOAD_SIZE - 1])
                pos += PAYLOAD_SIZE - 1
                b1 = pid_hi
            else:
                chunk = bytes(data[pos : pos + PAYLOAD_SIZE])
                pos += PAYLOAD_SIZE
                b1 = pid_hi
            header = bytes((SYNC_BYTE, b1, pid_lo, 0x10 | self.continuity_counter))
            packets.append(header + chunk + b"\xff" * (PAYLOAD_SIZE - len(chunk)))
            self.continuity_counter = (self.continuity_counter + 1) & 0x0F
        return packets


@dataclass(frozen=True, kw_only=True, slots=True)
class ReassemblyEvent:
    """Something :class:`SectionReassembler` tolerated.  ``kind`` is one of
    ``bad_packet``, ``wrong_pid``, ``transport_error``, ``continuity``, ``duplicate``,
    ``scrambled``, ``bad_pointer``, ``truncated_section``, ``bad_section_length``, ``crc``,
    ``garbage``."""

    kind: str
    pid: int | None
    packet_index: int
    detail: str = ""


class SectionReassembler:
    """Reassembles the sections of one PID from its TS packets.

    Never raises on stream content: damaged input is counted in :attr:`counts` and recorded in
    :attr:`events` (the first ``max_events``), and the partial section in progress is dropped.
    Long sections with a wrong CRC_32 are dropped (``check_crc``).  Returns complete section
    bytes; parse them with :mod:`cas.formats.sections` / :mod:`cas.formats.psi`.
    """

    def __init__(self, pid: int, *, check_crc: bool = True, max_events: int = 1000) -> None:
        check_bits("reassembler.PID", pid, 13)
        self.pid = pid
        self.check_crc = check_crc
        self.max_events = max_events
        self.events: list[ReassemblyEvent] = []
        self.counts: Counter[str] = Counter()
        self.packets = 0
        self.sections = 0
        self._cc: int | None = None
        self._buf: bytearray | None = None

    def _event(self, kind: str, detail: str = "", pid: int | None = None) -> None:
        self.counts[kind] += 1
        if len(self.events) < self.max_events:
            self.events.append(
                ReassemblyEvent(
                    kind=kind,
                    pid=self.pid if pid is None else pid,
                    packet_index=self.packets - 1,
                    detail=detail,
                )
            )

    @property
    def idle(self) -> bool:
        """No section is in progress (the next bytes must start a new one)."""
        return self._buf is None

    def reset(self) -> None:
        """Forget the continuity state and any partial section (e.g. after a retune)."""
        self._cc = None
        self._buf = None

    def feed_many(self, packets: Iterable[bytes | bytearray | memoryview]) -> list[bytes]:
        out: list[bytes] = []
        for pkt in packets:
            out.extend(self.feed(pkt))
        return out

    def feed(self, packet: bytes | bytearray | memoryview) -> list[bytes]:
        """Take one packet; return the sections it completed (often none)."""
        self.packets += 1
        pkt = packet
        if len(pkt) != PACKET_SIZE or pkt[0] != SYNC_BYTE:
            self._event("bad_packet", f"{len(pkt)} bytes, first byte {pkt[0] if pkt else -1}")
            return []
        pid = ((pkt[1] & 0x1F) << 8) | pkt[2]
        if pid != self.pid:
            # Counted only: a demux may hand every packet to every reassembler.
            self.counts["wrong_pid"] += 1
            return []
        if pkt[1] & 0x80:
            self._event("transport_error", "transport_error_indicator set")
            self._buf = None
            return []
        b3 = pkt[3]
        afc = (b3 >> 4) & 0x03
        if afc == 0:
            self._event("bad_packet", "adaptation_field_control 00")
            return []
        start = 4
        discontinuity = False
        if afc & 0x02:
            af_len = pkt[4]
            if af_len > (183 if afc == 0b10 else 182):
                self._event("bad_packet", f"adaptation_field_length {af_len}")
                self._buf = None
                return []
            start = 5 + af_len
            discontinuity = af_len > 0 and bool(pkt[5] & 0x80)
        if not afc & 0x01:
            return []  # no payload: the continuity_counter does not advance
        cc = b3 & 0x0F
        last = self._cc
        self._cc = cc
        if last is not None and not discontinuity:
            if cc == last:
                self._event("duplicate", f"continuity_counter {cc} repeated")
                return []
            if cc != (last + 1) & 0x0F:
                self._event("continuity", f"expected {(last + 1) & 0x0F}, got {cc}")
                self._buf = None
        if b3 & 0xC0:
            self._event("scrambled", "section PIDs are never scrambled")
            self._buf = None
            return []
        out: list[bytes] = []
        if pkt[1] & 0x40:
            if start >= PACKET_SIZE:
                self._event("bad_pointer", "no room for the pointer_field")
                self._buf = None
                return []
            pointer = pkt[start]
            first = start + 1 + pointer
            if first > PACKET_SIZE:
                self._event("bad_pointer", f"pointer_field {pointer} runs past the packet")
                self._buf = None
                return []
            if self._buf is not None:
                self._buf += pkt[start + 1 : first]
                self._drain(out, new_sections=False)
                if self._buf:
                    self._event("truncated_section", "a new section started before it ended")
            self._buf = bytearray(pkt[first:])
            self._drain(out, new_sections=True)
        elif self._buf is not None:
            self._buf += pkt[start:]
            self._drain(out, new_sections=False)
        return out

    def _drain(self, out: list[bytes], *, new_sections: bool) -> None:
        """Move complete sections from the buffer to ``out``.

        ``new_sections``: whether a section may *start* in the bytes just added (only in a
        packet with payload_unit_start_indicator = 1).
        """
        buf = self._buf
        assert buf is not None
        pos = 0
        n = len(buf)
        completed = False
        while pos < n:
            if buf[pos] == 0xFF:
                # Stuffing: nothing more until the next payload_unit_start_indicator.
                self._buf = None
                return
            if completed and not new_sections:
                self._event("garbage", "data after a section end in a packet without PUSI")
                self._buf = None
                return
            if n - pos < 3:
                break
            section_length = ((buf[pos + 1] & 0x0F) << 8) | buf[pos + 2]
            if section_length > MAX_PRIVATE_SECTION_LENGTH:
                self._event("bad_section_length", f"section_length {section_length}")
                self._buf = None
                return
            total = 3 + section_length
            if n - pos < total:
                break
            section = bytes(buf[pos : pos + total])
            pos += total
            completed = True
            if self.check_crc and section[1] & 0x80 and crc32_mpeg2(section) != 0:
                self._event("crc", f"table_id 0x{section[0]:02X}")
                continue
            self.sections += 1
            out.append(section)
        self._buf = buf[pos:] if pos < n else None
