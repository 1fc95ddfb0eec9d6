"""PCR and PTS/DTS fields of TS packets: read, rewrite, find (ISO/IEC 13818-1 §2.4.3).

The live sources time packets by their program's PCR (§2.4.2.2) and the file loop moves
every PCR, PTS and DTS on by the loop's duration; these are the bit layouts both use.
"""

from __future__ import annotations

from cas.live.sources.program import (
    PACKET_SIZE,
)

PCR_HZ = 27_000_000
#: PCR wraps at 2^33 × 300 ticks (§2.4.2.2), PTS/DTS at 2^33.
PCR_MODULUS = (1 << 33) * 300
PTS_MODULUS = 1 << 33


def pcr_of(pkt: bytes | bytearray | memoryview, off: int = 0) -> int | None:
    """The PCR (27 MHz ticks) of the packet at ``off``, if it carries one."""
    if not pkt[off + 3] & 0x20 or pkt[off + 4] < 7 or not pkt[off + 5] & 0x10:
        return None
    base = (pkt[off + 6] << 25 | pkt[off + 7] << 17 | pkt[off + 8] << 9 | pkt[off + 9] << 1
            | pkt[off + 10] >> 7)
    return base * 300 + ((pkt[off + 10] & 1) << 8 | pkt[off + 11])


def write_pcr(buf: bytearray, off: int, ticks: int) -> None:
    """Write ``ticks`` as the PCR of the packet at ``off`` (it must carry one)."""
    base, ext = divmod(ticks % PCR_MODULUS, 300)
    buf[off + 6] = (base >> 25) & 0xFF
    buf[off + 7] = (base >> 17) & 0xFF
    buf[off + 8] = (base >> 9) & 0xFF
    buf[off + 9] = (base >> 1) & 0xFF
    buf[off + 10] = ((base & 1) << 7) | 0x7E | (ext >> 8)
    buf[off + 11] = ext & 0xFF


def read_timestamp(buf: bytes | bytearray, pos: int) -> int:
    """A 33-bit PTS/DTS from its 5-byte field (§2.4.3.7)."""
    return (((buf[pos] >> 1) & 7) << 30 | buf[pos + 1] << 22 | (buf[pos + 2] >> 1) << 15
            | buf[pos + 3] << 7 | buf[pos + 4] >> 1)


def write_timestamp(buf: bytearray, pos: int, value: int) -> None:
    """Rewrite the 33 bits of a PTS/DTS field, keeping its 4-bit prefix and marker bits."""
    v = value % PTS_MODULUS
    buf[pos] = (buf[pos] & 0xF0) | ((v >> 29) & 0x0E) | 1
    buf[pos + 1] = (v >> 22) & 0xFF
    buf[pos + 2] = ((v >> 14) & 0xFE) | 1
    buf[pos + 3] = (v >> 7) & 0xFF
    buf[pos + 4] = ((v << 1) & 0xFE) | 1


def pes_timestamp_offsets(pkt: bytes | bytearray, off: int) -> tuple[int, ...]:
    """Byte offsets (in ``pkt``) of the PTS and DTS fields of a PES header starting in the
    packet at ``off`` (PUSI set), per ISO/IEC 13818-1 §2.4.3.6-7; empty when there is none."""
    if not pkt[off + 1] & 0x40 or not pkt[off + 3] & 0x10:
        return ()
    start = off + 4 + (1 + pkt[off + 4] if pkt[off + 3] & 0x20 else 0)
    if start + 14 > off + PACKET_SIZE or pkt[start : start + 3] != b"\x00\x00\x01":
        return ()
    stream_id = pkt[start + 3]
    # Streams without the optional PES header (§2.4.3.6 table 2-21's exceptions).
    if stream_id in (0xBC, 0xBE, 0xBF, 0xF0, 0xF1, 0xFF, 0xF2, 0xF8):
        return ()
    if pkt[start + 6] >> 6 != 0b10:
        return ()
    flags = pkt[start + 7] >> 6
    pts = start + 9
    if flags == 0b10:
        return (pts,)
    if flags == 0b11:
        return (pts, pts + 5)
    return ()
