"""The card's own sharing check (docs/sharing.md, "On the card"): GET DATA 30, the FLAG and
REFUSE policies (9840, SHARING_DETECTED), the limits set by EMM, the flag in the EEPROM image,
and agreement with the head-end's rule on the same ECMs."""

from __future__ import annotations

from pathlib import Path

import pytest

from cas.access import CardStatus
from cas.card.applet import Applet
from cas.card.client import CardClient
from cas.card.eeprom import Eeprom, load_card_image
from cas.card.errors import AccessDeniedError
from cas.card.transport import InProcessTransport
from cas.diag.sharing import EcmObservation, SharingLimits, detect
from cas.formats.emm import ClearSharing, SetSharing, SetStatus
from cas.formats.records import build_card_record
from cas.reasons import Reason
from cas.sharing import SharingPolicy, SharingRule

from .helpers import KEYS, NOW, SERIAL, HeadEnd, activate, make_client, make_record

WINDOW_S = 10


def ask(client: CardClient, head: HeadEnd, channel: int, at_s: int) -> Reason:
    """One ECM of ``channel`` stamped ``at_s``: OPEN or the card's refusal."""
    try:
        client.process_ecm(head.ecm(channel_id=channel, timestamp_s=at_s))
    except AccessDeniedError as exc:
        return exc.reason
    return Reason.OPEN


def ready(policy: SharingPolicy | None = None, *, tuners: int = 2,
          applet: Applet | None = None) -> tuple[Applet, CardClient, HeadEnd]:
    applet, client = make_client(applet)
    head = HeadEnd()
    activate(client, head)
    if policy is not None:
        client.process_emm(head.unique(SERIAL, SetSharing(policy=policy, tuners=tuners,
                                                          rate_tolerance=1,
                                                          window_s=WINDOW_S)))
    return applet, client, head


def test_a_fresh_card_flags_for_a_two_tuner_box_and_has_seen_nothing() -> None:
    _applet, client, _head = ready()
    info = client.sharing()
    assert info is not None
    assert (info.policy, info.tuners, info.rate_tolerance, info.window_s) == (
        SharingPolicy.FLAG, 2, 1, 10)
    assert not info.flagged and info.window_requests == 0


@pytest.mark.parametrize("policy", [SharingPolicy.FLAG, SharingPolicy.REFUSE])
def test_a_two_tuner_box_watching_and_recording_for_an_hour_is_never_flagged(
        policy: SharingPolicy) -> None:
    _applet, client, head = ready(policy)
    for period in range(360):  # one new ECM per channel per crypto-period
        t = NOW + period * WINDOW_S
        assert ask(client, head, 7, t + 1) is Reason.OPEN   # watched
        assert ask(client, head, 8, t + 4) is Reason.OPEN   # recorded
    info = client.sharing()
    assert info is not None and not info.flagged
    assert (info.window_services, info.window_requests) == (2, 2)


def test_zapping_within_the_tolerance_is_not_flagged() -> None:
    """A box zapping back and forth: 2 channels, 4 requests in a crypto-period (the limit for
    2 tuners with tolerance 1), then settling."""
    _applet, client, head = ready(SharingPolicy.REFUSE)
    for i, channel in enumerate((7, 8, 7, 8)):
        assert ask(client, head, channel, NOW + 2 * i) is Reason.OPEN
    assert ask(client, head, 8, NOW + WINDOW_S + 1) is Reason.OPEN
    info = client.sharing()
    assert info is not None and not info.flagged


def test_one_card_answering_four_boxes_is_flagged_with_its_evidence() -> None:
    _applet, client, head = ready()
    for period in range(3):
        for box, channel in enumerate((7, 8, 9, 10)):
            assert ask(client, head, channel, NOW + period * WINDOW_S + box) is Reason.OPEN
    info = client.sharing()
    assert info is not None and info.flagged
    assert info.rules == (SharingRule.SERVICES,)
    assert (info.flag_services, info.flag_requests) == (4, 4)
    assert info.flag_window_s == NOW + 2 * WINDOW_S and info.flag_trips == 3


def test_asking_too_often_for_one_channel_breaks_the_rate_rule() -> None:
    _applet, client, head = ready()
    for i in range(5):
        ask(client, head, 7, NOW + i)
    info = client.sharing()
    assert info is not None and info.rules == (SharingRule.RATE,)
    assert (info.flag_services, info.flag_requests) == (1, 5)


