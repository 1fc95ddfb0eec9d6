"""Generic MPEG-2 sections: round trip, golden bytes, assembler, and hostile input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cas.errors import ChecksumError, FormatError
from cas.formats.sections import (
    MAX_PSI_SECTION_LENGTH,
    LongSection,
    SectionAssembler,
    ShortSection,
    build_section,
    describe,
    iter_sections,
    parse_section,
)
from tests.unit.formats import ts_psi_samples as samples
from tests.unit.formats.ts_psi_strategies import (
    crc32_mpeg2_bitwise,
    long_sections,
    only_format_errors,
    short_sections,
)

GOLDEN = json.loads(
    (Path(__file__).parents[2] / "vectors" / "transport" / "golden.json").read_text()
)


@given(short_sections | long_sections())
def test_round_trip(section: ShortSection | LongSection) -> None:
    data = build_section(section)
    assert parse_section(data) == section
    assert build_section(parse_section(data)) == data
    json.dumps(describe(section))


def test_golden_short_section() -> None:
    data = build_section(samples.SHORT_SECTION)
    assert data.hex() == GOLDEN["short_section"]
    # table_id 0x80, SSI 0, private_indicator 1, reserved 11, section_length 16.
    assert data[:3] == bytes.fromhex("807010")


def test_golden_long_section_and_crc() -> None:
    data = build_section(samples.LONG_SECTION)
    assert data.hex() == GOLDEN["long_section"]
    assert data[:8] == bytes.fromhex("90f010beeffe0102")
    assert int.from_bytes(data[-4:], "big") == crc32_mpeg2_bitwise(data[:-4])


def test_bad_crc_is_checksum_error() -> None:
    data = bytearray(build_section(samples.LONG_SECTION))
    data[9] ^= 0x40
    with pytest.raises(ChecksumError) as info:
        parse_section(bytes(data))
    assert info.value.path == "section.CRC_32"
    # ...and can be skipped on request.
    assert isinstance(parse_section(bytes(data), check_crc=False), LongSection)


def test_length_mismatch_and_limits() -> None:
    data = build_section(samples.SHORT_SECTION)
    with pytest.raises(FormatError, match="section_length"):
        parse_section(data[:-1])
    with pytest.raises(FormatError, match="section_length"):
        parse_section(data + b"\x00")
    with pytest.raises(FormatError):
        parse_section(b"\x80\x70")
    big = ShortSection(table_id=0x80, payload=bytes(MAX_PSI_SECTION_LENGTH + 1))
    assert len(build_section(big)) == MAX_PSI_SECTION_LENGTH + 4
    with pytest.raises(FormatError, match="limit"):
        build_section(big, max_section_length=MAX_PSI_SECTION_LENGTH)
    with pytest.raises(FormatError, match="limit"):
        parse_section(build_section(big), max_section_length=MAX_PSI_SECTION_LENGTH)
    with pytest.raises(FormatError):
        build_section(ShortSection(table_id=0x80, payload=bytes(4094)))


def test_long_section_needs_nine_bytes() -> None:
    with pytest.raises(FormatError, match="too short"):
        parse_section(bytes.fromhex("00b0050001c10000"))


def test_field_ranges_checked() -> None:
    with pytest.raises(FormatError, match="version_number"):
        LongSection(table_id=0, table_id_extension=0, version_number=32)
    with pytest.raises(FormatError, match="section_number"):
        LongSection(table_id=0, table_id_extension=0, section_number=2, last_section_number=1)
    with pytest.raises(FormatError, match="table_id"):
        ShortSection(table_id=256)


def test_iter_sections_splits_and_stops_at_stuffing() -> None:
    a = build_section(samples.SHORT_SECTION)
    b = build_section(samples.LONG_SECTION)
    assert list(iter_sections(a + b + b"\xff\xff")) == [a, b]
    with pytest.raises(FormatError):
        list(iter_sections(a + b[:-1]))


def test_assembler_collects_all_sections_once_per_version() -> None:
    def part(n: int, version: int = 0) -> LongSection:
        return LongSection(
            table_id=0x42,
            table_id_extension=7,
            version_number=version,
            section_number=n,
            last_section_number=2,
            payload=bytes([n]),
        )

    asm = SectionAssembler()
    assert asm.feed(part(2)) is None
    assert asm.feed(part(0)) is None
    assert asm.feed(part(2)) is None
    table = asm.feed(part(1))
    assert table is not None
    assert [s.section_number for s in table] == [0, 1, 2]
    assert asm.feed(part(0)) is None  # same version again: nothing new
    # A new version starts over and is reported again when complete.
    for n in (0, 1):
        assert asm.feed(part(n, version=1)) is None
    done = asm.feed(part(2, version=1))
    assert done is not None and done[0].version_number == 1
    # Next (not yet current) versions are ignored.
    future = LongSection(table_id=0x42, table_id_extension=7, current_next_indicator=False)
    assert asm.feed(future) is None


@given(st.binary(max_size=64))
def test_fuzz_random_bytes(data: bytes) -> None:
    only_format_errors(parse_section, data)


@given(short_sections | long_sections(), st.data())
def test_fuzz_truncated_and_bad_length(
    section: ShortSection | LongSection, data: st.DataObject
) -> None:
    raw = build_section(section)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(FormatError):
        parse_section(raw[:cut])
    new_len = data.draw(st.integers(0, 0xFFF))
    damaged = bytearray(raw)
    damaged[1] = (damaged[1] & 0xF0) | (new_len >> 8)
    damaged[2] = new_len & 0xFF
    only_format_errors(parse_section, bytes(damaged))
