"""EMM sections and command TLVs: round trips, addressing, limits, fuzzing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cas.access import CardStatus
from cas.errors import FormatError
from cas.formats.emm import (
    AddEntitlement,
    ClearEntitlements,
    ClearSharing,
    Emm,
    EmmAddressType,
    EmmCommand,
    EmmHeader,
    EmmTag,
    Fingerprint,
    FingerprintKind,
    ForeignEmm,
    GlobalAddress,
    OsdMail,
    OsdMessage,
    Pair,
    SetSharing,
    SetStatus,
    SharedAddress,
    UniqueAddress,
    UnknownCommand,
    build_emm,
    build_emm_commands,
    build_foreign_emm,
    describe,
    emm_clear_bytes,
    emm_header_size,
    max_emm_plaintext,
    parse_emm,
    parse_emm_commands,
    parse_emm_section,
)
from cas.sharing import SharingPolicy
from tests.unit.formats.record_strategies import emm_commands, emm_headers


@given(emm_headers, st.binary(min_size=16, max_size=150))
def test_section_round_trip(header: EmmHeader, body: bytes) -> None:
    raw = build_emm(Emm(header=header, body=body))
    assert len(raw) <= 256
    assert raw[0] == header.table_id
    assert raw[1] >> 4 == 0x7  # SSI 0, private 1, reserved 11
    assert ((raw[1] & 0x0F) << 8 | raw[2]) == len(raw) - 3
    assert parse_emm(raw) == Emm(header=header, body=body)
    assert parse_emm_section(raw) == Emm(header=header, body=body)


@given(st.lists(emm_commands, max_size=4))
def test_commands_round_trip(commands: list[EmmCommand]) -> None:
    assert parse_emm_commands(build_emm_commands(commands)) == commands


def test_header_sizes_and_limits() -> None:
    assert emm_header_size(EmmAddressType.UNIQUE) == 24
    assert emm_header_size(EmmAddressType.SHARED) == 55
    assert emm_header_size(EmmAddressType.GLOBAL) == 20
    header = EmmHeader(address=GlobalAddress(), seq=1, not_after_s=2)
    biggest = 253 - 20
    assert len(build_emm(Emm(header=header, body=bytes(biggest)))) == 256
    with pytest.raises(FormatError) as err:
        build_emm(Emm(header=header, body=bytes(biggest + 1)))
    assert err.value.path == "emm.section_length"
    assert max_emm_plaintext(EmmAddressType.UNIQUE) == 253 - 24 - 16
    with pytest.raises(FormatError):  # shorter than a GCM tag
        emm_clear_bytes(header, 15)


def test_shared_address_bitmap() -> None:
    addr = SharedAddress.of(0xABCDEF, [0, 7, 8, 255])
    assert addr.members[0] == 0x81 and addr.members[1] == 0x80 and addr.members[31] == 0x01
    assert addr.includes(7) and not addr.includes(6) and not addr.includes(256)
    assert addr.positions() == [0, 7, 8, 255]
    raw = build_emm(Emm(header=EmmHeader(address=addr, seq=3, not_after_s=4), body=bytes(16)))
    assert raw[3:6] == bytes.fromhex("ABCDEF")


def test_unique_layout_bytes() -> None:
    header = EmmHeader(
        address=UniqueAddress(serial=2256884759), seq=5, not_after_s=0x01020304, nonce=b"N" * 12
    )
    raw = build_emm(Emm(header=header, body=b"T" * 16))
    assert raw.hex() == (
        "82" "7028" f"{2256884759:08x}" "00000005" "01020304" + (b"N" * 12).hex() + (b"T" * 16).hex()
    )


def test_table_ids() -> None:
    body = bytes(40)
    for tid in range(0x85, 0x90):
        raw = bytes([tid, 0x70, len(body)]) + body
        foreign = parse_emm_section(raw)
        assert foreign == ForeignEmm(table_id=tid, section=raw)
        assert build_foreign_emm(foreign) == raw
        with pytest.raises(FormatError):
            parse_emm(raw)
    for tid in (0x00, 0x01, 0x80, 0x81, 0x90, 0xFF):
        with pytest.raises(FormatError) as err:
            parse_emm_section(bytes([tid, 0x70, len(body)]) + body)
        assert err.value.path == "emm.table_id"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x82",
        b"\x82\x70",
        bytes.fromhex("82F014") + bytes(20),  # section_syntax_indicator = 1
        bytes.fromhex("823014") + bytes(20),  # private_indicator = 0
        bytes.fromhex("827015") + bytes(20),  # length says one more than there is
        bytes.fromhex("827013") + bytes(20),  # trailing byte
        bytes.fromhex("8270FE") + bytes(254),  # section_length 254 > 253
        bytes.fromhex("827020") + bytes(32),  # unique header + 8 bytes: body < tag
    ],
)
def test_malformed_sections(raw: bytes) -> None:
    with pytest.raises(FormatError):
        parse_emm_section(raw)


@given(st.binary(max_size=300))
def test_section_fuzz(data: bytes) -> None:
    try:
        emm = parse_emm_section(data)
    except FormatError:
        return
    rebuilt = build_foreign_emm(emm) if isinstance(emm, ForeignEmm) else build_emm(emm)
    assert rebuilt == data


@given(st.sampled_from([0x82, 0x83, 0x84]), st.binary(max_size=260))
def test_section_fuzz_with_valid_table_id(tid: int, payload: bytes) -> None:
    n = len(payload)
    data = bytes([tid, 0x70 | (n >> 8), n & 0xFF]) + payload
    try:
        emm = parse_emm(data)
    except FormatError:
        return
    assert build_emm(emm) == data


@given(st.binary(max_size=120))
def test_commands_fuzz(data: bytes) -> None:
    try:
        commands = parse_emm_commands(data)
    except FormatError:
        return
    assert build_emm_commands(commands) == data


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (bytes.fromhex("01"), "emm.commands[0]"),
        (bytes.fromhex("0109") + bytes(9), "emm.commands[0].add_entitlement.end_s"),  # 9 != 10
        (bytes.fromhex("030100"), "emm.commands[0].clear_entitlements"),
        (bytes.fromhex("040109"), "emm.commands[0].set_status.status"),
        (bytes.fromhex("0A01FF"), "emm.commands[0].osd_message"),  # not UTF-8
        (bytes.fromhex("0300" "0205"), "emm.commands[1].length"),
    ],
)
def test_bad_commands_name_the_command(raw: bytes, path: str) -> None:
    with pytest.raises(FormatError) as err:
        parse_emm_commands(raw)
    assert err.value.path == path


def test_unknown_commands_are_kept() -> None:
    raw = bytes.fromhex("7F03AABBCC" "0300")
    commands = parse_emm_commands(raw)
    assert commands == [UnknownCommand(tag=0x7F, value=b"\xaa\xbb\xcc"), ClearEntitlements()]
    assert build_emm_commands(commands) == raw
    with pytest.raises(FormatError):  # a known tag must use its own class
        build_emm_commands([UnknownCommand(tag=0x01, value=b"")])


def test_command_builder_checks() -> None:
    for bad in (
        AddEntitlement(package_id=1 << 16, start_s=0, end_s=0),
        Pair(chip_id=1, cwpk=b"k" * 15, chip_blob=b"b" * 24),
        SetStatus(status=9),  # type: ignore[arg-type]
        OsdMessage(text="x" * 256),
    ):
        with pytest.raises(FormatError):
            build_emm_commands([bad])


def test_describe_hides_keys() -> None:
    cmds: list[EmmCommand] = [
        Pair(chip_id=0xCAFEF00D, cwpk=b"\x5a" * 16, chip_blob=b"\x6b" * 24),
        SetStatus(status=CardStatus.SUSPENDED),
        OsdMessage(text="Пополните баланс"),
    ]
    tree = describe(cmds)
    text = json.dumps(tree, ensure_ascii=False)
    assert "5a5a5a5a" not in text and "6b6b6b6b" not in text
    assert tree["commands"][0]["chip_id"] == "CAFEF00D"
    assert tree["commands"][1]["status"] == "SUSPENDED"
    assert "Пополните" in text
    assert "5a5a" not in repr(cmds[0]) and "ZZZZ" not in repr(cmds[0])
    emm = parse_emm(
        build_emm(
            Emm(header=EmmHeader(address=SharedAddress.of(9, [1, 2]), seq=1, not_after_s=2),
                body=bytes(16))
        )
    )
    head = describe(emm)
    assert head["address"] == {"type": "SHARED", "shared_address": 9, "members": [1, 2]}
    json.dumps(head)


def test_osd_mail_and_fingerprint_layouts() -> None:
    mail = OsdMail(message_id=0x0102, priority=7, start_s=0x11223344, duration_s=30, text="Hi")
    raw = build_emm_commands([mail])
    assert raw == bytes((EmmTag.OSD_MAIL, 11)) + bytes.fromhex("0102 07 11223344 001E") + b"Hi"
    fp = Fingerprint(kind=FingerprintKind.COVERT, start_s=0, duration_s=5, x_pct=90, y_pct=10)
    raw = build_emm_commands([fp])
    assert raw == bytes((EmmTag.FINGERPRINT, 9)) + bytes.fromhex("02 00000000 0005 5A 0A")
    assert parse_emm_commands(raw) == [fp]
    assert describe(fp) == {"command": "FINGERPRINT", "kind": "COVERT", "start_s": 0,
                            "duration_s": 5, "x_pct": 90, "y_pct": 10}


@pytest.mark.parametrize(("raw", "path"), [
    (bytes((0x21, 9)) + bytes.fromhex("03 00000000 0005 5A 0A"), "fingerprint"),
    (bytes((0x21, 9)) + bytes.fromhex("01 00000000 0005 65 0A"), "fingerprint"),
    (bytes((0x21, 10)) + bytes.fromhex("01 00000000 0005 5A 0A 00"), "fingerprint"),
    (bytes((0x20, 4)) + bytes.fromhex("0001 07 00"), "osd_mail"),
])
def test_bad_osd_commands(raw: bytes, path: str) -> None:
    with pytest.raises(FormatError) as info:
        parse_emm_commands(raw)
    assert path in str(info.value)


def test_fingerprint_builder_checks() -> None:
    with pytest.raises(FormatError, match=r"0\.\.100"):
        build_emm_commands([Fingerprint(kind=FingerprintKind.OVERT, start_s=0, duration_s=1,
                                        x_pct=101, y_pct=0)])


def test_sharing_command_layouts() -> None:
    cmd = SetSharing(policy=SharingPolicy.REFUSE, tuners=3, rate_tolerance=1, window_s=10)
    raw = build_emm_commands([cmd, ClearSharing()])
    assert raw == bytes.fromhex("30 04 02 03 01 0A 31 00")
    assert parse_emm_commands(raw) == [cmd, ClearSharing()]
    assert describe(cmd) == {"command": "SET_SHARING", "policy": "REFUSE", "tuners": 3,
                             "rate_tolerance": 1, "window_s": 10}


@pytest.mark.parametrize("raw", [
    bytes.fromhex("30 04 03 02 01 0A"),     # no policy 3
    bytes.fromhex("30 04 01 00 01 0A"),     # no tuner
    bytes.fromhex("30 04 01 02 01 00"),     # an empty window
    bytes.fromhex("30 03 01 02 01"),        # short
    bytes.fromhex("31 01 00"),              # CLEAR_SHARING takes nothing
])
def test_bad_sharing_commands(raw: bytes) -> None:
    with pytest.raises(FormatError):
        parse_emm_commands(raw)
