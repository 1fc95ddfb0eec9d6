"""Uzonline / ivi (seed 004): months 1-6 at 10,000 so'm, from month 7 at 25,000; activation by
phone number + account number confirmed by an SMS code valid until the session ends; the
subscription's activation date, end date and days left; "extend"."""

from __future__ import annotations

import pytest

from cas.billing import accounts, service
from cas.errors import BillingError
from tests.unit.billing.helpers import DAY, Bench

SOM = 100


def _verified(uz: Bench, acc: str, phone: str = "+998901234567") -> str:
    with uz.tx() as s:
        ch = accounts.start_verification(s, account_number=acc, phone=phone, at=uz.now())
    with uz.tx() as s:
        assert accounts.confirm_verification(s, token=ch.token, code=ch.code, at=uz.now()).verified
    return ch.token


def test_activation_needs_the_sms_code(uz: Bench) -> None:
    acc, other = uz.account(), uz.account()
    uz.pay(acc, 100_000 * SOM)
    before = uz.snapshot()
    with pytest.raises(BillingError) as exc, uz.tx() as s:
        service.subscribe(s, account_number=acc, package="ivi", at=uz.now())
    assert exc.value.code == "VERIFICATION_REQUIRED"
    with uz.tx() as s:
        pending = accounts.start_verification(s, account_number=acc, phone="+998901234567",
                                              at=uz.now())
    with pytest.raises(BillingError) as exc2, uz.tx() as s:
        service.subscribe(s, account_number=acc, package="ivi", at=uz.now(),
                          verification=pending.token)  # code not entered yet
    assert exc2.value.code == "VERIFICATION_REQUIRED"
    foreign = _verified(uz, other)
    with pytest.raises(BillingError) as exc3, uz.tx() as s:
        service.subscribe(s, account_number=acc, package="ivi", at=uz.now(),
                          verification=foreign)
    assert exc3.value.code == "VERIFICATION_REQUIRED"
    assert uz.snapshot() != before  # only the verification sessions were written
    token = _verified(uz, acc)
    with uz.tx() as s:
        view = service.subscribe(s, account_number=acc, package="ivi", at=uz.now(),
                                 verification=token)
        phone = accounts.get_account(s, acc).phone
    assert view.status == "active"
    assert phone == "+998901234567"  # "the number is joined to the account"


def test_tiered_price_months_1_to_6_then_7(uz: Bench) -> None:
    acc = uz.account()
    uz.pay(acc, 6 * 10_000 * SOM + 2 * 25_000 * SOM)
    token = _verified(uz, acc)
    with uz.tx() as s:
        service.subscribe(s, account_number=acc, package="ivi", at=uz.now(), verification=token)
    for _ in range(7):
        uz.advance(days=30)
    charges = [-x.amount_minor for x in uz.statement(acc).lines if x.kind == "charge"]
    assert charges == [10_000 * SOM] * 6 + [25_000 * SOM] * 2
    assert uz.balance(acc) == 0
    assert uz.subs(acc)["ivi"].next_price_minor == 25_000 * SOM


def test_activation_date_end_date_days_left_and_extend(uz: Bench) -> None:
    acc = uz.account()
    uz.pay(acc, 20_000 * SOM)
    token = _verified(uz, acc)
    t0 = uz.now()
    with uz.tx() as s:
        service.subscribe(s, account_number=acc, package="ivi", at=t0, verification=token)
    uz.advance(days=5)
    v = uz.subs(acc)["ivi"]
    assert (v.activated_at, v.end, v.days_left) == (t0, t0 + 30 * DAY, 25)
    with uz.tx() as s:
        v2 = service.extend(s, account_number=acc, package="ivi", at=uz.now())
    assert (v2.activated_at, v2.end, v2.days_left) == (t0, t0 + 60 * DAY, 55)
    assert uz.balance(acc) == 0
    with pytest.raises(BillingError) as exc, uz.tx() as s:
        service.extend(s, account_number=acc, package="ivi", at=uz.now())
    assert exc.value.code == "INSUFFICIENT_FUNDS"
