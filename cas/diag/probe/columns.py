"""Constants and byte-value lookup tables of the column scan (:mod:`.scanner`).

Each table has one entry per byte value, for ``bytes.translate`` over a column of a chunk
(``chunk[k::188]``: byte ``k`` of every packet).
"""

from __future__ import annotations

PACKET_SIZE = 188
SYNC_BYTE = 0x47
NULL_PID = 0x1FFF
#: Packets per read (12.3 MB): big enough that the per-chunk Python work is noise.
CHUNK_PACKETS = 1 << 16
#: Continuity errors listed one by one per PID (all of them are counted).
MAX_CC_EVENTS = 20
#: Codes 1..254 name PIDs; 255 collects PIDs beyond the 254th; 0 means "not yet seen".
MAX_CODES = 254
OVERFLOW_CODE = 255


# --- translate tables (one entry per byte value) ---------------------------------------------
PID_HI = bytes(b & 0x1F for b in range(256))
EQ = [bytes(0xFF if b == h else 0 for b in range(256)) for h in range(32)]
MASK_EVEN = bytes(0xFF if b >> 6 == 2 else 0 for b in range(256))
MASK_ODD = bytes(0xFF if b >> 6 == 3 else 0 for b in range(256))
MASK_RSVD = bytes(0xFF if b >> 6 == 1 else 0 for b in range(256))
TSC_CLEAR = bytes(range(0x40))  # delete: leaves the scrambled packets' byte 3
NOT_RSVD = bytes(range(0x80, 0x100))  # delete (after TSC_CLEAR): leaves tsc 01
PAYLOAD = bytes(0xFF if b & 0x10 else 0 for b in range(256))
NO_PAYLOAD = bytes(0 if b & 0x10 else 0xFF for b in range(256))
AF_AND_PAYLOAD = bytes(0xFF if b & 0x30 == 0x30 else 0 for b in range(256))
#: adaptation_field_length >= 168: at most 15 payload bytes, which scramblers leave clear
#: (DVB-CSA2 scrambles whole 8-byte blocks, CISSA whole 16-byte blocks).
AF_GE168 = bytes(0xFF if b >= 168 else 0 for b in range(256))
CC = bytes(b & 0x0F for b in range(256))
AF = bytes(1 if b & 0x20 else 0 for b in range(256))
GE1 = bytes(1 if b >= 1 else 0 for b in range(256))
GE7 = bytes(1 if b >= 7 else 0 for b in range(256))
PCR_FLAG = bytes(1 if b & 0x10 else 0 for b in range(256))
DISC_FLAG = bytes(1 if b & 0x80 else 0 for b in range(256))
IS_ZERO = bytes(1 if b == 0 else 0 for b in range(256))
NO_TEI = bytes(range(0x80))  # delete: leaves bytes with transport_error_indicator set
DEL_NOT = [bytes(b for b in range(256) if b >> 4 != c) for c in range(16)]
CC_OK = bytes(sorted({(a << 4) | ((a + 1) & 0x0F) for a in range(16)}
                      | {(a << 4) | a for a in range(16)}))
NOT_DUP = bytes(b for b in range(256) if b >> 4 != b & 0x0F)


def as_int(b: bytes) -> int:
    return int.from_bytes(b, "big")

