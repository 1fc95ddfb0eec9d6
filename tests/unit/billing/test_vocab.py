"""The billing vocabularies are enums whose values are the strings the store keeps, so rows
written before the enums existed read the same (no migration)."""

from __future__ import annotations

from sqlalchemy import select, text

from cas.billing.vocab import (
    OPEN_STATES,
    WINDOW_STATES,
    LedgerKind,
    PayerKind,
    SubscriptionStatus,
)
from cas.store.models import LedgerEntry, Payment, Subscription
from tests.unit.billing.helpers import Bench


def test_values_are_the_stored_strings() -> None:
    assert [m.value for m in PayerKind] == ["card", "contract", "account"]
    assert [m.value for m in SubscriptionStatus] == [
        "pending", "active", "blocked", "expired", "closed"]
    assert WINDOW_STATES == ("active", "blocked", "expired")
    assert OPEN_STATES == ("pending", "active", "blocked", "expired")
    assert {m.value for m in LedgerKind} == {
        "payment", "charge", "adjustment", "unused_credit", "promised_credit",
        "promised_repayment", "promised_writeoff"}


def test_the_store_keeps_plain_strings_that_read_back_as_members(atv: Bench) -> None:
    acc = atv.account()
    card = atv.card(acc)
    atv.pay(card, 30_00, by=PayerKind.CARD, method="terminal", package="sport")
    with atv.store.reader() as s:
        stored = s.execute(text("SELECT status FROM subscriptions")).scalars().all()
        assert stored == ["active"]
        assert s.execute(select(Subscription.status)).scalar_one() == SubscriptionStatus.ACTIVE
        assert s.execute(text("SELECT by_kind FROM payments")).scalar_one() == "card"
        assert s.execute(select(Payment.by_kind)).scalar_one() == PayerKind.CARD
        kinds = s.execute(select(LedgerEntry.kind).order_by(LedgerEntry.id)).scalars().all()
        assert kinds == [LedgerKind.PAYMENT, LedgerKind.CHARGE]
        assert s.execute(text("SELECT kind FROM ledger_entries ORDER BY id")).scalars().all() == [
            "payment", "charge"]
