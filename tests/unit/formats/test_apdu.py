"""ISO 7816-4 APDUs: case detection, round trips, status words, fuzzing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cas.errors import FormatError
from cas.formats.apdu import (
    CAS_AID,
    SW,
    ApduCase,
    CommandApdu,
    ResponseApdu,
    build_command_apdu,
    build_response_apdu,
    describe,
    describe_sw,
    exact_le,
    more_data_available,
    parse_command_apdu,
    parse_response_apdu,
    pin_retries_left,
    reason_for_sw,
    sw_for_reason,
    sw_more_data,
    sw_pin_retries,
    sw_wrong_le,
)
from cas.reasons import Reason
from tests.unit.formats.record_strategies import command_apdus, response_apdus


@pytest.mark.parametrize(
    ("hex_apdu", "case", "lc", "le"),
    [
        ("80CA0101", ApduCase.CASE_1, 0, None),
        ("80CA010100", ApduCase.CASE_2S, 0, 256),
        ("80CA010110", ApduCase.CASE_2S, 0, 16),
        ("00A4040008F043415353494D01", ApduCase.CASE_3S, 8, None),
        ("8030000003AABBCC28", ApduCase.CASE_4S, 3, 40),
        ("8030000003AABBCC00", ApduCase.CASE_4S, 3, 256),
        ("80CA0101000000", ApduCase.CASE_2E, 0, 65536),
        ("80CA0101000102", ApduCase.CASE_2E, 0, 258),
        ("80CA0101000001AABBCC", ApduCase.CASE_4E, 1, 0xBBCC),
    ],
)
def test_case_detection(hex_apdu: str, case: ApduCase, lc: int, le: int | None) -> None:
    apdu = parse_command_apdu(bytes.fromhex(hex_apdu))
    assert apdu.case is case
    assert len(apdu.data) == lc
    assert apdu.le == le
    assert build_command_apdu(apdu).hex().upper() == hex_apdu


def test_extended_cases_3_and_4() -> None:
    data = bytes(range(256)) + b"\x01"
    c3 = bytes.fromhex("80400000000101") + data
    apdu = parse_command_apdu(c3)
    assert apdu.case is ApduCase.CASE_3E and apdu.data == data and apdu.le is None
    c4 = c3 + b"\x00\x00"
    apdu4 = parse_command_apdu(c4)
    assert apdu4.case is ApduCase.CASE_4E and apdu4.le == 65536
    assert build_command_apdu(apdu4) == c4


def test_select_aid() -> None:
    select = CommandApdu(cla=0, ins=0xA4, p1=4, p2=0, data=CAS_AID)
    assert build_command_apdu(select).hex().upper() == "00A4040008F043415353494D01"


@pytest.mark.parametrize(
    "hex_apdu",
    [
        "",
        "80",
        "80CA01",
        "FFCA0101",  # CLA FF
        "8060000000",  # INS 6x
        "8090000000",  # INS 9x
        "80CA01010000",  # 6 bytes, 00 length byte
        "80CA010105AABB",  # Lc 5, 2 data bytes
        "80CA010102AABBCCDD",  # Lc 2, 2 extra bytes
        "80CA0101000000AA",  # extended Lc 0 with data
        "80CA0101000002AA",  # extended Lc 2, 1 byte
        "80CA0101000001AABB",  # extended Lc 1 + 1 stray byte
    ],
)
def test_malformed_commands(hex_apdu: str) -> None:
    with pytest.raises(FormatError):
        parse_command_apdu(bytes.fromhex(hex_apdu))


@given(command_apdus())
def test_command_round_trip(apdu: CommandApdu) -> None:
    raw = build_command_apdu(apdu)
    assert parse_command_apdu(raw) == apdu


@given(st.binary(max_size=300))
def test_command_fuzz(data: bytes) -> None:
    try:
        apdu = parse_command_apdu(data)
    except FormatError:
        return
    assert build_command_apdu(apdu) == data  # whatever parses rebuilds to the same bytes


@given(response_apdus)
def test_response_round_trip(resp: ResponseApdu) -> None:
    assert parse_response_apdu(build_response_apdu(resp)) == resp


@given(st.binary(max_size=40))
def test_response_fuzz(data: bytes) -> None:
    try:
        resp = parse_response_apdu(data)
    except FormatError:
        return
    assert build_response_apdu(resp) == data


def test_response_rejects_non_status_bytes() -> None:
    for raw in (b"", b"\x90", b"\x12\x34", b"\x60\x00", b"\xa0\x00"):
        with pytest.raises(FormatError):
            parse_response_apdu(raw)


def test_builder_limits() -> None:
    with pytest.raises(FormatError):
        build_command_apdu(CommandApdu(cla=0x80, ins=0x40, p1=0, p2=0, data=bytes(256)))
    with pytest.raises(FormatError):
        build_command_apdu(CommandApdu(cla=0x80, ins=0x40, p1=0, p2=0, le=257))
    with pytest.raises(FormatError):
        build_command_apdu(CommandApdu(cla=0x80, ins=0x40, p1=0, p2=256))
    with pytest.raises(FormatError):
        build_command_apdu(CommandApdu(cla=0x80, ins=0x40, p1=0, p2=0, extended=True))
    assert build_command_apdu(
        CommandApdu(cla=0x80, ins=0x40, p1=0, p2=0, data=bytes(256), extended=True)
    )[4:7] == b"\x00\x01\x00"


# --- status words ---------------------------------------------------------------------------
ARCHITECTURE_98XX = {
    0x9801: Reason.NOT_SUBSCRIBED,
    0x9802: Reason.ENTITLEMENT_EXPIRED,
    0x9803: Reason.NOT_YET_VALID,
    0x9804: Reason.REGION_BLACKOUT,
    0x9805: Reason.MATURITY_LOCKED,
    0x9806: Reason.CARD_SUSPENDED,
    0x9807: Reason.FINANCIAL_BLOCK,
    0x9808: Reason.CARD_KILLED,
    0x9809: Reason.PAIRING_MISMATCH,
    0x980A: Reason.CARD_NOT_ACTIVE,
    0x980B: Reason.CHANNEL_NOT_IN_PACKAGE,
    0x9815: Reason.ECM_KEY_UNKNOWN,
}


def test_98xx_table_matches_architecture() -> None:
    for sw, reason in ARCHITECTURE_98XX.items():
        assert reason_for_sw(sw) is reason
        assert sw_for_reason(reason) == sw
    for sw in (0x9811, 0x9812, 0x9813, 0x9814):
        assert sw in SW.__members__.values()
        assert reason_for_sw(sw) is None
    assert reason_for_sw(SW.OK) is Reason.OPEN
    for sw in (0x6700, 0x6982, 0x6983, 0x6985, 0x6A80, 0x6A82, 0x6A86, 0x6A88, 0x6D00, 0x6E00):
        assert SW(sw)


def test_numbered_status_words() -> None:
    assert sw_more_data(0x28) == 0x6128 and more_data_available(0x6128) == 0x28
    assert sw_more_data(300) == 0x6100 and more_data_available(0x6100) == 256
    assert sw_wrong_le(40) == 0x6C28 and exact_le(0x6C28) == 40
    assert sw_pin_retries(2) == 0x63C2 and pin_retries_left(0x63C2) == 2
    assert pin_retries_left(0x9000) is None and more_data_available(0x9000) is None
    assert describe_sw(0x63C1) == "wrong PIN, 1 try left"
    assert describe_sw(0x63C2) == "wrong PIN, 2 tries left"
    assert describe_sw(0x6101) == "OK, 1 more byte available"
    assert describe_sw(0x6128) == "OK, 40 more bytes available"
    assert describe_sw(0x9804) == "REGION_BLACKOUT"
    assert "unknown" in describe_sw(0x9FFF)


def test_describe_is_json_and_hides_data() -> None:
    cmd = CommandApdu(cla=0x00, ins=0x20, p1=0, p2=0x81, data=b"\x01\x02\x03\x04")
    tree = describe(cmd)
    assert tree["ins_name"] == "VERIFY_PIN" and tree["lc"] == 4
    assert "01020304" not in json.dumps(tree) and "01020304" not in repr(cmd)
    resp = describe(ResponseApdu(data=b"\xaa" * 40, sw=0x9809))
    assert resp["reason"] == "PAIRING_MISMATCH" and resp["data_length"] == 40
    json.dumps(resp)
