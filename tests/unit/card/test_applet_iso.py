"""ISO/IEC 7816-4 behaviour of the applet: command cases, SELECT, class/instruction errors,
GET DATA, READ ENTITLEMENTS, response chaining (61xx/GET RESPONSE), 6Cxx, PIN handling."""

from __future__ import annotations

import pytest

from cas.access import CardStatus
from cas.card.applet import AID, Command, Refusal, parse_command
from cas.card.atr import decode_atr
from cas.card.data import DataTag, parse_card_info, parse_entitlements
from cas.card.errors import PinBlockedError, WrongPinError
from cas.formats.emm import AddEntitlement, ResetPin
from cas.formats.records import ENTITLEMENT_SLOTS

from .helpers import NOW, PIN, SERIAL, HeadEnd, hashed_pin, make_applet, make_client

SELECT = bytes.fromhex("00A4040008") + AID


def sw(rapdu: bytes) -> int:
    return (rapdu[-2] << 8) | rapdu[-1]


def selected():  # type: ignore[no-untyped-def]
    applet = make_applet()
    applet.power_on()
    assert applet.transmit(SELECT) == b"\x90\x00"
    return applet


# --- command cases ---------------------------------------------------------------------------
@pytest.mark.parametrize(("apdu", "expected"), [
    (bytes.fromhex("80CA0101"), Command(0x80, 0xCA, 1, 1, b"", 0)),
    (bytes.fromhex("80CA010100"), Command(0x80, 0xCA, 1, 1, b"", 256)),
    (bytes.fromhex("80CA010104"), Command(0x80, 0xCA, 1, 1, b"", 4)),
    (bytes.fromhex("002000810431323334"), Command(0, 0x20, 0, 0x81, b"1234", 0)),
    (bytes.fromhex("003000000201020A"), Command(0, 0x30, 0, 0, b"\x01\x02", 10)),
    (bytes.fromhex("80CA0101000100"), Command(0x80, 0xCA, 1, 1, b"", 256, True)),
    (bytes.fromhex("80CA0101000000"), Command(0x80, 0xCA, 1, 1, b"", 65536, True)),
    (bytes.fromhex("8040000000000201 02"), Command(0x80, 0x40, 0, 0, b"\x01\x02", 0, True)),
    (bytes.fromhex("80400000000002010201 00"), Command(0x80, 0x40, 0, 0, b"\x01\x02", 256, True)),
])
def test_command_cases(apdu: bytes, expected: Command) -> None:
    assert parse_command(apdu) == expected


@pytest.mark.parametrize("apdu", [
    "80CA01", "80CA010102AA", "80CA0101030102", "80CA01010000", "80400000000003AABB",
    "8040000000000000",
])
def test_malformed_lengths_are_6700(apdu: str) -> None:
    with pytest.raises(Refusal) as info:
        parse_command(bytes.fromhex(apdu))
    assert info.value.sw == 0x6700
    applet = selected()
    assert sw(applet.transmit(bytes.fromhex(apdu))) == 0x6700


# --- ATR, SELECT, CLA/INS ----------------------------------------------------------------------
def test_atr_names_the_card() -> None:
    atr = decode_atr(make_applet().atr())
    assert atr.card_name == "CASSIM"
    assert atr.protocols == (1,)
    assert atr.tck_ok is True
    assert atr.card_os_version == 0x0100


def test_commands_need_select_first() -> None:
    applet = make_applet()
    applet.power_on()
    assert sw(applet.transmit(bytes.fromhex("80CA010100"))) == 0x6985
    assert applet.transmit(SELECT) == b"\x90\x00"
    assert applet.transmit(bytes.fromhex("80CA010100")) == SERIAL.to_bytes(4, "big") + b"\x90\x00"


