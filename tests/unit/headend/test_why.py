"""``cas why`` (:func:`cas.headend.why.explain`): what the head-end can say from its records,
what it cannot know, and the fix that works.  Every test runs on SQLite and PostgreSQL.

* a channel rated above the card's limit with ``pin_ok`` is not OPEN but ``OPEN_IF_PIN``:
  the head-end cannot see the card's PIN counter, and a blocked PIN keeps it locked;
* a package chosen and waiting for money is named, with the amount missing;
* a lapsed subscription whose price the balance already covers is fixed by turning renewal
  on (or subscribing again), never by "pay".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cas.billing import accounts, service
from cas.headend.why import (
    CANNOT_KNOW_BOX,
    CANNOT_KNOW_PIN,
    CANNOT_KNOW_SHARING,
    Explanation,
    WhyState,
    explain,
)
from cas.reasons import Reason
from cas.store.engine import Store
from tests.unit.billing.helpers import Bench

KZT = AZN = 100
START = 2490 * KZT
NIGHT_CLUB = 27  # TV+: rated 18+, in 'TV+ Maximum'
QAZAQSTAN = 1  # TV+: in 'TV+ Start'


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    st = Store.open(db_url)
    yield st
    st.dispose()


def _why(b: Bench, serial: int, channel: int | str, **kw: Any) -> Explanation:
    with b.store.reader() as s:
        return explain(s, serial, channel, b.now(), **kw)


def _subscribe(b: Bench, acc: str, package: str) -> None:
    with b.tx() as s:
        service.subscribe(s, account_number=acc, package=package, at=b.now())


# --- the PIN: what the head-end cannot know --------------------------------------------------------
def test_pin_ok_on_a_rated_channel_is_open_if_pin_not_open(store: Store) -> None:
    tv = Bench(store, "tvplus")
    acc = tv.account()
    card = tv.card(acc)
    tv.pay(acc, 4990 * KZT)
    _subscribe(tv, acc, "maximum")
    with tv.tx() as s:
        accounts.set_kids_profile(s, serial=card, on=True, at=tv.now())

    locked = _why(tv, card, NIGHT_CLUB)
    assert locked.state is WhyState.LOCKED and locked.reason is Reason.MATURITY_LOCKED
    assert "E23 PIN_BLOCKED" in locked.fix and CANNOT_KNOW_PIN in locked.cannot_know

    with_pin = _why(tv, card, NIGHT_CLUB, pin_ok=True)
    # The rule's verdict with a PIN is OPEN (the card and the demo agree on it) ...
    assert with_pin.reason is Reason.OPEN
    # ... but the head-end does not say OPEN: the card may have blocked its PIN.
    assert with_pin.state is WhyState.OPEN_IF_PIN and not with_pin.is_open
    d = with_pin.as_dict()
    assert d["state"] == "OPEN_IF_PIN"
    assert "open only once the card accepts the parental PIN" in d["cause"]
    assert "PIN_BLOCKED" in d["fix"] and "RESET_PIN" in d["fix"]
    assert CANNOT_KNOW_PIN in d["cannot_know"]

    # An unrated channel does not depend on the PIN: plainly OPEN, the PIN not among the unknowns.
    plain = _why(tv, card, QAZAQSTAN, pin_ok=True)
    assert plain.state is WhyState.OPEN and plain.as_dict()["state"] == "OPEN"
    assert CANNOT_KNOW_PIN not in plain.cannot_know
    assert CANNOT_KNOW_BOX in plain.cannot_know
    # an open channel may still be refused by the card's own sharing check (E60)
    assert CANNOT_KNOW_SHARING in plain.cannot_know and "E60" in CANNOT_KNOW_SHARING
    assert CANNOT_KNOW_SHARING not in locked.cannot_know
    with tv.store.reader() as s:
        in_box = explain(s, card, QAZAQSTAN, tv.now(), chip_id=0x0A0B0C0D)
    assert CANNOT_KNOW_BOX not in in_box.cannot_know


# --- a package waiting for money -------------------------------------------------------------------
def test_a_pending_package_short_of_money_is_named_with_the_missing_amount(store: Store) -> None:
    """ATV+ seed example: 1 + 10 = 11 AZN of the 12 for +Sport — the package waits for 1.00."""
    atv = Bench(store, "atvplus")
    acc = atv.account()
    card = atv.card(acc)
    atv.pay(card, 1 * AZN, by="card", method="terminal")
    atv.pay(card, 10 * AZN, by="card", method="payment_card", package="sport")
    ex = _why(atv, card, 121)  # a +Sport channel
    assert ex.reason is Reason.NOT_SUBSCRIBED and ex.state is WhyState.LOCKED
    assert "no package connected" not in ex.cause
    assert "+Sport" in ex.cause and "waits for payment" in ex.cause
    assert "1.00 AZN short" in ex.cause
    assert ex.fix.startswith("pay 1.00 AZN more")
    assert ex.details["waiting_package"] == "sport"
    atv.pay(card, 1 * AZN, by="card", method="terminal")
    assert _why(atv, card, 121).state is WhyState.OPEN


def test_without_a_choice_it_is_still_no_package_connected(store: Store) -> None:
    tv = Bench(store, "tvplus")
    card = tv.card(tv.account())
    ex = _why(tv, card, QAZAQSTAN)
    assert ex.reason is Reason.NOT_SUBSCRIBED
    assert ex.cause.startswith("no package connected") and ex.fix.startswith("subscribe to")


# --- the fix for a lapsed subscription ---------------------------------------------------------------
def test_expired_with_renewal_off_and_the_balance_covering_it_says_renewal_on(store: Store) -> None:
    tv = Bench(store, "tvplus")
    acc = tv.account()
    card = tv.card(acc)
    tv.pay(acc, START)
    _subscribe(tv, acc, "start")
    with tv.tx() as s:
        service.set_renewal(s, account_number=acc, on=False, at=tv.now())
    tv.pay(acc, START)  # the money for the next month is there
    tv.advance(days=31)
    ex = _why(tv, card, QAZAQSTAN)
    assert ex.reason is Reason.ENTITLEMENT_EXPIRED
    assert not ex.fix.startswith("pay") and "pay " not in ex.fix
    assert ex.fix.startswith("turn auto-renewal on for 'TV+ Start'")
    assert "covers its price 2490.00 KZT" in ex.fix
    # ... and that fix works: renewal on, the channel opens, nothing paid.
    with tv.tx() as s:
        service.set_renewal(s, account_number=acc, on=True, at=tv.now())
    assert _why(tv, card, QAZAQSTAN).state is WhyState.OPEN
    assert tv.balance(acc) == 0


def test_expired_with_renewal_off_and_too_little_money_says_how_much(store: Store) -> None:
    tv = Bench(store, "tvplus")
    acc = tv.account()
    card = tv.card(acc)
    tv.pay(acc, START + 1000 * KZT)
    _subscribe(tv, acc, "start")
    with tv.tx() as s:
        service.set_renewal(s, account_number=acc, on=False, at=tv.now())
    tv.advance(days=31)
    ex = _why(tv, card, QAZAQSTAN)
    assert ex.fix == ("turn auto-renewal on for 'TV+ Start' and pay 1490.00 KZT "
                      "(price 2490.00 KZT, balance 1000.00 KZT)")


def test_an_add_on_blocked_for_money_says_pay_the_missing_amount(store: Store) -> None:
    """The base renewed, the add-on could not: here paying is the fix, and for how much."""
    tv = Bench(store, "tvplus")
    acc = tv.account()
    card = tv.card(acc)
    tv.pay(acc, START + 1990 * KZT)
    _subscribe(tv, acc, "start")
    _subscribe(tv, acc, "viasat-sport")
    tv.pay(acc, START)
    tv.advance(days=31)
    assert _why(tv, card, QAZAQSTAN).state is WhyState.OPEN
    ex = _why(tv, card, 24)  # Viasat Sport HD
    assert ex.reason is Reason.ENTITLEMENT_EXPIRED
    assert ex.fix == ("pay 1990.00 KZT (price 1990.00 KZT, balance 0.00 KZT) "
                      "to renew 'Viasat Sport HD'")
