"""The operator API's payment (:func:`cas.billing.payments_fast.pay_fast`) against the ORM
path (:func:`cas.billing.payments.pay`): the same sequence of operations on two stores of
the same database kind, one paying through each, must give the same answers and leave the
same rows in every table (balances, ledger, payments, subscriptions, notifications, the
rights journal that feeds the EMM queue), for every seed operator profile."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cas.billing import clock, payments_fast, service
from cas.billing.payments_fast import pay_fast
from cas.billing.txn import PROFILE_TOML_KEY
from cas.errors import CasError
from cas.store.engine import Store
from cas.store.models import Package, Setting
from tests.fixtures.postgres import PostgresServer
from tests.unit.billing.helpers import DAY, Bench

PROFILES = ("atvplus", "mts", "ntvplus", "tvplus", "uzonline")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def two_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    if request.param == "sqlite":
        urls = [f"sqlite:///{tmp_path / 'orm.sqlite'}", f"sqlite:///{tmp_path / 'fast.sqlite'}"]
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        urls = [server.create_database(), server.create_database()]
    stores = [Store.open(u) for u in urls]
    yield stores[0], stores[1]
    for st in stores:
        st.dispose()


class Twins:
    """Two benches driven in lockstep; only the payment differs (ORM in ``orm``, the fast
    path in ``fast``)."""

    def __init__(self, stores: tuple[Store, Store], profile: str) -> None:
        self.orm = Bench(stores[0], profile)
        self.fast = Bench(stores[1], profile)
        self.profile = self.orm.profile
        self.steps = 0
        self.payments = 0

    def both(self, fn: Callable[[Bench], Any]) -> Any:
        """Run ``fn`` on each bench; the answers (or refusal codes) and all rows must agree."""
        answers: list[tuple[Any, ...]] = []
        for b in (self.orm, self.fast):
            try:
                answers.append(("ok", fn(b)))
            except CasError as exc:
                answers.append(("refused", type(exc).__name__, getattr(exc, "code", None)))
        assert answers[0] == answers[1]
        assert _rows(self.orm) == _rows(self.fast)
        self.steps += 1
        return answers[0]

    def pay(self, ref: str | int, amount_minor: int, *, by: str = "account",
            payment_id: str | None = None, **kw: Any) -> Any:
        pid = payment_id or f"p{self.steps}"
        self.payments += 1

        def run(b: Bench, kw: dict[str, Any] = kw) -> Any:
            kw = dict(kw)
            with b.tx() as s:
                if b is self.orm:
                    at = kw.pop("at", None) or clock.clock_now(s)
                    return service.pay(s, by=by, ref=str(ref), amount_minor=amount_minor,
                                       payment_id=pid, at=at, **kw)
                return pay_fast(s, by=by, ref=str(ref), amount_minor=amount_minor,
                                payment_id=pid, **kw)[0]

        return self.both(run)


def _rows(b: Bench) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table; ``payments`` without its surrogate ``id`` (nothing refers
    to it): on PostgreSQL the fast path's ``INSERT … ON CONFLICT DO NOTHING`` of a duplicate
    payment id draws a sequence number it does not use, a gap and no other difference."""
    rows = b.snapshot()
    rows["payments"] = sorted((r[1:] for r in rows["payments"]), key=repr)
    return rows


def _packages(b: Bench) -> tuple[list[str], list[str]]:
    with b.store.reader() as s:
        rows = s.execute(select(Package.code, Package.kind).where(Package.retired.is_(False))
                         .order_by(Package.price_minor, Package.id)).all()
    return [c for c, k in rows if k == "base"], [c for c, k in rows if k == "addon"]


