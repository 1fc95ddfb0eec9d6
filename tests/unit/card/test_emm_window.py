"""Late command EMMs (cas.card.emm_window, docs/card.md "Late command EMMs"): a command EMM
whose datagram was lost while a newer EMM got through is applied once when it comes round
again; rights never roll back; replays and anything outside the window stay 9811.  All
through the real APDU path (CardClient -> InProcessTransport -> Applet)."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import pytest

from cas.access import CardStatus, Entitlement
from cas.card.applet import Applet
from cas.card.client import CardClient
from cas.card.eeprom import Eeprom, build_image
from cas.card.errors import MessageRefusedError
from cas.errors import CasError
from cas.formats.cardstate import EMM_LATE_WINDOW, build_card_state
from cas.formats.emm import (
    AddEntitlement,
    ClearSharing,
    EmmAddressType,
    EmmCommand,
    Fingerprint,
    FingerprintKind,
    OsdMail,
    OsdMessage,
    PpvEventRight,
    PurseCredit,
    SetRegion,
    SetSharing,
    SetStatus,
)
from cas.formats.records import build_card_record
from cas.sharing import SharingPolicy

from .helpers import DAY, KEYS, NOW, SERIAL, HeadEnd, make_applet, make_client, make_record

MAIL = OsdMail(message_id=41, priority=2, start_s=0, duration_s=30, text="Оплатите счёт")
TOP_UP = PurseCredit(tokens=70, credit_limit_tokens=5)
BOOKING = PpvEventRight(event_id=9001, channel_id=7, start_s=NOW, end_s=NOW + 3600)


def refused(client: CardClient, section: bytes) -> int:
    with pytest.raises(MessageRefusedError) as info:
        client.process_emm(section)
    return info.value.sw


def rights(region: int = 1) -> list[EmmCommand]:
    """A rights EMM's commands, as the carousel sends them (the card's whole state)."""
    return [SetStatus(status=CardStatus.ACTIVE), SetRegion(region=region),
            AddEntitlement(package_id=10, start_s=NOW - DAY, end_s=NOW + 30 * DAY)]


def card_at(seq: int) -> tuple[Applet, CardClient, HeadEnd]:
    """A card whose unique counter is at ``seq`` after a rights EMM of that number."""
    applet, client = make_client()
    head = HeadEnd()
    client.process_emm(head.unique(SERIAL, *rights(), seq=seq))
    return applet, client, head


def test_a_lost_command_emm_is_applied_when_it_comes_round_again() -> None:
    _applet, client, head = card_at(10)
    booking = head.unique(SERIAL, TOP_UP, BOOKING, MAIL, seq=11)  # its datagram is lost
    client.process_emm(head.unique(SERIAL, *rights(), seq=12))
    client.process_emm(booking)  # the next cycle: 11 after 12
    purse = client.purse()
    assert (purse.purse_tokens, purse.credit_limit_tokens, purse.rights) == (70, 5, 1)
    mail = client.osd_mail()
    assert mail is not None and mail.message_id == MAIL.message_id
    assert client.osd_message() == MAIL.text
    assert client.counters().emm_seq_unique == 12  # the counter stays where it was
    assert refused(client, booking) == 0x9811  # applied once
    assert client.purse().purse_tokens == 70
    client.ack_osd(MAIL.message_id)
    assert refused(client, booking) == 0x9811
    assert client.osd_mail() is None


def test_an_older_rights_emm_is_still_refused() -> None:
    applet, client, head = card_at(10)
    lost = head.unique(SERIAL, *rights(region=2), seq=11)
    mixed = head.unique(SERIAL, TOP_UP, SetRegion(region=3), seq=12)
    client.process_emm(head.unique(SERIAL, *rights(region=4), seq=13))
    assert refused(client, lost) == 0x9811
    assert refused(client, mixed) == 0x9811  # one rights-state command is enough
    assert applet.record.region == 4 and client.purse().purse_tokens == 0
    # refused, not spent: the window still has them as not applied
    client.process_emm(head.unique(SERIAL, TOP_UP, seq=11))
    assert client.purse().purse_tokens == 70


def test_a_replay_of_anything_applied_is_refused() -> None:
    _applet, client, head = card_at(10)
    first = head.unique(SERIAL, TOP_UP, seq=11)
    top = head.unique(SERIAL, TOP_UP, seq=12)
    client.process_emm(first)
    client.process_emm(top)
    assert refused(client, top) == 0x9811  # the counter itself
    assert refused(client, first) == 0x9811  # applied in order, below the counter
    assert client.purse().purse_tokens == 140


def test_outside_the_window_is_refused() -> None:
    _applet, client, head = card_at(10)
    oldest = head.unique(SERIAL, TOP_UP, seq=11)
    edge = head.unique(SERIAL, TOP_UP, seq=12)
    client.process_emm(head.unique(SERIAL, *rights(), seq=12 + EMM_LATE_WINDOW))
    assert refused(client, oldest) == 0x9811  # EMM_LATE_WINDOW + 1 behind
    client.process_emm(edge)  # exactly EMM_LATE_WINDOW behind
    assert client.purse().purse_tokens == 70
    # nor is anything at or below the counter the card had before its window began
    assert refused(client, head.unique(SERIAL, TOP_UP, seq=10)) == 0x9811


def test_the_window_works_across_the_u32_wrap() -> None:
    near_end = 2**32 - 3
    _applet, client = make_client(make_applet(dataclasses.replace(
        make_record(), emm_seq_unique=near_end)))
    head = HeadEnd()
    lost = [head.unique(SERIAL, TOP_UP, seq=s) for s in (2**32 - 2, 2**32 - 1, 0)]
    client.process_emm(head.unique(SERIAL, *rights(), seq=1))  # 2^32 + 1 on the wire
    for section in lost:
        client.process_emm(section)
    assert client.purse().purse_tokens == 3 * 70
    for section in lost:
        assert refused(client, section) == 0x9811
    # the card's old counter (before the wrap) is older than what the window knows
    assert refused(client, head.unique(SERIAL, TOP_UP, seq=near_end)) == 0x9811


def test_windows_are_per_address_type() -> None:
    applet, client, head = card_at(10)
    rec = applet.record
    lost = head.global_(OsdMessage(text="global 1"), seq=1)
    client.process_emm(head.global_(OsdMessage(text="global 2"), seq=2))
    client.process_emm(head.shared(rec.shared_address, [rec.member_position],
                                   TOP_UP, seq=1))
    client.process_emm(lost)  # global 1 late: the global window knows it
    # global 2 set the text after global 1 was aired: the newest stays on screen
    assert client.osd_message() == "global 2"
    assert refused(client, lost) == 0x9811
    assert client.counters().emm_seq_global == 2


def test_sharing_osd_and_fingerprint_commands_of_a_late_emm_take_effect() -> None:
    _applet, client, head = card_at(10)
    fingerprint = Fingerprint(kind=FingerprintKind.OVERT, start_s=0, duration_s=20,
                              x_pct=10, y_pct=80)
    late = head.unique(SERIAL, SetSharing(policy=SharingPolicy.REFUSE, tuners=4,
                                          rate_tolerance=2, window_s=8),
                       OsdMessage(text="late"), fingerprint, seq=11)
    client.process_emm(head.unique(SERIAL, *rights(), seq=12))
    client.process_emm(late)
    sharing = client.sharing()
    assert sharing is not None
    assert (sharing.policy, sharing.tuners, sharing.rate_tolerance, sharing.window_s) == (
        SharingPolicy.REFUSE, 4, 2, 8)
    assert client.osd_message() == "late"
    assert client.fingerprint() == fingerprint


def test_a_late_emm_does_not_undo_the_settings_of_a_newer_one() -> None:
    _applet, client, head = card_at(10)
    old_fp = Fingerprint(kind=FingerprintKind.OVERT, start_s=0, duration_s=5, x_pct=1, y_pct=1)
    new_fp = Fingerprint(kind=FingerprintKind.COVERT, start_s=0, duration_s=9, x_pct=90,
                         y_pct=90)
    late = head.unique(SERIAL, SetSharing(policy=SharingPolicy.OFF, tuners=1, rate_tolerance=0,
                                          window_s=10),
                       PurseCredit(tokens=30, credit_limit_tokens=0), MAIL, old_fp,
                       ClearSharing(), seq=11)
    client.process_emm(head.unique(SERIAL, SetSharing(policy=SharingPolicy.REFUSE, tuners=4,
                                                      rate_tolerance=2, window_s=8),
                                   PurseCredit(tokens=100, credit_limit_tokens=50),
                                   OsdMessage(text="newer"), new_fp, seq=12))
    client.process_emm(late)
    sharing = client.sharing()
    assert sharing is not None and (sharing.policy, sharing.tuners) == (SharingPolicy.REFUSE, 4)
    purse = client.purse()
    assert (purse.purse_tokens, purse.credit_limit_tokens) == (130, 50)  # tokens, not limit
    assert client.osd_message() == "newer"
    mail = client.osd_mail()  # the mailbox keeps the late message by its id
    assert mail is not None and mail.message_id == MAIL.message_id
    assert client.fingerprint() == new_fp


def test_a_lost_record_write_does_not_load_the_purse_twice() -> None:
    """The PPV file is written first, marked with the EMM; if the record write (with the
    window) is lost, the late EMM comes again and its PPV commands are not applied twice."""
    applet, client, head = card_at(10)
    late = head.unique(SERIAL, TOP_UP, seq=11)
    client.process_emm(head.unique(SERIAL, *rights(), seq=12))
    record, state = applet.eeprom.record, applet.eeprom.state
    client.process_emm(late)
    applet.eeprom.commit(record, state)  # as if the EEPROM write had not happened
    client.process_emm(late)
    assert client.purse().purse_tokens == 70
    assert refused(client, late) == 0x9811


def test_the_window_survives_a_restart_from_the_image(tmp_path: Path) -> None:
    image = tmp_path / "card.img"
    applet, client = make_client(Applet(Eeprom(make_record(), image),
                                        rom_key=KEYS.transport_key()))
    head = HeadEnd()
    client.process_emm(head.unique(SERIAL, *rights(), seq=10))
    late = head.unique(SERIAL, TOP_UP, seq=11)
    applied = head.unique(SERIAL, TOP_UP, seq=12)
    client.process_emm(applied)
    client.process_emm(head.unique(SERIAL, *rights(), seq=13))

    reopened, client2 = make_client(Applet(Eeprom.open(image), rom_key=KEYS.transport_key()))
    assert reopened.eeprom.state.emm_windows == applet.eeprom.state.emm_windows
    assert refused(client2, applied) == 0x9811
    client2.process_emm(late)
    assert client2.purse().purse_tokens == 140


def test_an_image_without_a_window_refuses_late_emms_until_its_next_emm(tmp_path: Path) -> None:
    """An image written before the windows (no state area, or a version 1 one) opens with
    none: the card does not know what it applied below its counter, so nothing below it is
    late; from its next applied EMM on, the numbers it skips are."""
    rec = dataclasses.replace(make_record(), emm_seq_unique=20)
    image = tmp_path / "old.img"
    image.write_bytes(build_card_record(rec))
    _applet, client = make_client(Applet(Eeprom.open(image), rom_key=KEYS.transport_key()))
    head = HeadEnd()
    assert refused(client, head.unique(SERIAL, TOP_UP, seq=19)) == 0x9811
    client.process_emm(head.unique(SERIAL, *rights(), seq=22))
    assert refused(client, head.unique(SERIAL, TOP_UP, seq=20)) == 0x9811  # its old counter
    client.process_emm(head.unique(SERIAL, TOP_UP, seq=21))  # skipped by 22: late
    assert client.purse().purse_tokens == 70


def test_the_window_is_written_with_the_record_in_one_image(tmp_path: Path) -> None:
    applet, client, head = card_at(10)
    client.process_emm(head.unique(SERIAL, *rights(), seq=12))
    writes = applet.eeprom.writes
    client.process_emm(head.unique(SERIAL, TOP_UP, seq=11))
    assert applet.eeprom.writes == writes + 1
    data = build_image(applet.eeprom.record, applet.eeprom.state)
    assert data.endswith(build_card_state(applet.eeprom.state))
    window = applet.eeprom.state.emm_window(EmmAddressType.UNIQUE)
    assert window is not None and window.top_seq == 12
    assert [bool(m) for m in window.marks[:3]] == [True, True, True]


def test_an_expired_late_emm_is_9813() -> None:
    _applet, client, head = card_at(10)
    late = head.unique(SERIAL, TOP_UP, seq=11, not_after_s=NOW - 1)
    with contextlib.suppress(CasError):  # not paired (9809), but its time is the card's clock
        client.process_ecm(head.ecm(timestamp_s=NOW))
    assert client.counters().last_ecm_s == NOW
    client.process_emm(head.unique(SERIAL, *rights(), seq=12))
    assert refused(client, late) == 0x9813
    assert client.purse().purse_tokens == 0


def test_entitlements_are_untouched_by_a_late_emm() -> None:
    applet, client, head = card_at(10)
    client.process_emm(head.unique(SERIAL, *rights(region=5), seq=12))
    before = applet.record.entitlements
    client.process_emm(head.unique(SERIAL, BOOKING, seq=11))
    assert applet.record.entitlements == before == (
        Entitlement(package_id=10, start_s=NOW - DAY, end_s=NOW + 30 * DAY),)
    assert applet.record.region == 5
