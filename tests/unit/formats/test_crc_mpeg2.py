"""CRC-32/MPEG-2 against a bitwise reference written from the definition."""

from __future__ import annotations

import binascii

from hypothesis import given
from hypothesis import strategies as st

from cas.formats.crc import CRC32_MPEG2_CHECK, crc32_mpeg2, crc32_mpeg2_table, section_crc_ok
from tests.unit.formats.ts_psi_strategies import crc32_mpeg2_bitwise


def test_catalogue_check_value() -> None:
    assert crc32_mpeg2_bitwise(b"123456789") == 0x0376E6E7 == CRC32_MPEG2_CHECK
    assert crc32_mpeg2(b"123456789") == CRC32_MPEG2_CHECK
    assert crc32_mpeg2_table(b"123456789") == CRC32_MPEG2_CHECK


def test_is_not_the_zip_crc() -> None:
    # binascii.crc32 is the reflected CRC-32; the MPEG-2 variant must differ from it.
    assert binascii.crc32(b"123456789") == 0xCBF43926
    assert crc32_mpeg2(b"123456789") != 0xCBF43926


def test_empty_input_is_initial_register() -> None:
    assert crc32_mpeg2(b"") == 0xFFFFFFFF == crc32_mpeg2_table(b"")


@given(st.binary(max_size=300))
def test_fast_and_table_match_bitwise(data: bytes) -> None:
    expected = crc32_mpeg2_bitwise(data)
    assert crc32_mpeg2(data) == expected
    assert crc32_mpeg2_table(data) == expected


@given(st.binary(max_size=200), st.binary(max_size=200))
def test_running_value_continues(a: bytes, b: bytes) -> None:
    assert crc32_mpeg2(b, crc32_mpeg2(a)) == crc32_mpeg2(a + b)
    assert crc32_mpeg2_table(b, crc32_mpeg2_table(a)) == crc32_mpeg2_table(a + b)


@given(st.binary(max_size=200))
def test_residue_over_data_and_crc_is_zero(data: bytes) -> None:
    whole = data + crc32_mpeg2(data).to_bytes(4, "big")
    assert crc32_mpeg2(whole) == 0
    assert section_crc_ok(whole)
    damaged = bytes([whole[0] ^ 0x01]) + whole[1:]
    assert not section_crc_ok(damaged)


def test_accepts_bytearray_and_memoryview() -> None:
    data = bytes(range(50))
    assert crc32_mpeg2(bytearray(data)) == crc32_mpeg2(memoryview(data)) == crc32_mpeg2(data)
