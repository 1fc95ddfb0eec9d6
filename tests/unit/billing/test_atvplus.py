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

    # Choosing the other package with a payment: the switch is refused the same way, but the
    # money is booked ("the package option does not appear" — the payment still goes in).
    bal = atv.balance(acc)
    r = atv.pay(card, 10 * AZN, by="card", method="payment_card", package="standard")
    assert r.switched_to is None and r.choice_refused == "SWITCH_LOCKED"
    assert "switch to standard not done" in r.note and "possible from" in r.note
    assert r.balance_minor == bal + 10 * AZN == atv.balance(acc)
    assert set(atv.subs(acc)) == {"sport"}

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


def test_a_refused_package_choice_books_the_money_and_says_so(atv: Bench) -> None:
    """ATV+ seed: inside the 30 days the package option "does not appear" — the payment is
    made all the same.  The top-up is booked (ledger, payment row), the switch is not, and
    the answer says which rule refused it."""
    acc = atv.account()
    card = atv.card(acc)
    atv.pay(card, 9 * AZN, by="card", method="payment_card", package="standard")
    atv.pay(card, 12 * AZN, by="card", method="payment_card")
    with atv.tx() as s:
        service.switch_package(s, account_number=acc, package="sport", at=atv.now())
    atv.advance(days=3)
    before_lines = len(atv.statement(acc).lines)
    bal = atv.balance(acc)
    r = atv.pay(card, 15 * AZN, by="card", method="payment_card", package="standard")
    assert r.choice_refused == "SWITCH_LOCKED" and r.switched_to is None
    assert r.note.startswith("paid 15.00 AZN to the balance; switch to standard not done: ")
    assert atv.balance(acc) == bal + 15 * AZN
    lines = atv.statement(acc).lines
    assert len(lines) == before_lines + 1 and lines[-1].kind == "payment"
    assert {k: v.status for k, v in atv.subs(acc).items()} == {"sport": "active"}
    # The same payment id is still a duplicate: the payment really was booked.
    with pytest.raises(RecordConflict) as exc:
        atv.pay(card, 9 * AZN, by="card", payment_id=r.payment_id, package="standard")
    assert exc.value.code == "DUPLICATE_PAYMENT"


def test_a_refused_add_on_choice_books_the_money(bench: Callable[[str], Bench]) -> None:
    """An add-on without a base package (TV+ lineup): the choice is refused, the money is not."""
    tv = bench("tvplus")
    acc = tv.account()
    r = tv.pay(acc, 5000 * 100, package="vip-comedy")
    assert r.choice_refused == "ADDON_NEEDS_BASE"
    assert "choice of vip-comedy not done" in r.note
    assert tv.balance(acc) == 5000 * 100 and tv.subs(acc) == {}


def test_an_unknown_package_with_a_payment_refuses_the_payment(atv: Bench) -> None:
    """A package code that does not exist is bad input, not a rule: nothing is written."""
    acc = atv.account()
    before = atv.snapshot()
    with pytest.raises(RecordNotFound):
        atv.pay(acc, 10 * AZN, package="gold")
    assert atv.snapshot() == before


def test_the_first_activation_does_not_start_the_switch_lock(atv: Bench) -> None:
    """Decision (docs/subscribers.md): the seed's lock is on a *repeated switch* ("повторное
    переключение … с момента последнего перехода"), and its title tells connecting a package
    apart from switching.  The first activation — choosing the package at payment — is a
    connection, not a switch: a switch the next day is allowed, and that switch starts the
    30 days."""
    acc = atv.account()
    card = atv.card(acc)
    r0 = atv.pay(card, 9 * AZN, by="card", method="payment_card", package="standard")
    assert r0.activated == ("standard",) and r0.choice_refused is None
    atv.advance(days=1)
    r1 = atv.pay(card, 12 * AZN, by="card", method="payment_card", package="sport")
    assert r1.switched_to == "sport" and r1.choice_refused is None
    atv.advance(days=1)
    r2 = atv.pay(card, 9 * AZN, by="card", method="payment_card", package="standard")
    assert r2.switched_to is None and r2.choice_refused == "SWITCH_LOCKED"
    assert "switched on 2026-03-02" in r2.note and "possible from 2026-04-01" in r2.note


def test_re_choosing_while_pending_is_not_a_switch(atv: Bench) -> None:
    """A package chosen but not yet paid can be replaced by another choice at any time: no
    package was active, so nothing was switched and no lock starts."""
    acc = atv.account()
    card = atv.card(acc)
    r1 = atv.pay(card, 10 * AZN, by="card", method="payment_card", package="sport")
    assert r1.pending == ("sport",)
    r2 = atv.pay(card, 9 * AZN, by="card", method="payment_card", package="standard")
    assert r2.activated == ("standard",) and r2.choice_refused is None
    atv.advance(days=1)
    r3 = atv.pay(card, 12 * AZN, by="card", method="payment_card", package="sport")
    assert r3.switched_to == "sport"
