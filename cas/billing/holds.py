"""Holds and promises: temporary suspension and its end (NTV Plus "holiday"), and the
promised payment (a short credit, written off by the next payment or when it falls due).

Every entry point runs in a SAVEPOINT (:func:`cas.billing.txn.atomic`) and never commits.
The planned end of a suspension and the expiry of a promise are clock events
(:mod:`cas.billing.events`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cas.billing.events import prepare_account, resume_at
from cas.billing.ledger import floor_minor, is_suspended, notify, post, touch_rights
from cas.billing.money import check_amount
from cas.billing.renewals import next_price, open_subscriptions, settle
from cas.billing.statement import BalanceView, balance_view
from cas.billing.txn import DAY_S, account_by_number, atomic
from cas.billing.vocab import LedgerKind, SubscriptionStatus
from cas.errors import BillingError, ValidationError
from cas.store.errors import RecordConflict
from cas.store.models import PromisedPayment
from cas.store.repo import from_s, to_s


@atomic
def suspend(session: Session, *, account_number: str, at: datetime,
            until: datetime | None = None) -> BalanceView:
    """Temporary suspension ("holiday", NTV Plus seed): the cards are suspended, renewals stop,
    and on resumption the paid days left are moved past the suspension."""
    at_s = to_s(at)
    profile, acc = prepare_account(session, account_by_number(session, account_number).id, at_s)
    rules = profile.suspension
    if rules is None:
        raise BillingError(f"{profile.name} has no temporary suspension",
                           code="SUSPENSION_UNSUPPORTED").with_id(
                               "suspension_unsupported", operator=profile.name)
    if acc.suspended_from_s is not None:
        raise RecordConflict("the service is already suspended", code="ALREADY_SUSPENDED").with_id(
            "already_suspended")
    until_s = to_s(until) if until is not None else at_s + rules.max_days * DAY_S
    days = (until_s - at_s) / DAY_S
    if not rules.min_days <= days <= rules.max_days:
        raise ValidationError(
            f"a suspension lasts {rules.min_days} to {rules.max_days} days", code="BAD_SUSPENSION").with_id(
            "billing.suspension_lasts_days", min_days=rules.min_days, max_days=rules.max_days)
    acc.suspended_from_s = at_s
    acc.suspended_until_s = until_s
    notify(session, acc, at_s, "suspended",
           f"Service suspended until {from_s(until_s):%Y-%m-%d}")
    touch_rights(session, acc, at_s, "suspend")
    return balance_view(session, acc)


@atomic
def resume(session: Session, *, account_number: str, at: datetime) -> BalanceView:
    """End a temporary suspension now (the planned end is processed by the clock)."""
    at_s = to_s(at)
    profile, acc = prepare_account(session, account_by_number(session, account_number).id, at_s)
    if acc.suspended_from_s is None:
        raise RecordConflict("the service is not suspended", code="NOT_SUSPENDED").with_id(
            "billing.service_not_suspended")
    resume_at(session, profile, acc, at_s)
    return balance_view(session, acc)



@atomic
def promise(session: Session, *, account_number: str, at: datetime,
            amount_minor: int | None = None) -> BalanceView:
    """NTV Plus "Promised Payment": a short credit for those out of money.  It is written off
    by the next payment that covers it; if none comes within ``days``, it is written off
    anyway and the account falls into a financial block."""
    at_s = to_s(at)
    profile, acc = prepare_account(session, account_by_number(session, account_number).id, at_s)
    rules = profile.promised_payment
    if rules is None:
        raise BillingError(f"{profile.name} has no promised payment", code="PROMISE_UNSUPPORTED").with_id(
            "billing.no_promised_payment", name=profile.name)
    if session.execute(select(PromisedPayment.id).where(
            PromisedPayment.account_id == acc.id, PromisedPayment.status == "open")).first():
        raise RecordConflict("a promised payment is already open", code="PROMISE_OPEN").with_id(
            "billing.promised_payment_already_open")
    if is_suspended(acc, at_s):
        raise BillingError("the service is suspended", code="SUSPENDED").with_id(
            "billing.service_suspended")
    if amount_minor is None:
        need = 0
        for sub, pkg in open_subscriptions(session, acc):
            if sub.status in (SubscriptionStatus.PENDING, SubscriptionStatus.BLOCKED) or (
                    sub.status == SubscriptionStatus.ACTIVE and sub.auto_renew):
                need += next_price(session, sub, pkg)
        amount_minor = max(need - (acc.balance_minor - floor_minor(acc)), 0)
        amount_minor = min(amount_minor, rules.max_minor)
        if amount_minor == 0:
            raise BillingError("the balance already covers the packages; nothing to promise",
                               code="PROMISE_NOT_NEEDED").with_id(
                "billing.balance_already_covers_packages")
    check_amount(amount_minor)
    if amount_minor > rules.max_minor:
        raise ValidationError(f"a promised payment is at most {profile.money(rules.max_minor)}",
                              code="PROMISE_TOO_LARGE").with_id(
            "billing.promised_payment_most", max_minor=profile.money(rules.max_minor))
    row = PromisedPayment(account_id=acc.id, amount_minor=amount_minor, granted_at_s=at_s,
                          due_at_s=at_s + rules.days * DAY_S, status="open")
    session.add(row)
    session.flush()
    post(session, acc, amount_minor, at_s=at_s, kind=LedgerKind.PROMISED_CREDIT,
         ref=f"promise:{row.id}",
         description=f"promised payment, due {from_s(row.due_at_s):%Y-%m-%d}")
    settle(session, profile, acc, at_s, "promise")
    notify(session, acc, at_s, "promise",
           f"Promised payment {profile.money(amount_minor)}: please pay by "
           f"{from_s(row.due_at_s):%Y-%m-%d}")
    return balance_view(session, acc)


__all__ = ["promise", "resume", "suspend"]
