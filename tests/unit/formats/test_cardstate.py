"""The card's state area (docs/formats.md §2.2): round trip, the image split into record and
state, an image without a state area, a version 1 area (before the late-EMM windows), an
unknown version, a broken CRC, the limits."""

from __future__ import annotations

import dataclasses
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cas.card.eeprom import build_image, load_card_image, load_image, parse_image
from cas.errors import ChecksumError, FormatError
from cas.formats.cardstate import (
    DEFAULT_CARD_STATE,
    ECM_RECORD_SLOTS,
    EMM_LATE_WINDOW,
    MARK_UNKNOWN,
    CardState,
    EcmSeen,
    EmmMark,
    EmmWindow,
    SharingFlag,
    SharingSettings,
    build_card_state,
    build_card_state_declared,
    describe_card_state,
    parse_card_state,
)
from cas.formats.emm import EmmAddressType, Fingerprint, FingerprintKind, OsdMail
from cas.formats.records import CARD_RECORD_SIZE, build_card_record
from cas.sharing import SharingPolicy, SharingRule
from tests.unit.card.helpers import make_record

STATE = CardState(
    sharing=SharingSettings(policy=SharingPolicy.REFUSE, tuners=3, rate_tolerance=2,
                            window_s=8),
    flag=SharingFlag(rules=(SharingRule.SERVICES, SharingRule.RATE), window_s=1_767_225_600,
                     services=5, requests=9, trips=4),
    ecms=tuple(EcmSeen(channel_id=c, time_s=1_767_225_600 + c) for c in range(5)),
    mails=(OsdMail(message_id=7, priority=3, start_s=0, duration_s=20, text="Пополните счёт"),),
    acked=(1, 2, 65535),
    fingerprint=Fingerprint(kind=FingerprintKind.OVERT, start_s=5, duration_s=9, x_pct=10,
                            y_pct=90),
    emm_windows=(
        EmmWindow(kind=EmmAddressType.UNIQUE, top_seq=2**32 - 1,
                  marks=(EmmMark.APPLIED | EmmMark.SHARING, EmmMark(0), MARK_UNKNOWN)),
        EmmWindow(kind=EmmAddressType.GLOBAL, top_seq=7,
                  marks=(EmmMark.APPLIED,) * (EMM_LATE_WINDOW + 1)),
    ),
)


def test_round_trip() -> None:
    assert parse_card_state(build_card_state(STATE)) == STATE
    assert parse_card_state(build_card_state(DEFAULT_CARD_STATE)) == DEFAULT_CARD_STATE
    assert describe_card_state(STATE)["emm_windows"] == [
        {"kind": "UNIQUE", "top_seq": 2**32 - 1, "marks": [3, 0, 0x1F]},
        {"kind": "GLOBAL", "top_seq": 7, "marks": [1] * (EMM_LATE_WINDOW + 1)}]


def test_an_image_is_the_record_then_the_state_unless_it_is_the_default(tmp_path: Path) -> None:
    rec = make_record()
    assert build_image(rec) == build_card_record(rec)
    data = build_image(rec, STATE)
    assert data[:CARD_RECORD_SIZE] == build_card_record(rec)
    assert parse_image(data) == (rec, STATE)
    image = tmp_path / "card.img"
    image.write_bytes(data)
    assert load_card_image(image) == (rec, STATE) and load_image(image) == rec


def test_an_image_of_the_record_alone_opens_in_the_default_state(tmp_path: Path) -> None:
    image = tmp_path / "factory.img"
    image.write_bytes(build_card_record(make_record()))
    assert load_card_image(image)[1] == DEFAULT_CARD_STATE
    assert DEFAULT_CARD_STATE.sharing.policy is SharingPolicy.FLAG
    assert DEFAULT_CARD_STATE.sharing.tuners == 2


def test_a_newer_version_is_refused_by_name(tmp_path: Path) -> None:
    data = bytearray(build_card_state(STATE))
    data[4] = 3
    with pytest.raises(FormatError) as info:
        parse_card_state(bytes(data))
    assert info.value.path == "card_state.version" and "version 3" in str(info.value)
    image = tmp_path / "card.img"
    image.write_bytes(build_card_record(make_record()) + bytes(data))
    with pytest.raises(FormatError, match=r"card image .*card\.img.*version 3"):
        load_card_image(image)


def version_1(state: CardState) -> bytes:
    """The area as the card OS before the windows wrote it: version 1, no window count."""
    area = build_card_state(dataclasses.replace(state, emm_windows=()))
    body = bytearray(area[:-5])  # without the window count (0) and the CRC
    assert area[-5] == 0 and body[4] == 2
    body[4] = 1
    return bytes(body) + zlib.crc32(body).to_bytes(4, "big")


def test_a_version_1_area_opens_without_windows(tmp_path: Path) -> None:
    old = dataclasses.replace(STATE, emm_windows=())
    assert parse_card_state(version_1(STATE)) == old
    image = tmp_path / "v1.img"
    image.write_bytes(build_card_record(make_record()) + version_1(STATE))
    assert load_card_image(image)[1] == old
    # the next write is version 2
    assert build_card_state(old)[4] == 2