def test_select_unknown_aid_and_partial_aid() -> None:
    applet = make_applet()
    assert sw(applet.transmit(bytes.fromhex("00A4040005A000000003"))) == 0x6A82
    assert sw(applet.transmit(bytes.fromhex("00A4040005A0000000031122"[:20]))) == 0x6A82
    # a partial DF name selects (ISO/IEC 7816-4 §7.1.1)
    assert applet.transmit(bytes.fromhex("00A4040004") + AID[:4]) == b"\x90\x00"
    assert sw(applet.transmit(bytes.fromhex("00A4010008") + AID)) == 0x6A86
    # selecting another application deselects ours
    assert sw(applet.transmit(bytes.fromhex("00A4040005A000000003"))) == 0x6A82
    assert sw(applet.transmit(bytes.fromhex("80CA010100"))) == 0x6985


def test_select_with_le_returns_fci() -> None:
    applet = make_applet()
    resp = applet.transmit(SELECT + b"\x00")
    assert resp == b"\x6f\x0a\x84\x08" + AID + b"\x90\x00"


@pytest.mark.parametrize(("apdu", "expected"), [
    ("80EE000000", 0x6D00),  # unknown INS in our class
    ("00CA010100", 0x6E00),  # GET DATA exists only in class 80
    ("8420008104", 0x6E00),  # VERIFY exists only in class 00
    ("B0CA010100", 0x6E00),  # unknown proprietary class
    ("80CA020100", 0x6A86),  # GET DATA P1 other than 01
    ("80CA017700", 0x6A88),  # unknown GET DATA tag
    ("8032010000", 0x6A86),  # READ ENTITLEMENTS with P1
    ("00C0000000", 0x6985),  # GET RESPONSE with nothing pending
    ("00C0010000", 0x6A86),
])
def test_iso_status_words(apdu: str, expected: int) -> None:
    assert sw(selected().transmit(bytes.fromhex(apdu))) == expected


def test_power_cycle_deselects() -> None:
    applet = selected()
    applet.power_off()
    applet.power_on()
    assert sw(applet.transmit(bytes.fromhex("80CA010100"))) == 0x6985


# --- GET DATA and Le handling ------------------------------------------------------------------
def test_get_data_wrong_le_is_6cxx_then_exact_le_works() -> None:
    applet = selected()
    assert applet.transmit(bytes.fromhex("80CA010102")) == b"\x6c\x04"
    assert applet.transmit(bytes.fromhex("80CA010104")) == SERIAL.to_bytes(4, "big") + b"\x90\x00"


def test_get_data_without_le_is_61xx_then_get_response() -> None:
    applet = selected()
    assert applet.transmit(bytes.fromhex("80CA0101")) == b"\x61\x04"
    assert applet.transmit(bytes.fromhex("00C0000004")) == SERIAL.to_bytes(4, "big") + b"\x90\x00"
    assert sw(applet.transmit(bytes.fromhex("00C0000004"))) == 0x6985  # consumed


def test_card_info_through_client() -> None:
    _, client = make_client()
    info = client.info()
    assert info.serial == SERIAL
    assert info.status is CardStatus.INACTIVE
    assert info.ecm_key_indexes == (0,)
    assert info.pin_retries_left == info.pin_retries_max == 3
    assert client.serial() == SERIAL
    assert client.pairing() is None
    assert client.osd_message() == ""
    assert parse_card_info(client.get_data(DataTag.CARD_INFO)) == info


def _fill_entitlements(n: int):  # type: ignore[no-untyped-def]
    applet, client = make_client()
    head = HeadEnd()
    for first in range(0, n, 16):
        cmds = [AddEntitlement(package_id=p, start_s=NOW, end_s=NOW + p)
                for p in range(first + 1, min(n, first + 16) + 1)]
        client.process_emm(head.unique(SERIAL, *cmds))
    return applet, client


def test_read_entitlements_chains_when_over_256_bytes() -> None:
    applet, client = _fill_entitlements(ENTITLEMENT_SLOTS)
    # 1 + 32 * 10 = 321 bytes: first 256 with 61 41, then GET RESPONSE
    first = applet.transmit(bytes.fromhex("8032000000"))
    assert len(first) == 258 and first[-2:] == b"\x61\x41"
    rest = applet.transmit(bytes.fromhex("00C0000041"))
    assert len(rest) == 0x41 + 2 and rest[-2:] == b"\x90\x00"
    table = parse_entitlements(first[:-2] + rest[:-2])
    assert [e.package_id for e in table] == list(range(1, ENTITLEMENT_SLOTS + 1))
    # the client follows the chain by itself
    assert client.entitlements() == table