@pytest.fixture
def fast_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many payments went the fast way: the fallback is counted, the rest were fast."""
    fallbacks = [0]
    full = payments_fast._full

    def counted(*args: Any, **kw: Any) -> Any:
        fallbacks[0] += 1
        return full(*args, **kw)

    monkeypatch.setattr(payments_fast, "_full", counted)
    return fallbacks


@pytest.mark.parametrize("profile", PROFILES)
def test_fast_and_orm_payments_leave_the_same_rows(two_stores: tuple[Store, Store],
                                                   profile: str, fast_calls: list[int]) -> None:
    t = Twins(two_stores, profile)
    p = t.profile
    bases, addons = _packages(t.orm)
    unit = p.minor_per_major
    acc = t.both(lambda b: b.account(phone="+70000000001", email="a@example.org"))[1]
    other = t.both(lambda b: b.account(contract_number=None))[1]
    card = t.both(lambda b: b.card(acc))[1]
    with t.orm.store.reader() as s:
        contract = service.find_account(s, by="account", ref=acc).contract_number

    # No subscriptions: every kind of reference the operator takes, all fast.
    for by, ref in (("account", acc), ("card", f"{card:010d}"), ("contract", contract)):
        t.pay(ref, 7 * unit, by=by)
    t.pay(other, 1)
    # Refusals: the same code either way (the fast path hands them to pay()).
    t.pay(acc, 5, payment_id="p3")  # duplicate payment id
    t.pay(acc, 0)
    t.pay("99999999", 5)
    t.pay(f"{card:010d}", 5, by="contract")
    t.pay(acc, 5, method="cheque")
    t.pay(acc, 5, payment_id="bad id")
    t.pay(acc, 900, method="payment_card")
    t.pay("12a", 5)
    t.pay(" " + acc + " ", 5)

    # A package waiting for money: the payment that covers it activates it (ORM path).
    t.both(lambda b: b.call(service.subscribe, account_number=other, package=bases[-1]))
    t.pay(other, 1)
    t.pay(other, 10_000 * unit)
    if addons:
        t.both(lambda b: b.call(service.subscribe, account_number=other, package=addons[0]))
    t.pay(other, 3 * unit)  # active base, far from renewal: fast again
    # A package chosen with the payment (ATV+): always the ORM path.
    t.pay(acc, 50_000 * unit, package=bases[0])
    t.pay(acc, 2 * unit)

    # A payment dated inside the reminder window (the clock not advanced): the reminder is
    # due within the payment (ORM path); then past the renewal date: the renewal runs.
    period_days = 30
    t.pay(acc, 1, at=t.orm.now() + (period_days - p.reminder_days + 1) * DAY)
    t.pay(acc, 1, at=t.orm.now() + (period_days + 1) * DAY)

    # An account whose base package ran out of money: blocked; a payment lifts the block.
    thin = t.both(lambda b: b.account(phone="+70000000002"))[1]
    t.pay(thin, 1, package=bases[0])  # chosen with a payment (no verification asked)
    with t.orm.store.reader() as s:
        price = service.subscriptions(s, account_number=thin, at=clock.clock_now(s))[0]
    t.pay(thin, price.next_price_minor - 1)
    t.both(lambda b: b.advance(days=period_days + 1))
    t.pay(thin, 1)  # blocked: still too little
    if p.promised_payment is not None:
        t.both(lambda b: b.call(service.promise, account_number=thin))
        t.pay(thin, 1)  # a promise is open: not enough to repay it
        t.pay(thin, 100_000 * unit)  # repays it
    t.pay(thin, 50_000 * unit)
    t.pay(thin, 1)  # fast again
    t.both(lambda b: b.advance(days=3 * period_days))
    t.pay(other, 1)

    if p.suspension is not None:
        t.both(lambda b: b.call(service.suspend, account_number=acc,
                                until=b.now() + p.suspension.min_days * DAY))  # type: ignore[union-attr]
        t.pay(acc, 1)  # suspended
        t.both(lambda b: b.advance(days=p.suspension.min_days + 1))  # type: ignore[union-attr]
        t.pay(acc, 1)
    if "postpaid" in p.account_kinds:
        post = t.both(lambda b: b.account(kind="postpaid"))[1]
        t.pay(post, 1)
        t.both(lambda b: b.call(service.subscribe, account_number=post, package=bases[0]))
        t.pay(post, 1)

    # The plain payments above (no rule can act) took the fast way; the rest fell back.
    assert t.payments - fast_calls[0] >= 8
    assert fast_calls[0] >= 6


def test_a_changed_profile_is_used_by_the_next_payment(store: Store) -> None:
    """The profile's text comes with the locking statement (parsed once per text): a store
    whose operator changes its rules pays by them on the next payment, without a restart."""
    b = Bench(store, "atvplus")
    acc = b.account()
    card = b.card(acc)

    def pay_by_card(pid: str) -> Any:
        with b.tx() as s:
            return pay_fast(s, by="card", ref=f"{card:010d}", amount_minor=100, payment_id=pid)

    assert pay_by_card("before")[0].balance_minor == 100
    with b.tx() as s:
        row = s.get(Setting, PROFILE_TOML_KEY)
        assert row is not None
        assert 'by = ["card", "contract", "account"]' in row.value
        row.value = row.value.replace('by = ["card", "contract", "account"]', 'by = ["account"]')
    with pytest.raises(CasError) as refused:
        pay_by_card("after")
    assert getattr(refused.value, "code", None) == "BAD_PAYER"
    assert b.balance(acc) == 100
