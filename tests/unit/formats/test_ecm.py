"""ECM sections and bodies: round trips, limits, fuzzing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cas.access import AccessCriteria
from cas.errors import FormatError
from cas.formats.ecm import (
    ECM_HEADER_SIZE,
    MAX_ECM_PLAINTEXT,
    Ecm,
    EcmBody,
    EcmHeader,
    build_ecm,
    build_ecm_body,
    describe,
    parse_ecm,
    parse_ecm_body,
)
from tests.unit.formats.record_strategies import ecm_bodies, ecm_headers


@given(ecm_headers, st.binary(min_size=16, max_size=200))
def test_section_round_trip(header: EcmHeader, body: bytes) -> None:
    raw = build_ecm(Ecm(header=header, body=body))
    assert raw[0] in (0x80, 0x81) and raw[1] >> 4 == 0x7 and len(raw) <= 256
    assert parse_ecm(raw) == Ecm(header=header, body=body)


@given(ecm_bodies())
def test_body_round_trip(body: EcmBody) -> None:
    raw = build_ecm_body(body)
    assert len(raw) <= MAX_ECM_PLAINTEXT
    assert parse_ecm_body(raw) == body


def test_layout_bytes() -> None:
    header = EcmHeader(channel_id=0x0102, ecm_key_index=3, timestamp_s=0x0A0B0C0D, table_id=0x81,
                       nonce=b"N" * 12)
    raw = build_ecm(Ecm(header=header, body=b"T" * 16))
    assert raw.hex() == "81" "7023" "0102" "03" "0a0b0c0d" + (b"N" * 12).hex() + (b"T" * 16).hex()
    assert header.odd
    body = EcmBody(crypto_period=7, cw_even=b"\x01" * 8, cw_odd=b"\x02" * 8, package_ids=(5, 6),
                   regions=(), maturity_rating=18)
    assert build_ecm_body(body).hex() == (
        "00000007" "08" + "01" * 8 + "02" * 8 + "12" "02" "0005" "0006" "00"
    )
    assert body.criteria(0x0102) == AccessCriteria(
        channel_id=0x0102, package_ids=(5, 6), regions=(), maturity_rating=18
    )


@pytest.mark.parametrize(
    "bad",
    [
        EcmBody(crypto_period=1, cw_even=b"x" * 7, cw_odd=b"y" * 7),
        EcmBody(crypto_period=1, cw_even=b"x" * 8, cw_odd=b"y" * 16),
        EcmBody(crypto_period=1 << 32, cw_even=b"x" * 8, cw_odd=b"y" * 8),
        EcmBody(crypto_period=1, cw_even=b"x" * 8, cw_odd=b"y" * 8, package_ids=(1 << 16,)),
        EcmBody(crypto_period=1, cw_even=b"x" * 8, cw_odd=b"y" * 8, package_ids=(1,) * 256),
    ],
)
def test_body_builder_checks(bad: EcmBody) -> None:
    with pytest.raises(FormatError):
        build_ecm_body(bad)


def test_section_limits() -> None:
    header = EcmHeader(channel_id=1, ecm_key_index=1, timestamp_s=1)
    assert len(build_ecm(Ecm(header=header, body=bytes(253 - ECM_HEADER_SIZE)))) == 256
    with pytest.raises(FormatError):
        build_ecm(Ecm(header=header, body=bytes(254 - ECM_HEADER_SIZE)))
    with pytest.raises(FormatError):
        build_ecm(Ecm(header=EcmHeader(channel_id=1, ecm_key_index=1, timestamp_s=1,
                                       table_id=0x82), body=bytes(16)))


@pytest.mark.parametrize("tid", [0x00, 0x7F, 0x82, 0x84, 0x8F, 0xFF])
def test_non_ecm_table_ids(tid: int) -> None:
    with pytest.raises(FormatError) as err:
        parse_ecm(bytes([tid, 0x70, 40]) + bytes(40))
    assert err.value.path == "ecm.table_id"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x80\x70",
        bytes.fromhex("80F023") + bytes(35),  # long section flag
        bytes.fromhex("807024") + bytes(35),  # wrong length
        bytes.fromhex("807022") + bytes(34),  # body 15 bytes < tag
    ],
)
def test_malformed_sections(raw: bytes) -> None:
    with pytest.raises(FormatError):
        parse_ecm(raw)


@given(st.binary(max_size=300))
def test_section_fuzz(data: bytes) -> None:
    try:
        ecm = parse_ecm(data)
    except FormatError:
        return
    assert build_ecm(ecm) == data


@given(st.sampled_from([0x80, 0x81]), st.binary(max_size=260))
def test_section_fuzz_valid_table_id(tid: int, payload: bytes) -> None:
    n = len(payload)
    data = bytes([tid, 0x70 | (n >> 8), n & 0xFF]) + payload
    try:
        ecm = parse_ecm(data)
    except FormatError:
        return
    assert build_ecm(ecm) == data


@given(st.binary(max_size=120))
def test_body_fuzz(data: bytes) -> None:
    try:
        body = parse_ecm_body(data)
    except FormatError:
        return
    assert build_ecm_body(body) == data


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (bytes.fromhex("00000001" "09") + bytes(18) + bytes(3), "ecm.body.cw_length"),
        (bytes.fromhex("00000001" "08") + bytes(16) + bytes.fromhex("00" "02" "0001"), "ecm.body.package_ids"),
        (bytes.fromhex("00000001" "08") + bytes(16) + bytes.fromhex("00" "00" "00" "00"), "ecm.body"),
    ],
)
def test_body_errors_name_the_field(raw: bytes, path: str) -> None:
    with pytest.raises(FormatError) as err:
        parse_ecm_body(raw)
    assert err.value.path == path


def test_describe_hides_control_words() -> None:
    body = EcmBody(crypto_period=1, cw_even=b"\x77" * 16, cw_odd=b"\x88" * 16, package_ids=(3,))
    tree = describe(body)
    text = json.dumps(tree)
    assert "7777" not in text and "8888" not in text and tree["cw_even"]["length"] == 16
    assert "7777" not in repr(body) and "\\x77" not in repr(body)
    head = describe(parse_ecm(build_ecm(Ecm(header=EcmHeader(channel_id=9, ecm_key_index=2,
                                                            timestamp_s=5), body=bytes(16)))))
    assert head["parity"] == "even" and head["channel_id"] == 9 and head["sealed_length"] == 16
