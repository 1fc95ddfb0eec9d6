"""MPEG-2 transport stream packets (ISO/IEC 13818-1 §2.4.3.2-5) and section carriage
(§2.4.4.1-2: pointer_field, stuffing).

The package holds :mod:`.packet` (the packet and its layout, the ``TS_HEADER`` declaration,
the per-packet helpers for hot loops) and :mod:`.carriage` (packetizer and reassembler); both
are re-exported here, so callers keep importing from ``cas.formats.ts``.
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