def test_refuse_answers_at_most_one_box_and_the_next_window_starts_afresh() -> None:
    _applet, client, head = ready(SharingPolicy.REFUSE)
    answers = [ask(client, head, channel, NOW + box)
               for box, channel in enumerate((7, 8, 9, 10))]
    assert answers == [Reason.OPEN, Reason.OPEN, Reason.SHARING_DETECTED,
                       Reason.SHARING_DETECTED]
    assert ask(client, head, 8, NOW + 5) is Reason.OPEN  # a channel already served
    info = client.sharing()
    assert info is not None and info.flagged and info.flag_services == 3
    assert (info.window_services, info.window_requests) == (2, 3)  # what was answered
    assert ask(client, head, 9, NOW + WINDOW_S) is Reason.OPEN


def test_a_locked_channel_stays_locked_for_its_own_reason_and_is_not_counted() -> None:
    _applet, client, head = ready(SharingPolicy.REFUSE)
    client.process_emm(head.unique(SERIAL, SetStatus(status=CardStatus.SUSPENDED)))
    for channel in (7, 8, 9):
        assert ask(client, head, channel, NOW) is Reason.CARD_SUSPENDED
    info = client.sharing()
    assert info is not None and not info.flagged and info.window_requests == 0


def test_policy_off_keeps_no_record() -> None:
    _applet, client, head = ready(SharingPolicy.OFF)
    for channel in (7, 8, 9, 10, 11):
        assert ask(client, head, channel, NOW) is Reason.OPEN
    info = client.sharing()
    assert info is not None and not info.flagged and info.window_requests == 0


def test_more_tuners_set_by_emm_let_a_bigger_box_through() -> None:
    _applet, client, head = ready(SharingPolicy.REFUSE, tuners=4)
    for channel in (7, 8, 9, 10):
        assert ask(client, head, channel, NOW) is Reason.OPEN
    assert ask(client, head, 11, NOW) is Reason.SHARING_DETECTED


def test_the_head_end_clears_the_flag_by_emm_and_by_taking_the_card_back() -> None:
    _applet, client, head = ready()
    for channel in (7, 8, 9):
        ask(client, head, channel, NOW)
    assert client.sharing().flagged  # type: ignore[union-attr]
    client.process_emm(head.unique(SERIAL, ClearSharing()))
    info = client.sharing()
    assert info is not None and not info.flagged and info.window_requests == 0
    for channel in (7, 8, 9):
        ask(client, head, channel, NOW + WINDOW_S)
    client.process_emm(head.unique(SERIAL, SetStatus(status=CardStatus.KILLED)))
    assert client.sharing().flagged  # type: ignore[union-attr]
    client.process_emm(head.unique(SERIAL, SetStatus(status=CardStatus.ACTIVE)))
    assert not client.sharing().flagged  # type: ignore[union-attr]


def test_the_flag_is_in_the_image_at_once_and_the_record_at_power_off(tmp_path: Path) -> None:
    image = tmp_path / "card.img"
    image.write_bytes(build_card_record(make_record()))
    applet, client, head = ready(applet=Applet(Eeprom.open(image), rom_key=KEYS.transport_key()))
    ask(client, head, 7, NOW)
    assert load_card_image(image)[1].ecms == ()  # counted in RAM, like the clock
    for channel in (8, 9):
        ask(client, head, channel, NOW + 1)
    flag = load_card_image(image)[1].flag
    assert flag is not None and flag.services == 3  # written before the answer left
    ask(client, head, 7, NOW + 2)
    applet.power_off()
    assert [e.channel_id for e in load_card_image(image)[1].ecms] == [7, 8, 9, 7]
    again = CardClient(InProcessTransport(Applet(Eeprom.open(image),
                                                 rom_key=KEYS.transport_key())))
    info = again.sharing()
    assert info is not None and info.flagged and info.window_requests == 4


def test_the_card_and_the_head_end_flag_the_same_ecms() -> None:
    """The card's verdict equals ``cas diag sharing`` on the card's own ECM log."""
    for plan in ([(7, 0), (8, 3), (7, 11), (8, 14)],                 # a 2-tuner box
                 [(7, 0), (8, 1), (9, 2), (7, 12)],                  # three boxes
                 [(7, 0), (7, 1), (7, 2), (7, 3), (7, 4), (8, 30)]):  # too often
        applet, client, head = ready()
        log: list[EcmObservation] = []
        applet.on_ecm_answered = lambda t, card, ch, log=log: log.append(  # type: ignore[misc]
            EcmObservation(time_s=t, card=card, channel=ch))
        for channel, offset in plan:
            ask(client, head, channel, NOW + offset)
        info = client.sharing()
        assert info is not None
        (finding,) = detect(log, SharingLimits(tuners=2, window_s=WINDOW_S, rate_tolerance=1))
        assert finding.rules == info.rules
