"""The covert fingerprint code: serial → 70 cell bits → serial, one error per column
corrected, CRC-8 catching the rest; the pattern's geometry in any frame size."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cas.errors import FormatError
from cas.formats.fingerprint import (
    CELLS,
    GRID_COLS,
    GRID_ROWS,
    Corner,
    cell_boxes,
    crc8,
    decode_bits,
    encode_serial,
)

serials = st.integers(0, 0xFFFFFFFF)


def test_crc8_check_value() -> None:
    assert crc8(b"123456789") == 0xF4  # CRC-8/ATM (SMBus) check value


@given(serials)
def test_round_trip(serial: int) -> None:
    bits = encode_serial(serial)
    assert len(bits) == CELLS and set(bits) <= {0, 1}
    decoded = decode_bits(bits)
    assert decoded is not None
    assert (decoded.serial, decoded.corrected_bits) == (serial, 0)


@given(serials, st.lists(st.integers(0, GRID_ROWS - 1), min_size=GRID_COLS,
                         max_size=GRID_COLS))
def test_one_wrong_cell_per_column_is_corrected(serial: int, rows: list[int]) -> None:
    bits = encode_serial(serial)
    for col, row in enumerate(rows):
        bits[row * GRID_COLS + col] ^= 1
    decoded = decode_bits(bits)
    assert decoded is not None
    assert (decoded.serial, decoded.corrected_bits) == (serial, GRID_COLS)


@given(serials, st.integers(0, GRID_COLS - 1))
def test_a_column_with_two_errors_is_not_read_as_this_serial(serial: int, col: int) -> None:
    bits = encode_serial(serial)
    bits[col] ^= 1
    bits[GRID_COLS + col] ^= 1
    decoded = decode_bits(bits)
    assert decoded is None or decoded.serial != serial


def test_inverted_pattern_is_not_a_serial_of_itself() -> None:
    # the reader tries both signs of the flicker: the inverse must not decode to the same card
    bits = encode_serial(1234567890)
    decoded = decode_bits([1 - b for b in bits])
    assert decoded is None or decoded.serial != 1234567890


def test_limits() -> None:
    with pytest.raises(FormatError):
        encode_serial(1 << 32)
    with pytest.raises(FormatError):
        decode_bits([0] * (CELLS - 1))


@pytest.mark.parametrize("corner", list(Corner))
@pytest.mark.parametrize("size", [(320, 180), (1920, 1080), (160, 90)])
def test_cells_stay_inside_the_frame_in_their_corner(corner: Corner, size: tuple[int, int]) -> None:
    w, h = size
    boxes = cell_boxes(w, h, corner, encode_serial(42))
    assert len(boxes) == CELLS
    assert all(b.x >= 0 and b.x + b.w <= w and b.y >= 0 and b.y + b.h <= h for b in boxes)
    right = corner in (Corner.TOP_RIGHT, Corner.BOTTOM_RIGHT)
    bottom = corner in (Corner.BOTTOM_LEFT, Corner.BOTTOM_RIGHT)
    assert (min(b.x for b in boxes) > w / 2) == right
    assert (min(b.y for b in boxes) > h / 2) == bottom
    assert [b.bit for b in boxes] == encode_serial(42)


def test_nearest_corner() -> None:
    assert Corner.nearest(10, 10) is Corner.TOP_LEFT
    assert Corner.nearest(90, 10) is Corner.TOP_RIGHT
    assert Corner.nearest(10, 90) is Corner.BOTTOM_LEFT
    assert Corner.nearest(50, 50) is Corner.BOTTOM_RIGHT
