"""Hostile input for every PSI parser: only FormatError/ChecksumError may come out.

Mutations that would only trip the CRC are also replayed with the CRC recomputed, so the
table-body parsers (construct schemas and the hand-written CA_descriptor scan) see them.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cas.errors import ChecksumError, FormatError
from cas.formats.crc import crc32_mpeg2
from cas.formats.psi import (
    build_cat,
    build_pat,
    build_pmt,
    build_sdt,
    find_ca_descriptors,
    parse_cat,
    parse_descriptors,
    parse_pat,
    parse_pmt,
    parse_psi,
    parse_sdt,
)
from tests.unit.formats.ts_psi_strategies import cats, only_format_errors, pats, pmts, sdts

PARSERS: list[Callable[[bytes], object]] = [
    parse_pat,
    parse_cat,
    parse_pmt,
    parse_sdt,
    parse_psi,
    find_ca_descriptors,
    parse_descriptors,
]

valid_sections = st.one_of(
    pats().map(build_pat), cats().map(build_cat), pmts.map(build_pmt), sdts().map(build_sdt)
)


def _recrc(data: bytes | bytearray) -> bytes:
    body = bytes(data[:-4])
    return body + crc32_mpeg2(body).to_bytes(4, "big")


@pytest.mark.parametrize("parse", PARSERS)
@given(data=st.binary(max_size=300))
def test_random_bytes(parse: Callable[[bytes], object], data: bytes) -> None:
    only_format_errors(parse, data)


@pytest.mark.parametrize("parse", PARSERS)
@given(data=st.binary(min_size=4, max_size=300), table_id=st.sampled_from([0, 1, 2, 0x42, 0x46]))
def test_random_body_with_valid_framing(
    parse: Callable[[bytes], object], data: bytes, table_id: int
) -> None:
    # A plausible header + random body + correct CRC: gets past the framing checks.
    length = len(data) + 5
    head = bytes((table_id, 0xB0 | (length >> 8), length & 0xFF, 0, 1, 0xC1, 0, 0))
    only_format_errors(parse, _recrc(head + data))


@given(section=valid_sections, data=st.data())
def test_truncated_sections(section: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(section) - 1))
    for parse in PARSERS[:6]:
        with pytest.raises(FormatError):
            parse(section[:cut])


@given(section=valid_sections, data=st.data())
def test_wrong_lengths(section: bytes, data: st.DataObject) -> None:
    damaged = bytearray(section)
    new_len = data.draw(st.integers(0, 0xFFF))
    damaged[1] = (damaged[1] & 0xF0) | (new_len >> 8)
    damaged[2] = new_len & 0xFF
    for parse in PARSERS:
        only_format_errors(parse, bytes(damaged))
        only_format_errors(parse, _recrc(damaged))


@given(section=valid_sections, data=st.data())
def test_flipped_bytes_bad_crc_then_recomputed(section: bytes, data: st.DataObject) -> None:
    pos = data.draw(st.integers(0, len(section) - 5))
    bit = data.draw(st.integers(0, 7))
    damaged = bytearray(section)
    damaged[pos] ^= 1 << bit
    if pos >= 3:
        # A single flipped bit after the length field must be caught by the CRC.
        with pytest.raises(ChecksumError):
            parse_psi(bytes(damaged))
    for parse in PARSERS:
        only_format_errors(parse, bytes(damaged))
        only_format_errors(parse, _recrc(damaged))


@given(section=valid_sections, table_id=st.integers(0, 255))
def test_unknown_table_ids(section: bytes, table_id: int) -> None:
    damaged = _recrc(bytes((table_id,)) + section[1:])
    if table_id not in (0, 1, 2, 0x42, 0x46):
        with pytest.raises(FormatError, match="table_id"):
            parse_psi(damaged)
    for parse in PARSERS:
        only_format_errors(parse, damaged)


@given(section=valid_sections, data=st.data())
def test_random_splices_in_body(section: bytes, data: st.DataObject) -> None:
    # Overwrite a run inside the body (descriptor lengths, ES_info_length, ...).
    start = data.draw(st.integers(8, max(8, len(section) - 5)))
    junk = data.draw(st.binary(min_size=1, max_size=6))
    body = bytearray(section[:-4])
    body[start : start + len(junk)] = junk
    length = len(body) + 4 - 3
    if length > 0xFFF:
        return
    body[1] = (body[1] & 0xF0) | (length >> 8)
    body[2] = length & 0xFF
    for parse in PARSERS:
        only_format_errors(parse, _recrc(body))
