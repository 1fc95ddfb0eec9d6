"""MPEG-2 transport stream packets (ISO/IEC 13818-1 §2.4.3.2-5) and section carriage
(§2.4.4.1-2: pointer_field, stuffing).

Packet layout (188 bytes)::

    byte 0     sync_byte 0x47
    byte 1     transport_error_indicator 1 | payload_unit_start_indicator 1 |
               transport_priority 1 | PID[12:8] 5
    byte 2     PID[7:0]
    byte 3     transport_scrambling_control 2 | adaptation_field_control 2 |
               continuity_counter 4
    [adaptation_field: adaptation_field_length 8, flags 8, optional fields, stuffing 0xFF]
    [payload]

adaptation_field_control: 01 payload only, 10 adaptation field only (length 183),
11 adaptation field (length 0..182) then payload, 00 reserved (rejected).

Everything here runs per packet, so it is written with integer operations on the bytes: the
:class:`TsPacket` dataclass with :func:`parse_packet`/:func:`build_packet` for tools and
tests, and the functions ``pid_of``, ``pusi_of``, ``cc_of``, ``payload_of``, ... for hot
loops that must not build objects.  :data:`TS_HEADER` is the same 4-byte header as a
``construct`` declaration (documentation and a cross-check in the tests).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from construct import BitsInteger, BitStruct, Const, Flag

from cas.errors import FormatError
from cas.formats.crc import crc32_mpeg2
from cas.formats.sections import MAX_PRIVATE_SECTION_LENGTH, section_total_length

__all__ = [
    "NULL_PID",
    "PACKET_SIZE",
    "PAYLOAD_SIZE",
    "SYNC_BYTE",
    "TS_HEADER",
    "AdaptationField",
    "Packetizer",
    "Pcr",
    "ReassemblyEvent",
    "SectionReassembler",
    "TsPacket",
    "build_packet",
    "cc_of",
    "describe",
    "has_payload",
    "is_null",
    "iter_packets",
    "null_packet",
    "parse_packet",
    "payload_of",
    "payload_offset",
    "pid_of",
    "pusi_of",
    "scrambling_of",
    "set_scrambling",
]

PACKET_SIZE = 188
PAYLOAD_SIZE = 184
SYNC_BYTE = 0x47
NULL_PID = 0x1FFF

#: The 4-byte TS packet header, declaratively (ISO/IEC 13818-1 Table 2-2).
TS_HEADER = BitStruct(
    "sync_byte" / Const(SYNC_BYTE, BitsInteger(8)),
    "transport_error_indicator" / Flag,
    "payload_unit_start_indicator" / Flag,
    "transport_priority" / Flag,
    "PID" / BitsInteger(13),
    "transport_scrambling_control" / BitsInteger(2),
    "adaptation_field_control" / BitsInteger(2),
    "continuity_counter" / BitsInteger(4),
)


def _check(path: str, value: int, bits: int) -> None:
    if not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise FormatError(f"{value!r} does not fit in {bits} bits", path=path)


# --- dataclasses -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Pcr:
    """program_clock_reference: 33-bit base (90 kHz) and 9-bit extension (27 MHz, < 300)."""

    base: int
    extension: int = 0

    def __post_init__(self) -> None:
        _check("adaptation_field.program_clock_reference_base", self.base, 33)
        _check("adaptation_field.program_clock_reference_extension", self.extension, 9)

    @property
    def ticks_27mhz(self) -> int:
        return self.base * 300 + self.extension

    @classmethod
    def from_ticks(cls, ticks_27mhz: int) -> Pcr:
        base, extension = divmod(ticks_27mhz, 300)
        return cls(base=base % (1 << 33), extension=extension)


def _encode_pcr(pcr: Pcr) -> bytes:
    b = pcr.base
    return bytes(
        (
            (b >> 25) & 0xFF,
            (b >> 17) & 0xFF,
            (b >> 9) & 0xFF,
            (b >> 1) & 0xFF,
            ((b & 1) << 7) | 0x7E | (pcr.extension >> 8),
            pcr.extension & 0xFF,
        )
    )


def _decode_pcr(data: bytes | bytearray, pos: int) -> Pcr:
    base = (
        (data[pos] << 25)
        | (data[pos + 1] << 17)
        | (data[pos + 2] << 9)
        | (data[pos + 3] << 1)
        | (data[pos + 4] >> 7)
    )
    return Pcr(base=base, extension=((data[pos + 4] & 0x01) << 8) | data[pos + 5])


@dataclass(frozen=True, kw_only=True)
class AdaptationField:
    """adaptation_field() (ISO/IEC 13818-1 §2.4.3.4).  Stuffing is not stored: the builder
    fills the packet with 0xFF stuffing bytes.  The adaptation_field_extension is kept as raw
    bytes (after its length byte)."""

    discontinuity_indicator: bool = False
    random_access_indicator: bool = False
    elementary_stream_priority_indicator: bool = False
    pcr: Pcr | None = None
    opcr: Pcr | None = None
    #: splice_countdown, two's complement -128..127.
    splice_countdown: int | None = None
    transport_private_data: bytes | None = None
    extension: bytes | None = None

    def __post_init__(self) -> None:
        if self.splice_countdown is not None and not -128 <= self.splice_countdown <= 127:
            raise FormatError(
                f"{self.splice_countdown} is not in -128..127",
                path="adaptation_field.splice_countdown",
            )
        if self.transport_private_data is not None and len(self.transport_private_data) > 181:
            raise FormatError("too long", path="adaptation_field.transport_private_data_length")
        if self.extension is not None and len(self.extension) > 181:
            raise FormatError("too long", path="adaptation_field.adaptation_field_extension")

    @property
    def is_empty(self) -> bool:
        """No flag set and no optional field: can be coded as adaptation_field_length 0."""
        return self == _EMPTY_AF

    def encoded_length(self) -> int:
        """Smallest adaptation_field_length (bytes after the length byte) that holds it."""
        if self.is_empty:
            return 0
        n = 1
        n += 6 if self.pcr is not None else 0
        n += 6 if self.opcr is not None else 0
        n += 1 if self.splice_countdown is not None else 0
        if self.transport_private_data is not None:
            n += 1 + len(self.transport_private_data)
        if self.extension is not None:
            n += 1 + len(self.extension)
        return n

    def encode(self, length: int) -> bytes:
        """adaptation_field_length byte + fields + stuffing up to ``length``."""
        if length == 0:
            return b"\x00"
        flags = (
            (0x80 if self.discontinuity_indicator else 0)
            | (0x40 if self.random_access_indicator else 0)
            | (0x20 if self.elementary_stream_priority_indicator else 0)
            | (0x10 if self.pcr is not None else 0)
            | (0x08 if self.opcr is not None else 0)
            | (0x04 if self.splice_countdown is not None else 0)
            | (0x02 if self.transport_private_data is not None else 0)
            | (0x01 if self.extension is not None else 0)
        )
        out = bytearray((length, flags))
        if self.pcr is not None:
            out += _encode_pcr(self.pcr)
        if self.opcr is not None:
            out += _encode_pcr(self.opcr)
        if self.splice_countdown is not None:
            out.append(self.splice_countdown & 0xFF)
        if self.transport_private_data is not None:
            out.append(len(self.transport_private_data))
            out += self.transport_private_data
        if self.extension is not None:
            out.append(len(self.extension))
            out += self.extension
        out += b"\xff" * (length + 1 - len(out))
        return bytes(out)


_EMPTY_AF = AdaptationField()


@dataclass(frozen=True, kw_only=True)
class TsPacket:
    """One 188-byte transport stream packet.

    Without an adaptation field the payload is exactly 184 bytes.  With one, the adaptation
    field is stuffed to fill the packet; an empty payload means adaptation_field_control 10.
    """

    pid: int
    payload: bytes = b""
    payload_unit_start_indicator: bool = False
    transport_error_indicator: bool = False
    transport_priority: bool = False
    #: 00 clear, 01 reserved, 10 even key, 11 odd key (ETSI ETR 289 / TS 100 289).
    transport_scrambling_control: int = 0
    continuity_counter: int = 0
    adaptation_field: AdaptationField | None = None

    def __post_init__(self) -> None:
        _check("ts_packet.PID", self.pid, 13)
        _check("ts_packet.transport_scrambling_control", self.transport_scrambling_control, 2)
        _check("ts_packet.continuity_counter", self.continuity_counter, 4)
        if not isinstance(self.payload, bytes):
            raise FormatError("payload must be bytes", path="ts_packet.payload")
        n = len(self.payload)
        if self.adaptation_field is None:
            if n != PAYLOAD_SIZE:
                raise FormatError(
                    f"payload of {n} bytes without an adaptation field (needs {PAYLOAD_SIZE}"
                    "; pass adaptation_field=AdaptationField() to stuff)",
                    path="ts_packet.payload",
                )
        else:
            # adaptation_field_length = 183 - payload length (183: AF only, 0: one byte).
            space = PAYLOAD_SIZE - 1 - n
            af_len = self.adaptation_field.encoded_length()
            if space < 0 or af_len > space:
                raise FormatError(
                    f"adaptation field ({af_len} bytes) and payload ({n} bytes) exceed "
                    f"{PAYLOAD_SIZE} bytes",
                    path="ts_packet.adaptation_field",
                )

    @property
    def adaptation_field_control(self) -> int:
        if self.adaptation_field is None:
            return 0b01
        return 0b11 if self.payload else 0b10


def build_packet(packet: TsPacket) -> bytes:
    """Serialise a :class:`TsPacket` to 188 bytes."""
    afc = packet.adaptation_field_control
    header = bytes(
        (
            SYNC_BYTE,
            (0x80 if packet.transport_error_indicator else 0)
            | (0x40 if packet.payload_unit_start_indicator else 0)
            | (0x20 if packet.transport_priority else 0)
            | (packet.pid >> 8),
            packet.pid & 0xFF,
            (packet.transport_scrambling_control << 6) | (afc << 4) | packet.continuity_counter,
        )
    )
    if packet.adaptation_field is None:
        return header + packet.payload
    af_length = PAYLOAD_SIZE - 1 - len(packet.payload)
    return header + packet.adaptation_field.encode(af_length) + packet.payload


def _parse_adaptation_field(pkt: bytes, length: int) -> AdaptationField:
    if length == 0:
        return _EMPTY_AF
    end = 5 + length
    flags = pkt[5]
    pos = 6
    pcr = opcr = None
    splice = None
    private = extension = None
    if flags & 0x10:
        if pos + 6 > end:
            raise FormatError("PCR runs past the adaptation field", path="adaptation_field.PCR")
        pcr = _decode_pcr(pkt, pos)
        pos += 6
    if flags & 0x08:
        if pos + 6 > end:
            raise FormatError("OPCR runs past the adaptation field", path="adaptation_field.OPCR")
        opcr = _decode_pcr(pkt, pos)
        pos += 6
    if flags & 0x04:
        if pos + 1 > end:
            raise FormatError("missing splice_countdown", path="adaptation_field.splice_countdown")
        splice = pkt[pos] - 256 if pkt[pos] & 0x80 else pkt[pos]
        pos += 1
    if flags & 0x02:
        if pos + 1 > end or pos + 1 + pkt[pos] > end:
            raise FormatError(
                "transport_private_data runs past the adaptation field",
                path="adaptation_field.transport_private_data_length",
            )
        private = pkt[pos + 1 : pos + 1 + pkt[pos]]
        pos += 1 + pkt[pos]
    if flags & 0x01:
        if pos + 1 > end or pos + 1 + pkt[pos] > end:
            raise FormatError(
                "adaptation_field_extension runs past the adaptation field",
                path="adaptation_field.adaptation_field_extension_length",
            )
        extension = pkt[pos + 1 : pos + 1 + pkt[pos]]
        pos += 1 + pkt[pos]
    # The rest is stuffing (0xFF by the standard; not checked, a decoder must skip it).
    return AdaptationField(
        discontinuity_indicator=bool(flags & 0x80),
        random_access_indicator=bool(flags & 0x40),
        elementary_stream_priority_indicator=bool(flags & 0x20),
        pcr=pcr,
        opcr=opcr,
        splice_countdown=splice,
        transport_private_data=private,
        extension=extension,
    )


def parse_packet(data: bytes | bytearray | memoryview) -> TsPacket:
    """Parse one 188-byte packet.  Raises FormatError on a wrong size, sync byte,
    adaptation_field_control 00, or an adaptation field that does not fit."""
    pkt = bytes(data)
    if len(pkt) != PACKET_SIZE:
        raise FormatError(f"{len(pkt)} bytes, a TS packet has 188", path="ts_packet")
    if pkt[0] != SYNC_BYTE:
        raise FormatError(f"sync_byte 0x{pkt[0]:02X} is not 0x47", path="ts_packet.sync_byte")
    afc = (pkt[3] >> 4) & 0x03
    af: AdaptationField | None = None
    start = 4
    if afc == 0:
        raise FormatError(
            "adaptation_field_control 00 is reserved", path="ts_packet.adaptation_field_control"
        )
    if afc & 0x02:
        length = pkt[4]
        limit = 183 if afc == 0b10 else 182
        if (afc == 0b10 and length != 183) or length > limit:
            raise FormatError(
                f"adaptation_field_length {length} invalid with adaptation_field_control {afc:02b}",
                path="ts_packet.adaptation_field.adaptation_field_length",
            )
        af = _parse_adaptation_field(pkt, length)
        start = 5 + length
    return TsPacket(
        pid=((pkt[1] & 0x1F) << 8) | pkt[2],
        payload=pkt[start:] if afc & 0x01 else b"",
        payload_unit_start_indicator=bool(pkt[1] & 0x40),
        transport_error_indicator=bool(pkt[1] & 0x80),
        transport_priority=bool(pkt[1] & 0x20),
        transport_scrambling_control=pkt[3] >> 6,
        continuity_counter=pkt[3] & 0x0F,
        adaptation_field=af,
    )


# --- fast helpers (no objects) -----------------------------------------------------------------


def pid_of(pkt: bytes | bytearray | memoryview) -> int:
    return ((pkt[1] & 0x1F) << 8) | pkt[2]


def pusi_of(pkt: bytes | bytearray | memoryview) -> bool:
    return bool(pkt[1] & 0x40)


def cc_of(pkt: bytes | bytearray | memoryview) -> int:
    return pkt[3] & 0x0F


def scrambling_of(pkt: bytes | bytearray | memoryview) -> int:
    """transport_scrambling_control: 0 clear, 2 even, 3 odd."""
    return pkt[3] >> 6


def has_payload(pkt: bytes | bytearray | memoryview) -> bool:
    return bool(pkt[3] & 0x10)


def is_null(pkt: bytes | bytearray | memoryview) -> bool:
    return pkt[2] == 0xFF and (pkt[1] & 0x1F) == 0x1F


def payload_offset(pkt: bytes | bytearray | memoryview) -> int:
    """Offset of the payload in the packet; -1 if there is none or the AF length is bad."""
    afc = pkt[3] & 0x30
    if afc == 0x10:
        return 4
    if afc == 0x30:
        start = 5 + pkt[4]
        return start if start <= PACKET_SIZE else -1
    return -1


def payload_of(pkt: bytes | bytearray | memoryview) -> bytes:
    """The payload bytes (``b""`` when there is none or the packet is malformed)."""
    start = payload_offset(pkt)
    return bytes(pkt[start:PACKET_SIZE]) if start >= 0 else b""


def set_scrambling(buf: bytearray, offset: int, tsc: int) -> None:
    """Set transport_scrambling_control of the packet at ``buf[offset]`` in place."""
    buf[offset + 3] = (buf[offset + 3] & 0x3F) | ((tsc & 0x03) << 6)


def null_packet(continuity_counter: int = 0) -> bytes:
    """A null packet (PID 0x1FFF, payload of 0xFF; its continuity_counter is undefined)."""
    return bytes((SYNC_BYTE, 0x1F, 0xFF, 0x10 | (continuity_counter & 0x0F))) + b"\xff" * 184


def iter_packets(data: bytes | bytearray | memoryview, *, strict: bool = False) -> Iterator[bytes]:
    """Yield the 188-byte packets of ``data``.

    Tolerant by default: bytes that are not at a sync position (a 0x47 followed by another 0x47
    188 bytes on, or ending the data) are skipped, as is a short packet at the end.
    With ``strict`` any misalignment or leftover is a FormatError.
    """
    buf = bytes(data)
    n = len(buf)
    pos = 0
    while pos + PACKET_SIZE <= n:
        if buf[pos] == SYNC_BYTE and (
            pos + PACKET_SIZE == n
            or buf[pos + PACKET_SIZE] == SYNC_BYTE
            or pos + 2 * PACKET_SIZE > n
        ):
            yield buf[pos : pos + PACKET_SIZE]
            pos += PACKET_SIZE
            continue
        if strict:
            raise FormatError(f"no sync byte at offset {pos}", path="ts.sync_byte")
        nxt = buf.find(b"\x47", pos + 1)
        if nxt < 0:
            return
        pos = nxt
    if strict and pos != n:
        raise FormatError(f"{n - pos} bytes left after the last whole packet", path="ts")


# --- section carriage --------------------------------------------------------------------------


class Packetizer:
    """Turns sections into TS packets on one PID (ISO/IEC 13818-1 §2.4.4.1-2).

    A packet in which a section starts has payload_unit_start_indicator = 1 and a pointer_field
    giving the offset of that start; sections may span packets; the unused end of the last
    packet is stuffed with 0xFF.  The continuity_counter runs on across calls.
    """

    def __init__(self, pid: int, *, continuity_counter: int = 0) -> None:
        _check("packetizer.PID", pid, 13)
        _check("packetizer.continuity_counter", continuity_counter, 4)
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
                raise FormatError(str(exc), path=f"packetizer.sections[{i}]") from exc
            if total != len(section):
                raise FormatError(
                    f"section_length implies {total} bytes, got {len(section)}",
                    path=f"packetizer.sections[{i}]",
                )
            if section[0] == 0xFF:
                raise FormatError(
                    "table_id 0xFF is reserved for stuffing", path=f"packetizer.sections[{i}]"
                )
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
        _check("reassembler.PID", pid, 13)
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


# --- describe ----------------------------------------------------------------------------------


def _describe_pcr(pcr: Pcr | None) -> dict[str, int] | None:
    if pcr is None:
        return None
    return {"base": pcr.base, "extension": pcr.extension, "ticks_27mhz": pcr.ticks_27mhz}


def describe(packet: TsPacket) -> dict[str, Any]:
    """JSON-able view of a packet, for ``cas decode``."""
    af = packet.adaptation_field
    return {
        "kind": "ts_packet",
        "PID": packet.pid,
        "transport_error_indicator": int(packet.transport_error_indicator),
        "payload_unit_start_indicator": int(packet.payload_unit_start_indicator),
        "transport_priority": int(packet.transport_priority),
        "transport_scrambling_control": packet.transport_scrambling_control,
        "adaptation_field_control": packet.adaptation_field_control,
        "continuity_counter": packet.continuity_counter,
        "adaptation_field": None
        if af is None
        else {
            "discontinuity_indicator": int(af.discontinuity_indicator),
            "random_access_indicator": int(af.random_access_indicator),
            "elementary_stream_priority_indicator": int(af.elementary_stream_priority_indicator),
            "PCR": _describe_pcr(af.pcr),
            "OPCR": _describe_pcr(af.opcr),
            "splice_countdown": af.splice_countdown,
            "transport_private_data": None
            if af.transport_private_data is None
            else af.transport_private_data.hex(),
            "adaptation_field_extension": None if af.extension is None else af.extension.hex(),
        },
        "payload_length": len(packet.payload),
        "payload": packet.payload.hex(),
    }