def test_get_response_short_le_gets_6cxx() -> None:
    applet, _ = _fill_entitlements(ENTITLEMENT_SLOTS)
    applet.transmit(bytes.fromhex("8032000000"))
    assert applet.transmit(bytes.fromhex("00C0000010")) == b"\x6c\x41"
    assert applet.transmit(bytes.fromhex("00C0000041"))[-2:] == b"\x90\x00"


def test_read_entitlements_small_le_chains_in_le_sized_chunks_when_long() -> None:
    applet, _client = _fill_entitlements(ENTITLEMENT_SLOTS)
    first = applet.transmit(bytes.fromhex("8032000080"))  # Le 128 < 321
    assert len(first) == 130 and first[-2:] == b"\x61\xc1"


def test_other_command_drops_pending_response() -> None:
    applet, _ = _fill_entitlements(ENTITLEMENT_SLOTS)
    applet.transmit(bytes.fromhex("8032000000"))
    applet.transmit(bytes.fromhex("80CA010100"))
    assert sw(applet.transmit(bytes.fromhex("00C0000041"))) == 0x6985


# --- PIN --------------------------------------------------------------------------------------
def test_verify_pin_counts_down_and_blocks() -> None:
    applet, client = make_client()
    assert client.pin_tries_left() == 3
    with pytest.raises(WrongPinError) as e1:
        client.verify_pin("0000")
    assert e1.value.tries_left == 2 and e1.value.sw == 0x63C2
    with pytest.raises(WrongPinError):
        client.verify_pin("1111")
    # a right PIN restores the counter
    client.verify_pin(PIN)
    assert client.pin_tries_left() is None  # verified in this session
    assert applet.record.pin_retries_left == 3
    for left in (2, 1):
        with pytest.raises(WrongPinError) as e:
            client.verify_pin("9999")
        assert e.value.tries_left == left
    with pytest.raises(PinBlockedError) as blocked:
        client.verify_pin("9999")
    assert blocked.value.sw == 0x6983
    # blocked: even the right PIN is refused, and the state is in the EEPROM record
    with pytest.raises(PinBlockedError):
        client.verify_pin(PIN)
    assert applet.record.pin_retries_left == 0
    assert client.pin_tries_left() == 0


def test_reset_pin_emm_unblocks() -> None:
    applet, client = make_client()
    for _ in range(3):
        with pytest.raises((WrongPinError, PinBlockedError)):
            client.verify_pin("9999")
    client.process_emm(HeadEnd().unique(SERIAL, ResetPin(pin_hash=hashed_pin("4321"))))
    assert applet.record.pin_retries_left == 3
    with pytest.raises(WrongPinError):
        client.verify_pin(PIN)
    client.verify_pin("4321")


def test_change_pin() -> None:
    applet, client = make_client()
    with pytest.raises(WrongPinError):
        client.change_pin("0000", "5555")
    client.change_pin(PIN, "5555")
    applet.reset()
    client.select()
    with pytest.raises(WrongPinError):
        client.verify_pin(PIN)
    client.verify_pin("5555")


@pytest.mark.parametrize(("apdu", "expected"), [
    ("002000810331323334"[:16], 0x6700),  # Lc 3
    ("0020008105313233343536"[:22], 0x6700),
    ("0020018104313233 34", 0x6A86),
    ("0020008204313233 34", 0x6A88),
    ("00200081043132334A", 0x6A80),  # not digits
    ("002400810431323334", 0x6700),  # CHANGE needs old+new
])
def test_pin_command_errors(apdu: str, expected: int) -> None:
    assert sw(selected().transmit(bytes.fromhex(apdu))) == expected


def test_pin_session_ends_on_reset() -> None:
    applet, client = make_client()
    client.verify_pin(PIN)
    assert applet.pin_verified
    applet.reset()
    assert not applet.pin_verified
