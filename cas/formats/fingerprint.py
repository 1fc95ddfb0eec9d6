"""The covert fingerprint pattern: a card serial as a faint, flickering block pattern.

Layout and code in ``docs/osd.md`` §3.  Pure: no I/O; the box draws the pattern with ffmpeg
(:mod:`firmware_stub.osd`) and ``cas diag fingerprint`` reads it back
(:mod:`cas.diag.fingerprint`), both from these declarations.

Code word (70 bits)::

    payload   = serial u32 || CRC-8/ATM(serial)            40 bits, MSB first
    codewords = Hamming(7,4) of each payload nibble         10 x 7 bits
    cell k    = bit k // 10 of codeword k % 10              interleaved: codeword i is column i

The 70 cells are a 10 x 7 grid of blocks, each :data:`CELL_W` x :data:`CELL_H` of the frame,
:data:`MARGIN_X` / :data:`MARGIN_Y` from one corner.  Every cell flickers: in frames where
``(n // FLICKER_FRAMES) % 2 == 0`` a 1-bit cell is lightened and a 0-bit cell darkened by
:data:`ALPHA` (a blend toward white or black), in the other half-period the other way round.
The time average over the window is the picture itself, so a viewer sees a slight shimmer in
a corner; a reader removes the static picture by subtracting each cell's mean over time and
finds the one pattern that moves all cells in step.  Geometry is in fractions of the frame,
so the pattern survives scaling.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from cas.errors import FormatError

#: Grid of the pattern (columns x rows).
GRID_COLS = 10
GRID_ROWS = 7
CELLS = GRID_COLS * GRID_ROWS
#: One cell, as a fraction of the frame width / height.
CELL_W = 1 / 48
CELL_H = 1 / 27
#: Distance of the pattern from its corner, as a fraction of the frame width / height.
MARGIN_X = 1 / 32
MARGIN_Y = 1 / 18
#: Frames per half-period of the flicker (25 fps: 0.16 s lighter, 0.16 s darker).
FLICKER_FRAMES = 4
#: Blend toward white / black of a cell (ffmpeg ``drawbox`` colour alpha).
ALPHA = 0.09


class Corner(IntEnum):
    """Where the covert pattern sits."""

    TOP_LEFT = 0
    TOP_RIGHT = 1
    BOTTOM_LEFT = 2
    BOTTOM_RIGHT = 3

    @classmethod
    def nearest(cls, x_pct: int, y_pct: int) -> Corner:
        """The corner nearest to a position given in percent of the frame."""
        return cls((2 if y_pct >= 50 else 0) + (1 if x_pct >= 50 else 0))


@dataclass(frozen=True, slots=True, kw_only=True)
class CellBox:
    """One cell in pixels of a ``width`` x ``height`` frame, and its bit."""

    x: int
    y: int
    w: int
    h: int
    bit: int


def crc8(data: bytes) -> int:
    """CRC-8/ATM (poly 0x07, init 0, no reflection)."""
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


# Hamming(7,4), bit order p1 p2 d1 p3 d2 d3 d4 (positions 1..7): a syndrome is the position
# of a single wrong bit.
def _hamming_encode(nibble: int) -> list[int]:
    d1, d2, d3, d4 = (nibble >> 3) & 1, (nibble >> 2) & 1, (nibble >> 1) & 1, nibble & 1
    return [d1 ^ d2 ^ d4, d1 ^ d3 ^ d4, d1, d2 ^ d3 ^ d4, d2, d3, d4]


def _hamming_decode(bits: list[int]) -> tuple[int, bool]:
    """The nibble and whether a bit was corrected."""
    b = list(bits)
    syndrome = 0
    for pos in range(1, 8):
        if b[pos - 1]:
            syndrome ^= pos
    if syndrome:
        b[syndrome - 1] ^= 1
    return (b[2] << 3) | (b[4] << 2) | (b[5] << 1) | b[6], bool(syndrome)


def encode_serial(serial: int) -> list[int]:
    """The 70 cell bits for ``serial`` (cell order: row by row, left to right)."""
    if not 0 <= serial <= 0xFFFFFFFF:
        raise FormatError(f"serial {serial} does not fit 32 bits", path="fingerprint.serial").with_id(
            "formats.fingerprint_serial_serial_does", serial=serial)
    raw = serial.to_bytes(4, "big")
    payload = int.from_bytes(raw + bytes((crc8(raw),)), "big")
    codewords = [_hamming_encode((payload >> (36 - 4 * i)) & 0xF) for i in range(10)]
    return [codewords[k % GRID_COLS][k // GRID_COLS] for k in range(CELLS)]


@dataclass(frozen=True, slots=True, kw_only=True)
class Decoded:
    """A serial read back from 70 cell bits."""

    serial: int
    corrected_bits: int


def decode_bits(bits: list[int]) -> Decoded | None:
    """The serial in 70 cell bits, or ``None`` when the CRC does not hold after correction."""
    if len(bits) != CELLS:
        raise FormatError(f"{len(bits)} bits, need {CELLS}", path="fingerprint.bits").with_id(
            "formats.fingerprint_bits_bits_need", n=len(bits), cells=CELLS)
    payload = 0
    corrected = 0
    for i in range(GRID_COLS):
        nibble, fixed = _hamming_decode([bits[j * GRID_COLS + i] for j in range(GRID_ROWS)])
        payload = (payload << 4) | nibble
        corrected += fixed
    raw = (payload >> 8).to_bytes(4, "big")
    if crc8(raw) != payload & 0xFF:
        return None
    return Decoded(serial=int.from_bytes(raw, "big"), corrected_bits=corrected)


def cell_origin(corner: Corner) -> tuple[float, float]:
    """Top-left of the pattern, as fractions of the frame."""
    w, h = GRID_COLS * CELL_W, GRID_ROWS * CELL_H
    x = MARGIN_X if corner in (Corner.TOP_LEFT, Corner.BOTTOM_LEFT) else 1 - MARGIN_X - w
    y = MARGIN_Y if corner in (Corner.TOP_LEFT, Corner.TOP_RIGHT) else 1 - MARGIN_Y - h
    return x, y


def cell_boxes(width: int, height: int, corner: Corner, bits: list[int] | None = None,
               *, inset: float = 0.0) -> list[CellBox]:
    """The cells in pixels of a ``width`` x ``height`` frame (``inset``: fraction of a cell
    left out on each side, for a reader that samples cell centres)."""
    x0, y0 = cell_origin(corner)
    out = []
    for k in range(CELLS):
        col, row = k % GRID_COLS, k // GRID_COLS
        fx0 = x0 + (col + inset) * CELL_W
        fx1 = x0 + (col + 1 - inset) * CELL_W
        fy0 = y0 + (row + inset) * CELL_H
        fy1 = y0 + (row + 1 - inset) * CELL_H
        px0, px1 = round(fx0 * width), round(fx1 * width)
        py0, py1 = round(fy0 * height), round(fy1 * height)
        out.append(CellBox(x=px0, y=py0, w=max(1, px1 - px0), h=max(1, py1 - py0),
                           bit=bits[k] if bits is not None else 0))
    return out