def test_a_changed_byte_breaks_the_crc() -> None:
    data = bytearray(build_card_state(STATE))
    data[10] ^= 0x01
    with pytest.raises(ChecksumError):
        parse_card_state(bytes(data))
    with pytest.raises(FormatError):
        parse_card_state(bytes(data[:-1]))


@pytest.mark.parametrize("state", [
    CardState(ecms=tuple(EcmSeen(channel_id=1, time_s=i) for i in range(ECM_RECORD_SLOTS + 1))),
    CardState(acked=tuple(range(65))),
    CardState(sharing=SharingSettings(tuners=256)),
    CardState(acked=(70000,)),
    CardState(emm_windows=(EmmWindow(kind=EmmAddressType.UNIQUE, top_seq=1,
                                     marks=(EmmMark.APPLIED,) * (EMM_LATE_WINDOW + 2)),)),
    CardState(emm_windows=(EmmWindow(kind=EmmAddressType.UNIQUE, top_seq=2**32),)),
    CardState(emm_windows=(EmmWindow(kind=EmmAddressType.SHARED, top_seq=1),) * 2),
])
def test_limits(state: CardState) -> None:
    with pytest.raises(FormatError):
        build_card_state(state)



def test_a_window_of_no_address_type_or_with_a_bad_mark_does_not_parse() -> None:
    one = CardState(emm_windows=(EmmWindow(kind=EmmAddressType.UNIQUE, top_seq=9,
                                           marks=(EmmMark.APPLIED, EmmMark(0))),))
    area = build_card_state(one)
    # ... | count 01 | kind 82 | top_seq u32 | mark_count 02 | 01 00 | crc32
    assert area[-13:-4] == bytes.fromhex("01 82 00000009 02 0100")

    def with_byte(offset: int, value: int) -> bytes:
        body = bytearray(area[:-4])
        body[offset] = value
        return bytes(body) + zlib.crc32(body).to_bytes(4, "big")

    # body[-8] is the kind, body[-2] and body[-1] the marks
    assert parse_card_state(with_byte(-2, 0x03)).emm_windows[0].marks == (
        EmmMark.APPLIED | EmmMark.SHARING, EmmMark(0))
    for offset, value in ((-8, 0x85), (-1, 0x20)):  # no address type; a mark beyond the bits
        with pytest.raises(FormatError):
            parse_card_state(with_byte(offset, value))


# --- the struct fast path builds exactly what the declaration builds ---------------------------

_MAILS = (STATE.mails[0], OsdMail(message_id=9, priority=0, start_s=1, duration_s=2, text=""))
_FINGERPRINTS = (None, STATE.fingerprint)


@st.composite
def states(draw: st.DrawFn) -> CardState:
    """Card states, valid or not in the ways the declaration's validators check (a policy,
    tuners or window of 0, a window of no address type, a mark beyond the known bits)."""
    flag = draw(st.none() | st.builds(
        SharingFlag, rules=st.sampled_from([(SharingRule.SERVICES,), (SharingRule.RATE,),
                                            (SharingRule.SERVICES, SharingRule.RATE)]),
        window_s=st.integers(0, 2**32 - 1), services=st.integers(0, 255),
        requests=st.integers(0, 255), trips=st.integers(0, 2**16 - 1)))
    kinds = draw(st.lists(st.sampled_from([*EmmAddressType, 0x85]), max_size=3, unique=True))
    windows = tuple(
        EmmWindow(kind=k, top_seq=draw(st.integers(0, 2**32 - 1)),  # type: ignore[arg-type]
                  marks=tuple(draw(st.lists(st.integers(0, 0x20), max_size=EMM_LATE_WINDOW + 1))))
        for k in kinds)
    return CardState(
        sharing=SharingSettings(policy=draw(st.sampled_from(list(SharingPolicy))),
                                tuners=draw(st.integers(0, 255)),
                                rate_tolerance=draw(st.integers(0, 255)),
                                window_s=draw(st.integers(0, 255))),
        flag=flag,
        ecms=tuple(draw(st.lists(st.builds(EcmSeen, channel_id=st.integers(0, 2**16 - 1),
                                           time_s=st.integers(0, 2**32 - 1)),
                                 max_size=ECM_RECORD_SLOTS))),
        mails=tuple(draw(st.lists(st.sampled_from(_MAILS), max_size=2, unique=True))),
        acked=tuple(draw(st.lists(st.integers(0, 2**16 - 1), max_size=64))),
        fingerprint=draw(st.sampled_from(_FINGERPRINTS)),
        emm_windows=windows)


@given(states())
@settings(max_examples=300, deadline=None)
def test_the_fast_build_equals_the_declaration(state: CardState) -> None:
    try:
        declared = build_card_state_declared(state)
    except FormatError:
        with pytest.raises(FormatError):
            build_card_state(state)
        return
    assert build_card_state(state) == declared
    assert parse_card_state(declared) == state
