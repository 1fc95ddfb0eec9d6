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

The package holds :mod:`.packet` (the packet, its header declaration and the per-packet
helpers) and :mod:`.carriage` (packetizer and reassembler); both are re-exported here, so
callers keep importing from ``cas.formats.ts``.
"""

from __future__ import annotations

from cas.formats.ts.carriage import Packetizer, ReassemblyEvent, SectionReassembler
from cas.formats.ts.packet import (
    NULL_PID,
    PACKET_SIZE,
    PAYLOAD_SIZE,
    SYNC_BYTE,
    TS_HEADER,
    AdaptationField,
    Pcr,
    TsPacket,
    build_packet,
    cc_of,
    describe,
    has_payload,
    is_null,
    iter_packets,
    null_packet,
    parse_packet,
    payload_of,
    payload_offset,
    pid_of,
    pusi_of,
    scrambling_of,
    set_scrambling,
)

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
