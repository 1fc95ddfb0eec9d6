"""Entitlement state per card at T: one pure function of the store, the same for one card
(``card_rights_at``) and for the whole base (``iter_card_states``); and the rights journal."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cas.access import CardStatus, Entitlement
from cas.billing import accounts, service, state
from cas.errors import BillingError
from cas.formats.chipid import ChipIdRecord
from cas.reasons import Reason
from cas.store.engine import Store
from cas.store.errors import RecordConflict, RecordNotFound
from cas.store.models import Subscription
from cas.store.repo import get_card, iter_rights_changes
from tests.unit.billing.helpers import DAY, Bench

DAY_S = 86_400


def test_bulk_and_single_card_agree_and_stream_in_group_order(bench: Callable[[str], Bench]
                                                              ) -> None:
    tv = bench("tvplus")
    a, b = tv.account(), tv.account()
    cards = [tv.card(a), tv.card(a), tv.card(b), tv.card(), tv.card(b)]
    tv.pay(a, 10_000_00)
    tv.call(service.subscribe, account_number=a, package="optimal")
    tv.call(service.subscribe, account_number=a, package="vip-comedy")
    with tv.tx() as s:
        accounts.kill_card(s, serial=cards[4], at=tv.now())
        accounts.set_kids_profile(s, serial=cards[1], on=True, at=tv.now())
    at = tv.now() + DAY
    with tv.store.reader() as s:
        bulk = list(state.iter_card_states(s, at))
        singles = {c: state.card_rights_at(s, c, at) for c in cards}
        some = [x.serial for x in state.iter_card_states(s, at, serials=[cards[2], cards[0]])]
    assert [x.serial for x in bulk] == cards  # registered in order: group 1, positions 0..4
    assert [(x.shared_address, x.member_position) for x in bulk] == [(1, i) for i in range(5)]
    assert {x.serial: x.rights for x in bulk} == singles
    assert some == [cards[0], cards[2]]
    by = {x.serial: x.rights for x in bulk}
    t0 = int(tv.now().timestamp())
    assert by[cards[0]].status == CardStatus.ACTIVE
    assert by[cards[0]].entitlements == (
        Entitlement(package_id=2, start_s=t0, end_s=t0 + 30 * 86400),
        Entitlement(package_id=13, start_s=t0, end_s=t0 + 30 * 86400))
    assert by[cards[1]].maturity_limit == 12
    assert by[cards[2]].status == CardStatus.ACTIVE and by[cards[2]].entitlements == ()
    assert by[cards[3]].status == CardStatus.INACTIVE
    assert by[cards[4]].status == CardStatus.KILLED


def test_status_is_a_function_of_time(bench: Callable[[str], Bench]) -> None:
    ntv = bench("ntvplus")
    acc = ntv.account()
    card = ntv.card(acc)
    ntv.pay(acc, 599_00)
    ntv.call(service.subscribe, account_number=acc, package="basic")
    t0 = ntv.now()
    with ntv.tx() as s:
        service.suspend(s, account_number=acc, at=t0 + 2 * DAY, until=t0 + 12 * DAY)
    assert ntv.rights(card, t0 + DAY).status == CardStatus.ACTIVE
    assert ntv.rights(card, t0 + 3 * DAY).status == CardStatus.SUSPENDED
    assert ntv.rights(card, t0 + 13 * DAY).status == CardStatus.ACTIVE  # planned end
    assert ntv.why(card, 1, at=t0 + 40 * DAY) == Reason.ENTITLEMENT_EXPIRED


def test_pending_and_switched_away_packages_carry_no_window(bench: Callable[[str], Bench]) -> None:
    atv = bench("atvplus")
    acc = atv.account()
    card = atv.card(acc)
    atv.pay(acc, 10_00, package="sport")  # pending
    assert atv.rights(card).entitlements == ()
    atv.pay(acc, 11_00)
    atv.advance(days=3)
    atv.call(service.switch_package, account_number=acc, package="standard")
    ents = atv.rights(card).entitlements
    assert [e.package_id for e in ents] == [1]
    assert atv.why(card, 130) == Reason.CHANNEL_NOT_IN_PACKAGE  # a +Sport-only channel


def test_two_windows_of_one_package_come_out_by_start_whatever_the_row_order(
        bench: Callable[[str], Bench]) -> None:
    # The later window is inserted first, so the database returns it first; the state lists
    # windows by package, then start, then end (the EMM fast path's SQL orders the same way).
    tv = bench("tvplus")
    acc = tv.account()
    card = tv.card(acc)
    t0 = int(tv.now().timestamp())
    with tv.tx() as s:
        account_id = get_card(s, card).account_id
        assert account_id is not None
        s.add_all(Subscription(account_id=account_id, package_id=2, status="expired",
                               start_s=t0 - start * DAY_S, paid_until_s=t0 - end * DAY_S,
                               created_at_s=t0) for start, end in ((20, 10), (50, 40)))
    assert tv.rights(card).entitlements == (
        Entitlement(package_id=2, start_s=t0 - 50 * DAY_S, end_s=t0 - 40 * DAY_S),
        Entitlement(package_id=2, start_s=t0 - 20 * DAY_S, end_s=t0 - 10 * DAY_S))


def test_every_change_of_rights_is_journalled(bench: Callable[[str], Bench]) -> None:
    tv = bench("tvplus")
    acc = tv.account()
    card = tv.card(acc)
    with tv.store.reader() as s:
        start = max((r.id for r in iter_rights_changes(s)), default=0)
        v0 = accounts.card_view(s, get_card(s, card)).rights_version
    tv.pay(acc, 4_000_00)  # one month of "start" (2,490) and change
    tv.call(service.subscribe, account_number=acc, package="start")
    with tv.tx() as s:
        accounts.set_kids_profile(s, serial=card, on=True, at=tv.now())
        accounts.set_card_region(s, serial=card, region=643, at=tv.now())
        accounts.import_boxes(s, [ChipIdRecord(chip_id=5, vendor="v", model="m",
                                               wrapped_csk=b"\0" * 24)], at=tv.now())
        accounts.pair_card(s, serial=card, chip_id=5, at=tv.now())
    tv.advance(days=30)  # renewal fails: financial block
    with tv.store.reader() as s:
        causes = [r.cause for r in iter_rights_changes(s, after_id=start)]
        v1 = accounts.card_view(s, get_card(s, card)).rights_version
    assert causes == ["subscribe", "maturity", "region", "pair", "financial_block"]
    assert v1 == v0 + len(causes)
    # Money that changes nothing the card sees is not a rights change.
    tv.pay(acc, 1_00)
    with tv.store.reader() as s:
        assert [r.cause for r in iter_rights_changes(s, after_id=start)][-1] == "financial_block"


def test_why_reports_a_card_in_the_wrong_box(bench: Callable[[str], Bench]) -> None:
    mts = bench("mts")
    acc = mts.account()
    card = mts.card(acc)
    mts.pay(acc, 190_00)
    mts.call(service.subscribe, account_number=acc, package="basic")
    with mts.tx() as s:
        accounts.import_boxes(s, [ChipIdRecord(chip_id=c, vendor="v", model="m",
                                               wrapped_csk=bytes([c]) * 24) for c in (1, 2)],
                              at=mts.now())
        accounts.pair_card(s, serial=card, chip_id=1, at=mts.now())
    assert mts.why(card, 1, chip_id=1) == Reason.OPEN
    assert mts.why(card, 1, chip_id=2) == Reason.PAIRING_MISMATCH
    assert mts.why(card, 26, chip_id=2) == Reason.CHANNEL_NOT_IN_PACKAGE  # the card's own answer


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(st.tuples(st.sampled_from(["pay", "sub", "days", "promise", "off", "on"]),
                              st.integers(1, 40)), max_size=12))
def test_ledger_always_reproduces_the_balance(store: Store, ops: list[tuple[str, int]]) -> None:
    """Whatever happens to an account, its ledger adds up to its balance row by row."""
    cached = _BENCHES.get(id(store))
    if cached is None or cached[0] is not store:
        cached = _BENCHES[id(store)] = (store, Bench(store, "ntvplus"))
    ntv = cached[1]
    acc = ntv.account()
    for op, n in ops:
        try:
            if op == "pay":
                ntv.pay(acc, n * 37_00)
            elif op == "sub":
                ntv.call(service.subscribe, account_number=acc,
                         package=["basic", "sport", "kino"][n % 3])
            elif op == "days":
                ntv.advance(days=n)
            elif op == "promise":
                ntv.call(service.promise, account_number=acc)
            else:
                ntv.call(service.set_renewal, account_number=acc, on=op == "on")
        except (RecordConflict, RecordNotFound, BillingError):
            pass
    stmt = ntv.statement(acc)
    running = 0
    for line in stmt.lines:
        running += line.amount_minor
        assert line.balance_after_minor == running
    assert running == ntv.balance(acc) == stmt.closing_balance_minor


_BENCHES: dict[int, tuple[Store, Bench]] = {}


def test_the_one_statement_balance_read_equals_the_orm_one(mts: Bench) -> None:
    from cas.billing.statement import balance_fast
    from cas.store.errors import RecordNotFound

    acc = mts.account()
    mts.pay(acc, 12_345)
    assert mts.balance_view(acc).balance_minor == 12_345  # balance_view compares both reads
    with mts.store.read_engine.connect() as conn:
        for bad in ("999999999", "12a", " "):
            with pytest.raises(RecordNotFound, match="unknown account"):
                balance_fast(conn, account_number=bad)
