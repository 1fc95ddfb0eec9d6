"""ATV+ (seed 002): payment by card number with a chosen package, payment-card denominations,
activation only when the balance covers the package, the 30-day switch lock with the unused
days credited back.  Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cas.access import CardStatus
from cas.billing import service
from cas.errors import BillingError, ValidationError
from cas.reasons import Reason
from cas.store.errors import RecordConflict, RecordNotFound
from tests.unit.billing.helpers import Bench

AZN = 100


@pytest.fixture
def atv(bench: Callable[[str], Bench]) -> Bench:
    return bench("atvplus")


def test_the_seed_example_exactly(atv: Bench) -> None:
    """1 + 10 = 11 < 12: not active; + 10 = 21: 12 debited, active, 9 left."""
    acc = atv.account(surname="Mammadov", name="Elvin")
    card = atv.card(acc)
    atv.pay(card, 1 * AZN, by="card", method="terminal")
    assert atv.balance(acc) == 100

    r1 = atv.pay(card, 10 * AZN, by="card", method="payment_card", package="sport")
    assert r1.balance_minor == 1100
    assert r1.activated == () and r1.pending == ("sport",)
    assert atv.subs(acc)["sport"].status == "pending"
    assert atv.rights(card).entitlements == ()
    assert atv.why(card, 121) == Reason.NOT_SUBSCRIBED

    r2 = atv.pay(card, 10 * AZN, by="card", method="payment_card", package="sport")
    assert r2.activated == ("sport",)
    assert r2.balance_minor == 900
    assert atv.subs(acc)["sport"].status == "active"
    assert atv.subs(acc)["sport"].days_left == 30
    rights = atv.rights(card)
    assert rights.status == CardStatus.ACTIVE
    assert [e.package_id for e in rights.entitlements] == [2]
    assert atv.why(card, 121) == Reason.OPEN  # a +Sport-only channel

    lines = atv.statement(acc).lines
    assert [(x.kind, x.amount_minor, x.balance_after_minor) for x in lines] == [
        ("payment", 100, 100), ("payment", 1000, 1100), ("payment", 1000, 2100),
        ("charge", -1200, 900)]


@pytest.mark.parametrize("major", [9, 10, 12, 15])
def test_payment_card_denominations_accepted(atv: Bench, major: int) -> None:
    acc = atv.account()
    card = atv.card(acc)
    assert atv.pay(card, major * AZN, by="card", method="payment_card").balance_minor == major * AZN


@pytest.mark.parametrize("minor", [100, 1100, 2000, 950])
def test_other_payment_card_amounts_refused(atv: Bench, minor: int) -> None:
    acc = atv.account()
    card = atv.card(acc)
    before = atv.snapshot()
    with pytest.raises(ValidationError) as exc:
        atv.pay(card, minor, by="card", method="payment_card")
    assert exc.value.code == "BAD_DENOMINATION"
    assert atv.snapshot() == before


def test_switch_refused_inside_30_days_allowed_after_with_unused_days_credited(atv: Bench) -> None:
    acc = atv.account()
    card = atv.card(acc)
    atv.pay(acc, 100 * AZN)
    with atv.tx() as s:
        service.subscribe(s, account_number=acc, package="standard", at=atv.now())
    assert atv.balance(acc) == 100 * AZN - 900

    # Day 5: the first switch is allowed; 25 unused days of 9 AZN credited (7.50).
    atv.advance(days=5)
    with atv.tx() as s:
        r = service.switch_package(s, account_number=acc, package="sport", at=atv.now())
    assert (r.unused_days, r.credited_minor, r.charged_minor) == (25, 750, 1200)
    assert atv.balance(acc) == 100 * AZN - 900 + 750 - 1200
    assert atv.rights(card).entitlements[0].package_id == 2

    # Day 25 (20 days after the switch): refused, nothing written.
    atv.advance(days=20)
    before = atv.snapshot()
    with pytest.raises(BillingError) as exc, atv.tx() as s:
        service.switch_package(s, account_number=acc, package="standard", at=atv.now())
    assert exc.value.code == "SWITCH_LOCKED"
    assert atv.snapshot() == before

    # Choosing the other package with a payment is refused the same way, payment and all.
    with pytest.raises(BillingError) as exc2:
        atv.pay(card, 10 * AZN, by="card", method="payment_card", package="standard")
    assert exc2.value.code == "SWITCH_LOCKED"
    assert atv.snapshot() == before

    # Day 35 = 30 days after the switch: allowed.  The sport period began at the switch
    # (day 5) and renewed at day 35, so 30 unused days of 12 AZN come back.
    atv.advance(days=10)
    bal = atv.balance(acc)
    with atv.tx() as s:
        r2 = service.switch_package(s, account_number=acc, package="standard", at=atv.now())
    assert r2.unused_days == 30 and r2.credited_minor == 1200
    assert atv.balance(acc) == bal + 1200 - 900
    assert atv.subs(acc)["standard"].status == "active"
    assert "sport" not in atv.subs(acc)


def test_switch_credit_is_whole_unused_days(atv: Bench) -> None:
    """10 days left of a 12-manat month: 4.00 back (the seed's "remaining 10 days")."""
    acc = atv.account()
    atv.pay(acc, 12 * AZN, package="sport")
    atv.advance(days=20, hours=5)  # 9 whole days and 19 hours left
    atv.pay(acc, 9 * AZN)
    with atv.tx() as s:
        r = service.switch_package(s, account_number=acc, package="standard", at=atv.now())
    assert r.unused_days == 9
    assert r.credited_minor == 1200 * 9 // 30
    assert atv.balance(acc) == 900 + 360 - 900


def test_pay_with_package_switches_when_the_lock_allows(atv: Bench) -> None:
    acc = atv.account()
    card = atv.card(acc)
    atv.pay(card, 9 * AZN, by="card", method="payment_card", package="standard")
    assert atv.subs(acc)["standard"].status == "active"
    atv.advance(days=20)
    r = atv.pay(card, 12 * AZN, by="card", method="payment_card", package="sport")
    assert r.switched_to == "sport"
    # 10 unused days of 9 AZN = 3 AZN back; 12 charged.
    assert r.balance_minor == 1200 + 300 - 1200
    assert set(atv.subs(acc)) == {"sport"}


def test_switch_without_money_refused_and_nothing_written(atv: Bench) -> None:
    acc = atv.account()
    atv.pay(acc, 9 * AZN, package="standard")
    atv.advance(days=29)  # 1 day left: 0.30 back, 12.00 needed
    before = atv.snapshot()
    with pytest.raises(BillingError) as exc, atv.tx() as s:
        service.switch_package(s, account_number=acc, package="sport", at=atv.now())
    assert exc.value.code == "INSUFFICIENT_FUNDS"
    assert atv.snapshot() == before


def test_switch_to_the_same_or_an_unknown_package(atv: Bench) -> None:
    acc = atv.account()
    atv.pay(acc, 9 * AZN, package="standard")
    with pytest.raises(RecordConflict), atv.tx() as s:
        service.switch_package(s, account_number=acc, package="standard", at=atv.now())
    with pytest.raises(RecordNotFound), atv.tx() as s:
        service.switch_package(s, account_number=acc, package="gold", at=atv.now())


def test_leftover_balance_pays_the_next_month(atv: Bench) -> None:
    acc = atv.account()
    card = atv.card(acc)
    atv.pay(card, 15 * AZN, by="card", method="payment_card", package="standard")
    atv.pay(card, 10 * AZN, by="card", method="payment_card")
    assert atv.balance(acc) == 1600
    rep = atv.advance(days=30)
    assert [e.kind for e in rep.events] == ["renewed"]
    assert atv.balance(acc) == 700
    assert atv.subs(acc)["standard"].days_left == 30
