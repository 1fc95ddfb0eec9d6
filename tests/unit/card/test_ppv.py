"""The card's pay-per-view: pre-booked rights, IPPV purchase with the PIN, the purse and its
credit limit, the signed purchase report and its acknowledgement (docs/ppv.md)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cas.access import PpvEvent
from cas.card.applet import Applet
from cas.card.client import CardClient
from cas.card.eeprom import Eeprom
from cas.card.errors import AccessDeniedError, CardCommandError, PinBlockedError, WrongPinError
from cas.card.ppv import PpvFile
from cas.crypto.ppv import report_key, verify_report_tag
from cas.errors import AuthenticationError
from cas.formats.emm import PpvEventRight, PpvReportAck, PurseCredit
from cas.formats.ppv import (
    PPV_PURCHASE_SLOTS,
    parse_ppv_file,
    parse_report,
    report_clear_bytes,
    report_nonce,
)
from cas.reasons import Reason
from tests.unit.card.helpers import KEYS, NOW, PIN, SERIAL, HeadEnd, activate, make_client

CH = 7
EVENT = PpvEvent(event_id=5001, start_s=NOW - 600, end_s=NOW + 3600, price_tokens=150)


@pytest.fixture
def head() -> HeadEnd:
    return HeadEnd()


def ppv_ecm(head: HeadEnd, event: PpvEvent | None = EVENT, *, at: int = NOW) -> bytes:
    """An ECM of the PPV channel: no package opens it, only the event."""
    return head.ecm(channel_id=CH, packages=(), timestamp_s=at, ppv_event=event)


def card_with_purse(head: HeadEnd, tokens: int = 500,
                    limit: int = 0) -> tuple[Applet, CardClient]:
    applet, client = make_client()
    activate(client, head)
    client.process_emm(head.unique(SERIAL, PurseCredit(tokens=tokens, credit_limit_tokens=limit)))
    return applet, client


def test_ppv_ecm_locks_until_bought_then_opens_and_debits(head: HeadEnd) -> None:
    _applet, client = card_with_purse(head)
    with pytest.raises(AccessDeniedError) as exc:
        client.process_ecm(ppv_ecm(head))
    assert exc.value.reason is Reason.PPV_NOT_PURCHASED and exc.value.sw == 0x9820
    purse = client.ppv_buy(PIN, EVENT.event_id, ppv_ecm(head))
    assert purse.purse_tokens == 350 and purse.purchases == 1 and purse.rights == 1
    assert len(client.process_ecm(ppv_ecm(head))) == 40
    # pressing "buy" again costs nothing
    assert client.ppv_buy(PIN, EVENT.event_id, ppv_ecm(head)).purse_tokens == 350


def test_event_over_locks_with_ppv_event_ended(head: HeadEnd) -> None:
    _, client = card_with_purse(head)
    client.ppv_buy(PIN, EVENT.event_id, ppv_ecm(head))
    # the head-end overruns: the ECM still carries the event after its end
    with pytest.raises(AccessDeniedError) as exc:
        client.process_ecm(ppv_ecm(head, at=EVENT.end_s))
    assert exc.value.reason is Reason.PPV_EVENT_ENDED
    # the next programme: the ECM carries no event, the card's only right there has ended
    with pytest.raises(AccessDeniedError) as exc:
        client.process_ecm(ppv_ecm(head, None, at=EVENT.end_s + 60))
    assert exc.value.reason is Reason.PPV_EVENT_ENDED


def test_purse_empty_refuses_the_purchase(head: HeadEnd) -> None:
    applet, client = card_with_purse(head, tokens=100, limit=40)
    with pytest.raises(AccessDeniedError) as exc:
        client.ppv_buy(PIN, EVENT.event_id, ppv_ecm(head))
    assert exc.value.reason is Reason.PURSE_EMPTY and exc.value.sw == 0x9821
    assert applet.ppv.state.purse_tokens == 100 and applet.ppv.state.purchases == ()
    # the credit limit lets the purse go below zero, down to minus the limit
    client.process_emm(head.unique(SERIAL, PurseCredit(tokens=0, credit_limit_tokens=50)))
    assert client.ppv_buy(PIN, EVENT.event_id, ppv_ecm(head)).purse_tokens == -50


def test_wrong_pin_counts_down_the_parental_pin_counter(head: HeadEnd) -> None:
    applet, client = card_with_purse(head)
    with pytest.raises(WrongPinError) as exc:
        client.ppv_buy("9999", EVENT.event_id, ppv_ecm(head))
    assert exc.value.tries_left == 2 and applet.record.pin_retries_left == 2
    assert applet.ppv.state.purse_tokens == 500
    for _ in range(2):
        with pytest.raises((WrongPinError, PinBlockedError)):
            client.ppv_buy("9999", EVENT.event_id, ppv_ecm(head))
    with pytest.raises(PinBlockedError):  # blocked: the right PIN does not buy either
        client.ppv_buy(PIN, EVENT.event_id, ppv_ecm(head))
    assert applet.ppv.state.purchases == ()


def test_event_not_on_air_is_refused(head: HeadEnd) -> None:
    _, client = card_with_purse(head)
    for ecm, want in ((ppv_ecm(head, None), Reason.PPV_NOT_ON_AIR),
                      (ppv_ecm(head, PpvEvent(event_id=9, start_s=NOW - 60, end_s=NOW + 60,
                                              price_tokens=1)), Reason.PPV_NOT_ON_AIR),
                      (ppv_ecm(head, PpvEvent(event_id=EVENT.event_id, start_s=NOW - 60,
                                              end_s=NOW + 60, price_tokens=1, impulse=False)),
                       Reason.PPV_NOT_ON_AIR),
                      (ppv_ecm(head, EVENT, at=EVENT.end_s + 5), Reason.PPV_EVENT_ENDED)):
        with pytest.raises(AccessDeniedError) as exc:
            client.ppv_buy(PIN, EVENT.event_id, ecm)
        assert exc.value.reason is want


def test_prebooked_event_opens_without_a_purchase(head: HeadEnd) -> None:
    applet, client = make_client()
    activate(client, head)
    client.process_emm(head.unique(SERIAL, PpvEventRight(
        event_id=EVENT.event_id, channel_id=CH, start_s=EVENT.start_s, end_s=EVENT.end_s)))
    assert len(client.process_ecm(ppv_ecm(head))) == 40
    assert applet.ppv.state.purchases == () and applet.ppv.state.purse_tokens == 0


def test_report_is_authentic_monotonic_and_acknowledged(head: HeadEnd) -> None:
    applet, client = card_with_purse(head)
    client.ppv_buy(PIN, EVENT.event_id, ppv_ecm(head))
    first, second = parse_report(client.ppv_report()), parse_report(client.ppv_report())
    assert (first.report_counter, second.report_counter) == (1, 2)
    assert first.serial == SERIAL and [p.event_id for p in first.purchases] == [EVENT.event_id]
    key = report_key(KEYS.cuk(SERIAL))
    verify_report_tag(key, report_nonce(2), report_clear_bytes(second), second.tag)
    forged = dataclasses.replace(second, purse_tokens=second.purse_tokens + 100)
    with pytest.raises(AuthenticationError):  # a changed field does not authenticate
        verify_report_tag(key, report_nonce(2), report_clear_bytes(forged), second.tag)
    # the head-end acknowledges: the records go, the right stays
    client.process_emm(head.unique(SERIAL, PpvReportAck(up_to_purchase_seq=1)))
    assert applet.ppv.state.purchases == () and len(applet.ppv.state.rights) == 1
    assert parse_report(client.ppv_report()).purchases == ()


def test_full_purchase_records_refuse_until_acknowledged(head: HeadEnd) -> None:
    _applet, client = card_with_purse(head, tokens=10_000)
    for i in range(PPV_PURCHASE_SLOTS):
        ev = PpvEvent(event_id=100 + i, start_s=NOW - 60, end_s=NOW + 60, price_tokens=1)
        client.ppv_buy(PIN, ev.event_id, ppv_ecm(head, ev))
    ev = PpvEvent(event_id=999, start_s=NOW - 60, end_s=NOW + 60, price_tokens=1)
    with pytest.raises(CardCommandError) as exc:
        client.ppv_buy(PIN, ev.event_id, ppv_ecm(head, ev))
    assert exc.value.sw == 0x6A84


def test_ppv_file_survives_a_restart(head: HeadEnd, tmp_path: Path) -> None:
    from tests.unit.card.helpers import make_record

    image = tmp_path / "card.img"
    applet = Applet(Eeprom(make_record(), image), rom_key=KEYS.transport_key())
    _, client = make_client(applet)
    activate(client, head)
    client.process_emm(head.unique(SERIAL, PurseCredit(tokens=300, credit_limit_tokens=0)))
    client.ppv_buy(PIN, EVENT.event_id, ppv_ecm(head))
    on_disk = parse_ppv_file((tmp_path / "card.img.ppv").read_bytes())
    assert on_disk.purse_tokens == 150 and len(on_disk.purchases) == 1
    again = Applet(Eeprom(applet.record, image), rom_key=KEYS.transport_key(),
                   ppv=PpvFile(tmp_path / "card.img.ppv"))
    assert again.ppv.state == on_disk


def test_emm_with_ppv_commands_is_not_applied_twice(head: HeadEnd) -> None:
    """The PPV file is marked with the EMM it applied: if the record write (the seq) was
    lost, the same EMM again does not load the purse twice."""
    applet, client = make_client()
    activate(client, head)
    emm = head.unique(SERIAL, PurseCredit(tokens=70, credit_limit_tokens=0))
    before = applet.record
    client.process_emm(emm)
    applet.eeprom.commit(dataclasses.replace(applet.record,
                                             emm_seq_unique=before.emm_seq_unique))
    client.process_emm(emm)
    assert applet.ppv.state.purse_tokens == 70
