"""cas.formats.simulcrypt: the generic frame, the schemas, describe()."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cas.errors import FormatError
from cas.formats.simulcrypt import (
    ECMG_SCS,
    EMMG_MUX,
    HEADER_SIZE,
    EcmgScsError,
    EcmgScsMessage,
    EcmgScsParam,
    EmmgMuxError,
    EmmgMuxMessage,
    EmmgMuxParam,
    Message,
    Parameter,
    SimulcryptFormatError,
    build_message,
    check_message,
    describe,
    frame_length,
    interface_of,
    iter_frames,
    looks_like_simulcrypt,
    parse_message,
    parse_message_declarative,
)

from .helpers import raw, u16, u32

# channel_setup, version 2, ECM_channel_id 1, Super_CAS_id 0xDEAD0000 (TS 103 197 §5.3.1).
GOLDEN_CHANNEL_SETUP = bytes.fromhex("020001000e000e0002000100010004dead0000")

parameters = st.builds(lambda t, v: Parameter(type=t, value=v),
                       st.integers(0, 0xFFFF), st.binary(max_size=40))
messages = st.builds(lambda v, t, ps: Message(protocol_version=v, message_type=t,
                                              parameters=tuple(ps)),
                     st.integers(0, 255), st.integers(0, 0xFFFF),
                     st.lists(parameters, max_size=8))


def test_golden_channel_setup() -> None:
    message = parse_message(GOLDEN_CHANNEL_SETUP)
    assert message == Message(protocol_version=2, message_type=0x0001, parameters=(
        Parameter(type=0x000E, value=b"\x00\x01"), Parameter(type=0x0001, value=u32(0xDEAD0000))))
    assert message.message_length == 14
    assert build_message(message) == GOLDEN_CHANNEL_SETUP
    assert frame_length(GOLDEN_CHANNEL_SETUP[:HEADER_SIZE]) == len(GOLDEN_CHANNEL_SETUP)


@given(messages)
def test_build_parse_round_trip(message: Message) -> None:
    data = build_message(message)
    assert parse_message(data) == message
    assert parse_message_declarative(data) == message
    assert len(data) == HEADER_SIZE + message.message_length


@given(st.binary(max_size=80))
def test_fast_and_declarative_parsers_agree_on_any_bytes(data: bytes) -> None:
    """The struct fast path accepts and rejects exactly what the construct declaration does."""
    try:
        fast: Message | None = parse_message(data)
    except SimulcryptFormatError as exc:
        assert exc.error_status == EcmgScsError.INV_MESSAGE
        fast = None
    try:
        slow: Message | None = parse_message_declarative(data)
    except SimulcryptFormatError:
        slow = None
    assert fast == slow


@given(messages, st.data())
def test_mutated_frames_raise_only_format_errors(message: Message, data: st.DataObject) -> None:
    frame = bytearray(build_message(message))
    index = data.draw(st.integers(0, len(frame) - 1))
    frame[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(frame)))
    for candidate in (bytes(frame), bytes(frame[:cut])):
        try:
            parsed = parse_message(candidate)
        except FormatError:
            continue
        for spec in (ECMG_SCS, EMMG_MUX):
            try:
                check_message(parsed, spec)
            except SimulcryptFormatError as exc:
                assert exc.error_status in set(spec.errors)


@pytest.mark.parametrize("data", [
    b"", b"\x02\x00", GOLDEN_CHANNEL_SETUP[:-1], GOLDEN_CHANNEL_SETUP + b"\x00",
    # a TLV whose parameter_length runs past the message
    bytes.fromhex("020001000600 0e000500 01".replace(" ", "")),
    # a truncated TLV header
    bytes.fromhex("0200010002000e"),
])
def test_malformed_frames(data: bytes) -> None:
    with pytest.raises(SimulcryptFormatError) as info:
        parse_message(data)
    assert info.value.error_status == 0x0001
    with pytest.raises(SimulcryptFormatError):
        parse_message_declarative(data)


def test_too_many_parameter_bytes_cannot_be_built() -> None:
    big = Message(protocol_version=2, message_type=0x0211,
                  parameters=(Parameter(type=5, value=bytes(0xFFFF)),))
    with pytest.raises(SimulcryptFormatError) as info:
        build_message(big)
    assert info.value.error_status == EcmgScsError.MESSAGE_TOO_LONG


def test_parameter_and_message_field_ranges() -> None:
    with pytest.raises(ValueError):
        Parameter(type=0x10000, value=b"")
    with pytest.raises(ValueError):
        Message(protocol_version=256, message_type=1)


def test_unknown_parameters_are_kept_raw() -> None:
    data = raw(2, 0x0002, (0x000E, u16(1)), (0x8123, b"vendor"), (0x0999, b"\x01"))
    message = parse_message(data)
    assert message.values(0x8123) == [b"vendor"]
    assert message.values(0x0999) == [b"\x01"]
    assert build_message(message) == data


def test_interface_of() -> None:
    assert interface_of(EcmgScsMessage.CW_PROVISION) is ECMG_SCS
    assert interface_of(EcmgScsMessage.CHANNEL_SETUP) is ECMG_SCS
    assert interface_of(EmmgMuxMessage.DATA_PROVISION) is EMMG_MUX
    assert interface_of(EmmgMuxMessage.STREAM_BW_REQUEST) is EMMG_MUX
    assert interface_of(0x0310) is None
    assert interface_of(0x8001) is None


# --- check_message: each syntax error and its error_status -----------------------------------
ECMG_SETUP = (EcmgScsMessage.CHANNEL_SETUP, (EcmgScsParam.ECM_CHANNEL_ID, u16(1)),
              (EcmgScsParam.SUPER_CAS_ID, u32(0xDEAD0000)))


def _check(spec_name: str, version: int, mtype: int, *params: tuple[int, bytes]) -> int:
    spec = ECMG_SCS if spec_name == "ecmg" else EMMG_MUX
    with pytest.raises(SimulcryptFormatError) as info:
        check_message(parse_message(raw(version, mtype, *params)), spec)
    return info.value.error_status


def test_check_accepts_a_valid_message_and_groups_values() -> None:
    grouped = check_message(parse_message(raw(2, *ECMG_SETUP)), ECMG_SCS)
    assert grouped == {EcmgScsParam.ECM_CHANNEL_ID: [u16(1)],
                       EcmgScsParam.SUPER_CAS_ID: [u32(0xDEAD0000)]}


@pytest.mark.parametrize(("spec", "version", "expected"), [
    ("ecmg", 4, EcmgScsError.INV_PROTO_VERSION), ("ecmg", 0, EcmgScsError.INV_PROTO_VERSION),
    ("emmg", 6, EmmgMuxError.INV_PROTO_VERSION),
])
def test_check_version(spec: str, version: int, expected: int) -> None:
    mtype = ECMG_SETUP[0] if spec == "ecmg" else EmmgMuxMessage.CHANNEL_TEST
    assert _check(spec, version, mtype) == expected


def test_check_unknown_message_type() -> None:
    assert _check("ecmg", 2, 0x0009) == EcmgScsError.INV_MESSAGE_TYPE
    assert _check("ecmg", 2, EmmgMuxMessage.DATA_PROVISION) == EcmgScsError.INV_MESSAGE_TYPE
    assert _check("emmg", 2, 0x8000) == EmmgMuxError.INV_MESSAGE_TYPE


def test_check_unknown_parameter_type() -> None:
    assert _check("ecmg", 2, *ECMG_SETUP, (0x0999, b"")) == EcmgScsError.INV_PARAM_TYPE
    # known to the interface, but not part of this message
    assert _check("ecmg", 2, *ECMG_SETUP, (EcmgScsParam.CP_NUMBER, u16(1))) \
        == EcmgScsError.INV_PARAM_TYPE
    assert _check("emmg", 2, EmmgMuxMessage.CHANNEL_TEST, (EmmgMuxParam.CLIENT_ID, u32(1)),
                  (EmmgMuxParam.DATA_CHANNEL_ID, u16(1)), (0x0042, b"")) \
        == EmmgMuxError.INV_PARAM_TYPE


def test_check_user_defined_parameters_pass() -> None:
    grouped = check_message(parse_message(raw(2, *ECMG_SETUP, (0x8001, b"x"))), ECMG_SCS)
    assert grouped[0x8001] == [b"x"]


def test_check_inconsistent_length() -> None:
    assert _check("ecmg", 2, EcmgScsMessage.CHANNEL_SETUP, (EcmgScsParam.ECM_CHANNEL_ID, b"\x01"),
                  (EcmgScsParam.SUPER_CAS_ID, u32(1))) == EcmgScsError.INV_PARAM_LENGTH
    assert _check("emmg", 2, EmmgMuxMessage.CHANNEL_TEST, (EmmgMuxParam.CLIENT_ID, u16(1)),
                  (EmmgMuxParam.DATA_CHANNEL_ID, u16(1))) == EmmgMuxError.INV_PARAM_LENGTH


def test_check_missing_and_repeated() -> None:
    assert _check("ecmg", 2, EcmgScsMessage.CHANNEL_SETUP,
                  (EcmgScsParam.ECM_CHANNEL_ID, u16(1))) == EcmgScsError.MISSING_PARAM
    assert _check("ecmg", 2, *ECMG_SETUP, (EcmgScsParam.ECM_CHANNEL_ID, u16(2))) \
        == EcmgScsError.INV_MESSAGE
    assert _check("emmg", 2, EmmgMuxMessage.CHANNEL_TEST, (EmmgMuxParam.CLIENT_ID, u32(1))) \
        == EmmgMuxError.MISSING_PARAM


def test_version_1_differences() -> None:
    """V1: no ECM_id, 8-byte CWs only, no CW_encryption; EMMG: no data_id, ids mandatory."""
    setup_v1 = (EcmgScsMessage.STREAM_SETUP, (EcmgScsParam.ECM_CHANNEL_ID, u16(1)),
                (EcmgScsParam.ECM_STREAM_ID, u16(1)), (EcmgScsParam.NOMINAL_CP_DURATION, u16(100)))
    check_message(parse_message(raw(1, *setup_v1)), ECMG_SCS)
    assert _check("ecmg", 2, *setup_v1) == EcmgScsError.MISSING_PARAM
    assert _check("ecmg", 1, *setup_v1, (EcmgScsParam.ECM_ID, u16(1))) \
        == EcmgScsError.INV_PARAM_TYPE
    cw = (EcmgScsMessage.CW_PROVISION, (EcmgScsParam.ECM_CHANNEL_ID, u16(1)),
          (EcmgScsParam.ECM_STREAM_ID, u16(1)), (EcmgScsParam.CP_NUMBER, u16(1)))
    check_message(parse_message(raw(1, *cw, (EcmgScsParam.CP_CW_COMBINATION, bytes(10)))),
                  ECMG_SCS)
    assert _check("ecmg", 1, *cw, (EcmgScsParam.CP_CW_COMBINATION, bytes(18))) \
        == EcmgScsError.INV_PARAM_LENGTH
    check_message(parse_message(raw(2, *cw, (EcmgScsParam.CP_CW_COMBINATION, bytes(18)))),
                  ECMG_SCS)
    assert _check("ecmg", 1, *cw, (EcmgScsParam.CW_ENCRYPTION, b"")) \
        == EcmgScsError.INV_PARAM_TYPE
    provision = (EmmgMuxMessage.DATA_PROVISION, (EmmgMuxParam.CLIENT_ID, u32(1)),
                 (EmmgMuxParam.DATAGRAM, b"\x82\x70\x00"))
    assert _check("emmg", 1, *provision) == EmmgMuxError.MISSING_PARAM       # ids
    assert _check("emmg", 2, *provision) == EmmgMuxError.MISSING_PARAM       # data_id
    check_message(parse_message(raw(2, *provision, (EmmgMuxParam.DATA_ID, u16(1)))), EMMG_MUX)
    check_message(parse_message(raw(
        1, *provision, (EmmgMuxParam.DATA_CHANNEL_ID, u16(1)),
        (EmmgMuxParam.DATA_STREAM_ID, u16(1)))), EMMG_MUX)


def test_version_1_takes_a_data_id_when_a_peer_sends_one() -> None:
    """Issue 12, item 19: V1 has no data_id, but peers such as TSDuck send it in every
    version; it is accepted (at most once) in V1 and stays mandatory from V2 on."""
    ids = ((EmmgMuxParam.CLIENT_ID, u32(1)), (EmmgMuxParam.DATA_CHANNEL_ID, u16(1)),
           (EmmgMuxParam.DATA_STREAM_ID, u16(1)))
    for message_type, rest in (
            (EmmgMuxMessage.STREAM_SETUP, ((EmmgMuxParam.DATA_TYPE, b"\x00"),)),
            (EmmgMuxMessage.STREAM_STATUS, ((EmmgMuxParam.DATA_TYPE, b"\x00"),)),
            (EmmgMuxMessage.DATA_PROVISION, ((EmmgMuxParam.DATAGRAM, b"\x82\x70\x00"),))):
        check_message(parse_message(raw(1, message_type, *ids, *rest)), EMMG_MUX)
        check_message(parse_message(raw(1, message_type, *ids, *rest,
                                        (EmmgMuxParam.DATA_ID, u16(7)))), EMMG_MUX)
        assert _check("emmg", 1, message_type, *ids, *rest, (EmmgMuxParam.DATA_ID, u16(7)),
                      (EmmgMuxParam.DATA_ID, u16(8))) == EmmgMuxError.INV_MESSAGE
        assert _check("emmg", 2, message_type, *ids, *rest) == EmmgMuxError.MISSING_PARAM


def test_every_message_of_both_interfaces_has_a_schema() -> None:
    assert set(ECMG_SCS.messages) == set(EcmgScsMessage)
    assert set(EMMG_MUX.messages) == set(EmmgMuxMessage)
    assert set(ECMG_SCS.params) == set(EcmgScsParam)
    assert set(EMMG_MUX.params) == set(EmmgMuxParam)


# --- describe -------------------------------------------------------------------------------
def test_describe_names_values_and_units() -> None:
    tree = describe(GOLDEN_CHANNEL_SETUP)
    json.dumps(tree)
    assert tree["interface"] == "ECMG<>SCS"
    assert tree["message"] == "channel_setup"
    assert tree["valid"] is True
    assert [(p["name"], p["value"]) for p in tree["parameters"]] == [
        ("ECM_channel_id", 1), ("Super_CAS_id", 0xDEAD0000)]


def test_describe_hides_cws_unless_revealed() -> None:
    cw = bytes(range(1, 9))
    data = raw(2, EcmgScsMessage.CW_PROVISION, (EcmgScsParam.ECM_CHANNEL_ID, u16(1)),
               (EcmgScsParam.ECM_STREAM_ID, u16(2)), (EcmgScsParam.CP_NUMBER, u16(7)),
               (EcmgScsParam.CP_CW_COMBINATION, u16(7) + cw), (EcmgScsParam.DELAY_START, b"\xff"))
    tree = describe(data)
    combo = tree["parameters"][3]["value"]
    assert combo["CP_number"] == 7 and combo["CW_length"] == 8
    assert cw.hex() not in json.dumps(tree)
    assert describe(data, reveal=True)["parameters"][3]["value"]["CW"] == cw.hex()
    assert tree["valid"] is False
    assert tree["problem"]["name"] == "inv_param_type"


def test_describe_unknown_and_errors() -> None:
    data = raw(3, EcmgScsMessage.CHANNEL_ERROR, (EcmgScsParam.ECM_CHANNEL_ID, u16(1)),
               (EcmgScsParam.ERROR_STATUS, u16(0x0013)), (0x8555, b"\xaa"),
               (0x0777, b"\xbb"))
    tree = describe(data)
    names = [p["name"] for p in tree["parameters"]]
    assert names == ["ECM_channel_id", "error_status", "user_defined", "unknown"]
    assert tree["parameters"][1]["value"] == {"value": 0x13, "name": "channel_id_in_use"}
    assert tree["parameters"][3]["raw"] == "bb"
    assert describe(raw(2, 0x0310))["interface"] == "unknown"
    with pytest.raises(FormatError):
        describe(b"\x02\x00\x01")


def test_detection_and_frame_splitting() -> None:
    assert looks_like_simulcrypt(GOLDEN_CHANNEL_SETUP)
    assert not looks_like_simulcrypt(b"\x47" + bytes(187))
    assert not looks_like_simulcrypt(raw(9, 0x0001))
    frames = list(iter_frames(GOLDEN_CHANNEL_SETUP * 3))
    assert len(frames) == 3
    with pytest.raises(SimulcryptFormatError):
        list(iter_frames(GOLDEN_CHANNEL_SETUP + GOLDEN_CHANNEL_SETUP[:7]))
