"""Which bytes of a run of TS packets a scrambler touches (ISO/IEC 13818-1 §2.4.3.2-3).

Shared by :mod:`cas.crypto.csa2` and :mod:`cas.crypto.cissa`.  Only the payload is scrambled;
the 4-byte header and the adaptation field stay clear, packets without a payload are not
touched, and ``transport_scrambling_control`` says which CW was used: ``10`` even, ``11`` odd
(WIRE-FACTS §4.4).

Speed: a buffer holds thousands of packets.  Per-packet header fields are pulled out with
strided slices (``buf[3::188]`` is byte 3 of every packet), classified with
``bytes.translate`` lookup tables and combined with big-integer ``&``/``|`` — all C loops.
Python only loops over the packets that carry an adaptation field (a few percent of a video
stream).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from itertools import compress

from cas.errors import CryptoError, FormatError

TS_PACKET_LEN = 188
TS_HEADER_LEN = 4
SYNC_BYTE = 0x47
#: Per-packet parity value meaning "leave this packet as it is".
CLEAR = 0xFF

Parities = int | bytes | bytearray | memoryview | Sequence[int]


def _table(f: Callable[[int], int]) -> bytes:
    """A 256-byte ``bytes.translate`` table."""
    return bytes(f(b) for b in range(256))


def _scrambled_with(tsc: int, afc: int) -> bytes:
    """Header byte 3 = scrambling_control(2) | adaptation_field_control(2) | cc(4)."""
    return _table(lambda b: int(b >> 6 == tsc and (b >> 4) & 3 == afc))


def _equals(value: int) -> bytes:
    return _table(lambda b: int(b == value))


def _nonzero_to(value: int) -> bytes:
    return _table(lambda b: value if b else 0)


_CLEAR_PAYLOAD_ONLY = _scrambled_with(0b00, 0b01)
_CLEAR_WITH_AF = _scrambled_with(0b00, 0b11)
_SCR_PAYLOAD_ONLY = [_scrambled_with(0b10, 0b01), _scrambled_with(0b11, 0b01)]
_SCR_WITH_AF = [_scrambled_with(0b10, 0b11), _scrambled_with(0b11, 0b11)]
_TSC_BITS = _table(lambda b: b & 0xC0 if b >> 7 else 0)
_NONZERO_FF = _nonzero_to(0xFF)
_IS_VALUE = [_equals(0), _equals(1)]
_TO_BITS = [_nonzero_to(0x80), _nonzero_to(0xC0)]


def _and(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "little") & int.from_bytes(b, "little")).to_bytes(len(a), "little")


def _or(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "little") | int.from_bytes(b, "little")).to_bytes(len(a), "little")


@dataclass(slots=True)
class Regions:
    """Payload regions of one parity.

    ``full``: indices of packets whose payload is bytes 4..187 (no adaptation field) — the
    common case, processed in bulk.  ``partial``: ``(offset, length)`` of the other payloads.
    """

    full: list[int] = field(default_factory=list)
    partial: list[tuple[int, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.full) + len(self.partial)


def writable_view(buf: bytearray | memoryview) -> memoryview:
    mv = memoryview(buf)
    if mv.readonly:
        raise CryptoError("scrambling works in place: pass a bytearray or writable memoryview").with_id(
            "crypto.scrambling_works_place_pass")
    if mv.ndim != 1 or mv.itemsize != 1 or not mv.c_contiguous:
        mv = mv.cast("B")
    if len(mv) % TS_PACKET_LEN:
        raise FormatError(f"buffer length {len(mv)} is not a multiple of {TS_PACKET_LEN}").with_id(
            "crypto.buffer_length_not_multiple", n=len(mv), ts_packet_len=TS_PACKET_LEN)
    sync = bytes(mv[0::TS_PACKET_LEN])
    if sync.count(SYNC_BYTE) != len(sync):
        bad = next(i for i, b in enumerate(sync) if b != SYNC_BYTE)
        raise FormatError(f"TS packet {bad} has no sync byte 0x47", path="ts_packet.sync_byte").with_id(
            "crypto.ts_packet_sync_byte", bad=bad)
    return mv


def _pid_mask(mv: memoryview, pids: Collection[int]) -> bytes:
    b1 = bytes(mv[1::TS_PACKET_LEN])
    b2 = bytes(mv[2::TS_PACKET_LEN])
    mask = 0
    for pid in set(pids):
        if not 0 <= pid <= 0x1FFF:
            raise FormatError(f"PID {pid} out of range 0..0x1FFF").with_id(
                "crypto.pid_out_range_x1fff", pid=pid)
        hi = bytes(int(b & 0x1F == pid >> 8) for b in range(256))
        lo = bytes(int(b == pid & 0xFF) for b in range(256))
        mask |= int.from_bytes(b1.translate(hi), "little") & int.from_bytes(b2.translate(lo), "little")
    return mask.to_bytes(len(b1), "little")


def _parity_masks(parity: Parities, n: int) -> tuple[bytes, bytes]:
    if isinstance(parity, int):
        if parity not in (0, 1):
            raise CryptoError("parity must be 0 (even) or 1 (odd)").with_id(
                "crypto.parity_even_odd")
        ones, zeros = b"\x01" * n, bytes(n)
        return (ones, zeros) if parity == 0 else (zeros, ones)
    try:
        per_packet = bytes(parity)
    except (TypeError, ValueError) as exc:
        raise CryptoError("per-packet parity must be bytes of 0 (even), 1 (odd), 0xFF (clear)").with_id(
            "crypto.per_packet_parity_bytes") from exc
    if len(per_packet) != n:
        raise CryptoError(f"{len(per_packet)} parity values for {n} packets").with_id(
            "crypto.parity_values_packets", n=len(per_packet), n2=n)
    return per_packet.translate(_IS_VALUE[0]), per_packet.translate(_IS_VALUE[1])


def _af_payload(mv: memoryview, index: int) -> tuple[int, int]:
    """(offset, length) of the payload of a packet with adaptation_field_control 11."""
    base = index * TS_PACKET_LEN
    af_len = mv[base + 4]
    offset = base + 5 + af_len
    return offset, max(0, base + TS_PACKET_LEN - offset)


def _require(regions: tuple[Regions, Regions], have_key: tuple[bool, bool]) -> None:
    for p in (0, 1):
        if len(regions[p]) and not have_key[p]:
            raise CryptoError(f"no {'odd' if p else 'even'} control word set").with_id(
                "crypto.no_control_word_set", value='odd' if p else 'even')


def plan_scramble(mv: memoryview, parity: Parities, pids: Collection[int] | None,
                  min_len: int, have_key: tuple[bool, bool]) -> tuple[Regions, Regions]:
    """Pick the clear packets to scramble, by parity, and set their scrambling bits.

    A packet is scrambled when its scrambling control is 00, it carries a payload of at
    least ``min_len`` bytes, its parity value is 0 or 1 and (if given) its PID is in ``pids``.
    Only those packets get ``10``/``11``; all others are left byte for byte.  Nothing is
    changed if a needed CW is missing (:class:`CryptoError`).
    """
    n = len(mv) // TS_PACKET_LEN
    b3 = bytes(mv[3::TS_PACKET_LEN])
    sel = _parity_masks(parity, n)
    if pids is not None:
        pm = _pid_mask(mv, pids)
        sel = (_and(sel[0], pm), _and(sel[1], pm))
    full_cls = b3.translate(_CLEAR_PAYLOAD_ONLY)
    af_cls = b3.translate(_CLEAR_WITH_AF)
    out = (Regions(), Regions())
    marks = bytes(n)
    af_marks: list[tuple[int, int]] = []
    for p in (0, 1):
        full_mask = _and(full_cls, sel[p])
        out[p].full = list(compress(range(n), full_mask))
        marks = _or(marks, full_mask.translate(_TO_BITS[p]))
        for i in compress(range(n), _and(af_cls, sel[p])):
            offset, length = _af_payload(mv, i)
            if length >= min_len:
                out[p].partial.append((offset, length))
                af_marks.append((i * TS_PACKET_LEN + 3, 0x80 | (p << 6)))
    _require(out, have_key)
    if out[0].full or out[1].full:
        mv[3::TS_PACKET_LEN] = _or(b3, marks)
    for pos, bits in af_marks:
        mv[pos] |= bits
    return out


def plan_descramble(mv: memoryview, pids: Collection[int] | None,
                    have_key: tuple[bool, bool]) -> tuple[Regions, Regions]:
    """Find the scrambled packets by parity and reset their scrambling bits to 00.

    Packets with ``10``/``11`` but no payload (or one too short to have been scrambled) just
    get their bits cleared: decrypting them is a no-op.  Nothing is changed if a needed CW
    is missing (:class:`CryptoError`).
    """
    n = len(mv) // TS_PACKET_LEN
    b3 = bytes(mv[3::TS_PACKET_LEN])
    pm = _pid_mask(mv, pids) if pids is not None else None
    out = (Regions(), Regions())
    for p in (0, 1):
        full_mask = b3.translate(_SCR_PAYLOAD_ONLY[p])
        af_mask = b3.translate(_SCR_WITH_AF[p])
        if pm is not None:
            full_mask, af_mask = _and(full_mask, pm), _and(af_mask, pm)
        out[p].full = list(compress(range(n), full_mask))
        for i in compress(range(n), af_mask):
            offset, length = _af_payload(mv, i)
            if length:
                out[p].partial.append((offset, length))
    _require(out, have_key)
    clear_bits = b3.translate(_TSC_BITS)  # the 10/11 bits of the packets we descramble
    if pm is not None:
        clear_bits = _and(clear_bits, pm.translate(_NONZERO_FF))
    if any(clear_bits):
        mv[3::TS_PACKET_LEN] = (int.from_bytes(b3, "little")
                                ^ int.from_bytes(clear_bits, "little")).to_bytes(n, "little")
    return out
