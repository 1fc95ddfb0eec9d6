"""A small test bench over a real store: one operator profile, accounts, cards, payments,
the clock, and a full snapshot of the database to prove "nothing written"."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from cas.access import CardRights
from cas.billing import accounts, clock, service, state
from cas.billing.setup import use_profile
from cas.billing.statement import balance_fast
from cas.cli.main import cli
from cas.reasons import Reason
from cas.store.engine import Store
from cas.store.models import Base
from cas.store.repo import register_card

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)


class Bench:
    def __init__(self, store: Store, profile: str) -> None:
        self.store = store
        self.profile_name = profile
        self._serials = itertools.count(2256884759)
        self._payments = itertools.count(1)
        with store.transaction() as s:
            self.profile = use_profile(s, profile, clock_start=T0).profile

    @contextmanager
    def tx(self) -> Iterator[Session]:
        with self.store.transaction() as s:
            yield s

    def now(self) -> datetime:
        with self.store.reader() as s:
            return clock.clock_now(s)

    def account(self, **kw: Any) -> str:
        kw.setdefault("surname", "Ivanov")
        kw.setdefault("name", "Ivan")
        with self.tx() as s:
            return accounts.create_account(s, at=clock.clock_now(s), **kw).account_number

    def card(self, account: str | None = None) -> int:
        serial = next(self._serials)
        with self.tx() as s:
            at = clock.clock_now(s)
            register_card(s, serial, at=at)
            if account is not None:
                accounts.link_card(s, serial=serial, account_number=account, at=at)
        return serial

    def pay(self, ref: str | int, amount_minor: int, *, by: str = "account",
            payment_id: str | None = None, **kw: Any) -> service.PaymentResult:
        with self.tx() as s:
            return service.pay(s, by=by, ref=str(ref), amount_minor=amount_minor,
                               payment_id=payment_id or f"pay-{next(self._payments)}",
                               at=clock.clock_now(s), **kw)

    def call(self, fn: Any, **kw: Any) -> Any:
        """Run a domain function in its own transaction at the clock's now."""
        with self.tx() as s:
            return fn(s, at=clock.clock_now(s), **kw)

    def advance(self, days: int = 0, hours: int = 0) -> clock.AdvanceReport:
        with self.tx() as s:
            return clock.advance_clock(s, days=days, hours=hours)

    def subs(self, account: str) -> dict[str, service.SubscriptionView]:
        with self.store.reader() as s:
            return {v.package_code: v for v in service.subscriptions(
                s, account_number=account, at=clock.clock_now(s))}

    def balance(self, account: str) -> int:
        with self.store.reader() as s:
            return service.balance(s, account_number=account).balance_minor

    def balance_view(self, account: str) -> service.BalanceView:
        with self.store.reader() as s:
            view = service.balance(s, account_number=account)
        # The operator API's one-statement read must say the same in every scenario.
        with self.store.read_engine.connect() as conn:
            assert balance_fast(conn, account_number=account) == view
        return view

    def statement(self, account: str) -> service.Statement:
        with self.store.reader() as s:
            return service.statement(s, account_number=account)

    def rights(self, serial: int, at: datetime | None = None) -> CardRights:
        with self.store.reader() as s:
            return state.card_rights_at(s, serial, at or clock.clock_now(s))

    def why(self, serial: int, channel: str | int, at: datetime | None = None,
            **kw: Any) -> Reason:
        with self.store.reader() as s:
            return state.explain(s, serial=serial, channel=channel,
                                 at=at or clock.clock_now(s), **kw).reason

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table: equal snapshots mean nothing was written."""
        with self.store.reader() as s:
            return {t.name: sorted((tuple(r) for r in s.execute(select(t)).all()), key=repr)
                    for t in Base.metadata.sorted_tables}


def run_cas(store: Store, *args: str) -> tuple[int, str, str]:
    """``cas --db-url <store> ARGS`` through click's runner: (exit code, stdout, stderr)."""
    url = store.engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(cli, ["--db-url", url, *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def with_ntv_holder(b: Bench) -> Bench:
    """An NTV Plus bench with one holder: contract 7701234, card 2256884759, 599 RUB paid."""
    acc = b.account(contract_number="7701234")
    b.card(acc)  # 2256884759
    b.pay(acc, 599_00, payment_id="first")
    return b
