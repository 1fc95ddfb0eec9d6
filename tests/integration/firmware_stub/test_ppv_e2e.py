"""Pay-per-view end to end (docs/ppv.md): an ffmpeg stream scrambled with ECMs that carry
the event on air, a card run by the real applet, the box buying with the purchase PIN, the
signed report imported into a real store (SQLite and PostgreSQL) and billed once, the
acknowledgement EMM back to the card; replayed and forged reports refused; the event's end
locks the channel; an empty purse refuses; a pre-booked event opens without a purchase."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from cas.access import AccessCriteria, PpvEvent
from cas.billing import clock
from cas.billing.ppv import (
    ReportForgedError,
    ReportReplayedError,
    add_event,
    book_event,
    import_report,
)
from cas.formats.emm import PurseCredit
from cas.formats.ppv import parse_report
from cas.headend.teststream import TestService
from cas.reasons import Reason
from cas.store.engine import Store
from cas.store.models import (
    Account,
    Channel,
    EmmOutbox,
    EmmSequence,
    LedgerEntry,
    PpvPurchase,
)
from cas.store.repo import to_s
from firmware_stub.ppv import buy, read_report
from tests.fixtures.streams import clear_stream
from tests.integration.firmware_stub.headend import (
    DAY_S,
    START_S,
    Card,
    HeadEnd,
    emm_packets,
    insert_after,
)
from tests.unit.billing.helpers import Bench

NEWS, BASE = 101, 1
EVENT_ID = 7001
PRICE = 150
EMM_PID = 0x0BFF
CAT_PID = 1
PIN = "2468"


@pytest.fixture
def store(db_url: str) -> Store:
    return Store.open(db_url)


@pytest.fixture
def bench(store: Store) -> Bench:
    return Bench(store, "tvplus")


@pytest.fixture(scope="module")
def he() -> HeadEnd:
    return HeadEnd(seed=18)


def ppv_service(bench: Bench) -> int:
    with bench.store.reader() as s:
        return int(s.execute(select(Channel.service_id).order_by(Channel.number)).scalars()
                   .first())


def scrambled(he: HeadEnd, tmp_path_factory: pytest.TempPathFactory, ppv_sid: int, *,
              event: PpvEvent | None, start_s: int = START_S) -> bytes:
    clear = clear_stream(tmp_path_factory, [TestService(service_id=NEWS, name="News"),
                                            TestService(service_id=ppv_sid, name="Boxing")],
                         3.0)
    criteria = {NEWS: AccessCriteria(channel_id=NEWS, package_ids=(BASE,)),
                ppv_sid: AccessCriteria(channel_id=ppv_sid, package_ids=())}
    data, _ = he.scramble(clear, criteria, emm_pid=EMM_PID, start_s=start_s,
                          ppv_events={ppv_sid: [event]} if event is not None else None)
    return data


def follow_card_seq(bench: Bench, card: Card) -> None:
    """The store's unique EMM counter for the card continues after the bench's own EMMs
    (one head-end, one sequence per card)."""
    with bench.tx() as s:
        s.add(EmmSequence(address_kind="unique", address=card.serial, next_seq=card.seq + 1,
                          sent_rights_version=0))


def with_emms(stream: bytes, sections: list[bytes]) -> bytes:
    return insert_after(stream, emm_packets(EMM_PID, sections), pid=CAT_PID)


def account_balance(bench: Bench, number: str) -> int:
    with bench.store.reader() as s:
        return int(s.execute(select(Account.balance_minor)
                             .where(Account.account_number == number)).scalar_one())


def test_ippv_buy_watch_report_bill_once_and_close_the_loop(
        he: HeadEnd, bench: Bench, tmp_path_factory: pytest.TempPathFactory,
        tmp_path: Path) -> None:
    number = bench.account()
    bench.pay(number, 1_000_00)
    serial = bench.card(number)
    sid = ppv_service(bench)
    event = PpvEvent(event_id=EVENT_ID, start_s=START_S - 600, end_s=START_S + 3600,
                     price_tokens=PRICE)
    with bench.tx() as s:
        add_event(s, event_id=EVENT_ID, service_id=sid, start_s=event.start_s,
                  end_s=event.end_s, price_tokens=PRICE, title="Title fight",
                  now_s=to_s(clock.clock_now(s)))
    chip, card = he.chip(0x0B000001), he.card(serial, pin=PIN)
    stream = with_emms(scrambled(he, tmp_path_factory, sid, event=event), [
        he.pair_emm(card, chip), he.activate_emm(card, [BASE], region=1),
        he.emm(card, [PurseCredit(tokens=500, credit_limit_tokens=0)])])
    follow_card_seq(bench, card)
    box = he.boot(chip, tmp_path / "nvram.json", card)
    before = box.scan(stream)
    assert before.reasons() == {NEWS: Reason.OPEN, sid: Reason.PPV_NOT_PURCHASED}
    assert before.channel(sid).screen_code == "E40"

    result = buy(card.client, stream, channel=sid, event_id=EVENT_ID, pin=PIN,
                 ca_system_id=box.ca_system_id)
    assert result.bought and result.purse is not None and result.purse.purse_tokens == 350
    assert box.scan(stream).reasons() == {NEWS: Reason.OPEN, sid: Reason.OPEN}

    # the return path: the card's signed report, imported and billed once
    data = read_report(card.client)
    assert [p.event_id for p in parse_report(data).purchases] == [EVENT_ID]
    balance = account_balance(bench, number)
    with bench.tx() as s:
        res = import_report(s, he.keys, data, now_s=START_S, top_up_tokens=200)
    assert res.billed == (1,) and res.amount_minor == PRICE * 100
    assert account_balance(bench, number) == balance - PRICE * 100
    with pytest.raises(ReportReplayedError) as replay, bench.tx() as s:
        import_report(s, he.keys, data, now_s=START_S)
    assert replay.value.code == "PPV_REPORT_REPLAYED"
    forged = bytearray(data)
    forged[-20] ^= 0x01  # a purchase's bytes changed (its time)
    with pytest.raises(ReportForgedError), bench.tx() as s:
        import_report(s, he.keys, bytes(forged), now_s=START_S)
    # a later report that repeats the purchase (the ack not yet on the card) bills nothing
    again = read_report(card.client)
    with bench.tx() as s:
        res2 = import_report(s, he.keys, again, now_s=START_S)
    assert res2.billed == () and res2.already_billed == (1,)
    with bench.store.reader() as s:
        assert s.execute(select(func.count()).select_from(PpvPurchase)).scalar_one() == 1
        assert s.execute(select(func.count()).select_from(LedgerEntry).where(
            LedgerEntry.ref == f"ppv:{serial}:1")).scalar_one() == 1
    assert account_balance(bench, number) == balance - PRICE * 100

    # closing the loop: the acknowledgement EMM clears the records and tops the purse up; it
    # is queued for the live carousel as a one-shot PPV row
    assert res.ack_emm is not None
    with bench.store.reader() as s:
        queued = s.execute(select(EmmOutbox.kind, EmmOutbox.payload).where(
            EmmOutbox.card_serial == serial, EmmOutbox.cause == "ppv-report")
            .order_by(EmmOutbox.id)).all()
    # (the second import acknowledged the repeated record again)
    assert [(k, p) for k, p in queued] == [("ppv", res.ack_emm), ("ppv", res2.ack_emm)]
    card.client.process_emm(res.ack_emm)
    purse = card.client.purse()
    assert purse.purchases == 0 and purse.purse_tokens == 550 and purse.rights == 1

    # the event ends: the next programme's ECMs carry no event, the channel locks
    later = scrambled(he, tmp_path_factory, sid, event=None, start_s=event.end_s + 10)
    after = box.scan(later)
    assert after.reasons() == {NEWS: Reason.OPEN, sid: Reason.PPV_EVENT_ENDED}
    assert after.channel(sid).screen_code == "E42"


def test_empty_purse_refuses_the_purchase(he: HeadEnd, bench: Bench,
                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    serial = bench.card(bench.account())
    sid = ppv_service(bench)
    event = PpvEvent(event_id=EVENT_ID + 1, start_s=START_S - 600, end_s=START_S + 3600,
                     price_tokens=PRICE)
    chip, card = he.chip(0x0B000002), he.card(serial, pin=PIN)
    stream = with_emms(scrambled(he, tmp_path_factory, sid, event=event), [
        he.pair_emm(card, chip), he.activate_emm(card, [BASE], region=1),
        he.emm(card, [PurseCredit(tokens=100, credit_limit_tokens=20)])])
    box = he.boot(chip, None, card)
    box.scan(stream)
    result = buy(card.client, stream, channel=sid, event_id=event.event_id, pin=PIN,
                 ca_system_id=box.ca_system_id)
    assert not result.bought and result.reason is Reason.PURSE_EMPTY
    assert card.client.purse().purse_tokens == 100
    assert box.scan(stream).channel(sid).reason is Reason.PPV_NOT_PURCHASED


def test_prebooked_event_opens_without_a_purchase(he: HeadEnd, bench: Bench,
                                                  tmp_path_factory: pytest.TempPathFactory
                                                  ) -> None:
    number = bench.account()
    bench.pay(number, 1_000_00)
    serial = bench.card(number)
    sid = ppv_service(bench)
    event = PpvEvent(event_id=EVENT_ID + 2, start_s=START_S - 600, end_s=START_S + 3600,
                     price_tokens=PRICE, impulse=False)
    balance = account_balance(bench, number)
    with bench.tx() as s:
        add_event(s, event_id=event.event_id, service_id=sid, start_s=event.start_s,
                  end_s=event.end_s, price_tokens=PRICE, impulse=False, now_s=START_S - DAY_S)
        booking = book_event(s, he.keys, serial=serial, event_id=event.event_id,
                             now_s=START_S - DAY_S)
    assert account_balance(bench, number) == balance - PRICE * 100
    chip, card = he.chip(0x0B000003), he.card(serial, pin=PIN)
    card.client.process_emm(booking.emm)  # the store's first EMM for this card: seq 1
    card.seq = 1
    stream = with_emms(scrambled(he, tmp_path_factory, sid, event=event), [
        he.pair_emm(card, chip), he.activate_emm(card, [BASE], region=1)])
    box = he.boot(chip, None, card)
    assert box.scan(stream).reasons() == {NEWS: Reason.OPEN, sid: Reason.OPEN}
    assert card.client.purse().purchases == 0 and card.client.purse().purse_tokens == 0
    # an impulse purchase of a pre-book-only event is refused: the ECM marks it not buyable
    other = he.card(serial + 1000, pin=PIN)
    assert not buy(other.client, stream, channel=sid, event_id=event.event_id, pin=PIN,
                   ca_system_id=box.ca_system_id).bought
