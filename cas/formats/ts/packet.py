"""MPEG-2 transport stream packets (ISO/IEC 13818-1 §2.4.3.2-5).

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

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from construct import BitsInteger, BitStruct, Const, Flag

from cas.errors import FormatError
from cas.formats._common import check_bits

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


# --- dataclasses -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Pcr:
    """program_clock_reference: 33-bit base (90 kHz) and 9-bit extension (27 MHz, < 300)."""

    base: int
    extension: int = 0

    def __post_init__(self) -> None:
        check_bits("adaptation_field.program_clock_reference_base", self.base, 33)
        check_bits("adaptation_field.program_clock_reference_extension", self.extension, 9)

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
            ).with_id(
                "formats.adaptation_field_splice_countdown",
                splice_countdown=self.splice_countdown)
        if self.transport_private_data is not None and len(self.transport_private_data) > 181:
            raise FormatError("too long", path="adaptation_field.transport_private_data_length").with_id(
                "formats.adaptation_field_transport_private")
        if self.extension is not None and len(self.extension) > 181:
            raise FormatError("too long", path="adaptation_field.adaptation_field_extension").with_id(
                "formats.adaptation_field_adaptation_field")

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
        check_bits("ts_packet.PID", self.pid, 13)
        check_bits("ts_packet.transport_scrambling_control", self.transport_scrambling_control, 2)
        check_bits("ts_packet.continuity_counter", self.continuity_counter, 4)
        if not isinstance(self.payload, bytes):
            raise FormatError("payload must be bytes", path="ts_packet.payload").with_id(
                "formats.ts_packet_payload_payload")
        n = len(self.payload)
        if self.adaptation_field is None:
            if n != PAYLOAD_SIZE:
                raise FormatError(
                    f"payload of {n} bytes without an adaptation field (needs {PAYLOAD_SIZE}"
                    "; pass adaptation_field=AdaptationField() to stuff)",
                    path="ts_packet.payload",
                ).with_id("formats.ts_packet_payload_payload_2", n=n, payload_size=PAYLOAD_SIZE)
        else:
            # adaptation_field_length = 183 - payload length (183: AF only, 0: one byte).
            space = PAYLOAD_SIZE - 1 - n
            af_len = self.adaptation_field.encoded_length()
            if space < 0 or af_len > space:
                raise FormatError(
                    f"adaptation field ({af_len} bytes) and payload ({n} bytes) exceed "
                    f"{PAYLOAD_SIZE} bytes",
                    path="ts_packet.adaptation_field",
                ).with_id(
                    "formats.ts_packet_adaptation_field", af_len=af_len, n=n,
                    payload_size=PAYLOAD_SIZE)

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
            raise FormatError("PCR runs past the adaptation field", path="adaptation_field.PCR").with_id(
                "formats.adaptation_field_pcr_pcr")
        pcr = _decode_pcr(pkt, pos)
        pos += 6
    if flags & 0x08:
        if pos + 6 > end:
            raise FormatError("OPCR runs past the adaptation field", path="adaptation_field.OPCR").with_id(
                "formats.adaptation_field_opcr_opcr")
        opcr = _decode_pcr(pkt, pos)
        pos += 6
    if flags & 0x04:
        if pos + 1 > end:
            raise FormatError("missing splice_countdown", path="adaptation_field.splice_countdown").with_id(
                "formats.adaptation_field_splice_countdown_2")
        splice = pkt[pos] - 256 if pkt[pos] & 0x80 else pkt[pos]
        pos += 1
    if flags & 0x02:
        if pos + 1 > end or pos + 1 + pkt[pos] > end:
            raise FormatError(
                "transport_private_data runs past the adaptation field",
                path="adaptation_field.transport_private_data_length",
            ).with_id("formats.adaptation_field_transport_private_2")
        private = pkt[pos + 1 : pos + 1 + pkt[pos]]
        pos += 1 + pkt[pos]
    if flags & 0x01:
        if pos + 1 > end or pos + 1 + pkt[pos] > end:
            raise FormatError(
                "adaptation_field_extension runs past the adaptation field",
                path="adaptation_field.adaptation_field_extension_length",
            ).with_id("formats.adaptation_field_adaptation_field_2")
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
        raise FormatError(f"{len(pkt)} bytes, a TS packet has 188", path="ts_packet").with_id(
            "formats.ts_packet_bytes_ts", n=len(pkt))
    if pkt[0] != SYNC_BYTE:
        raise FormatError(f"sync_byte 0x{pkt[0]:02X} is not 0x47", path="ts_packet.sync_byte").with_id(
            "formats.ts_packet_sync_byte", pkt=f"{pkt[0]:02X}")
    afc = (pkt[3] >> 4) & 0x03
    af: AdaptationField | None = None
    start = 4
    if afc == 0:
        raise FormatError(
            "adaptation_field_control 00 is reserved", path="ts_packet.adaptation_field_control"
        ).with_id("formats.ts_packet_adaptation_field_2")
    if afc & 0x02:
        length = pkt[4]
        limit = 183 if afc == 0b10 else 182
        if (afc == 0b10 and length != 183) or length > limit:
            raise FormatError(
                f"adaptation_field_length {length} invalid with adaptation_field_control {afc:02b}",
                path="ts_packet.adaptation_field.adaptation_field_length",
            ).with_id("formats.ts_packet_adaptation_field_3", length=length, afc=f"{afc:02b}")
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
            raise FormatError(f"no sync byte at offset {pos}", path="ts.sync_byte").with_id(
                "formats.ts_sync_byte_no", pos=pos)
        nxt = buf.find(b"\x47", pos + 1)
        if nxt < 0:
            return
        pos = nxt
    if strict and pos != n:
        raise FormatError(f"{n - pos} bytes left after the last whole packet", path="ts").with_id(
            "formats.ts_bytes_left_after", value=n - pos)


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
