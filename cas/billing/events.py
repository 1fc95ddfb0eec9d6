"""The per-account event loop: what happens to an account when time passes — end of
suspension, renewal reminders, renewals (base before add-ons), promised-payment expiry.

Both the domain functions (:func:`prepare_account`, before acting on an account) and the
simulation clock (:mod:`cas.billing.clock`) run it, so a result never depends on whether
someone advanced the clock first.  Nothing here commits.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from cas.billing.ledger import can_afford, floor_minor, notify, post, touch_rights
from cas.billing.profile import OperatorProfile
from cas.billing.renewals import (
    base_of,
    next_price,
    open_subscriptions,
    renew,
    settle,
    update_block,
)
from cas.billing.txn import DAY_S, current_profile, lock_account
from cas.billing.vocab import LedgerKind, SubscriptionStatus
from cas.store.models import Account, Package, PromisedPayment, Subscription
from cas.store.repo import from_s


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockEvent:
    """Something the clock did to an account at ``at_s``."""

    at_s: int
    account_number: str
    kind: str  # renewed | blocked | expired | reminder | promise_expired | resumed
    detail: str


def _due_events(session: Session, profile: OperatorProfile, acc: Account,
                until_s: int) -> list[tuple[int, int, str, object]]:
    events: list[tuple[int, int, str, object]] = []
    if acc.suspended_from_s is not None and acc.suspended_until_s is not None \
            and acc.suspended_until_s <= until_s:
        events.append((acc.suspended_until_s, 0, "resume", None))
    promise = session.execute(
        select(PromisedPayment).where(PromisedPayment.account_id == acc.id,
                                      PromisedPayment.status == "open",
                                      PromisedPayment.due_at_s <= until_s)
    ).scalars().first()
    if promise is not None:
        events.append((promise.due_at_s, 3, "promise", promise))
    if acc.suspended_from_s is None:
        for sub, pkg in open_subscriptions(session, acc):
            if sub.status != SubscriptionStatus.ACTIVE or sub.paid_until_s is None:
                continue
            if sub.paid_until_s <= until_s:
                events.append((sub.paid_until_s, 1 if pkg.kind == "base" else 2, "renew",
                               (sub, pkg)))
            remind_s = sub.paid_until_s - profile.reminder_days * DAY_S
            if (profile.reminder_days and sub.auto_renew and remind_s <= until_s
                    and sub.reminded_until_s != sub.paid_until_s
                    and remind_s >= (sub.period_start_s or 0)):
                events.append((remind_s, 0, "remind", (sub, pkg)))
    return events


def run_account_until(session: Session, profile: OperatorProfile, acc: Account,
                      until_s: int) -> list[ClockEvent]:
    """Process every event of one (locked) account due at or before ``until_s``, in time
    order: end of suspension, reminders, renewals (base before add-ons), promise expiry."""
    done: list[ClockEvent] = []
    for _ in range(100_000):  # bounded: each step consumes an event or moves a window
        events = _due_events(session, profile, acc, until_s)
        if not events:
            break
        at_s, _prio, kind, obj = min(events, key=lambda e: (e[0], e[1]))
        if kind == "resume":
            resume_at(session, profile, acc, at_s)
            done.append(ClockEvent(at_s=at_s, account_number=acc.account_number,
                                   kind="resumed", detail="suspension ended"))
        elif kind == "remind":
            assert isinstance(obj, tuple)
            sub, pkg = obj
            sub.reminded_until_s = sub.paid_until_s
            price = next_price(session, sub, pkg)
            if not can_afford(acc, price):
                short = price - (acc.balance_minor - floor_minor(acc))
                text = (f"{pkg.name} renews on {from_s(sub.paid_until_s or 0):%Y-%m-%d}: "
                        f"please pay {profile.money(short)}")
                notify(session, acc, at_s, "reminder", text)
                done.append(ClockEvent(at_s=at_s, account_number=acc.account_number,
                                       kind="reminder", detail=text))
        elif kind == "renew":
            assert isinstance(obj, tuple)
            sub, pkg = obj
            done.append(_renew_event(session, profile, acc, sub, pkg, at_s))
        elif kind == "promise":
            assert isinstance(obj, PromisedPayment)
            obj.status = "expired"
            obj.settled_at_s = at_s
            post(session, acc, -obj.amount_minor, at_s=at_s, kind=LedgerKind.PROMISED_WRITEOFF,
                 ref=f"promise:{obj.id}", description="promised payment not repaid in time")
            if update_block(session, profile, acc, at_s):
                touch_rights(session, acc, at_s, "promise_expired")
            done.append(ClockEvent(at_s=at_s, account_number=acc.account_number,
                                   kind="promise_expired",
                                   detail=f"balance {profile.money(acc.balance_minor)}"))
    return done


def _renew_event(session: Session, profile: OperatorProfile, acc: Account, sub: Subscription,
                 pkg: Package, at_s: int) -> ClockEvent:
    def event(kind: str, detail: str) -> ClockEvent:
        return ClockEvent(at_s=at_s, account_number=acc.account_number, kind=kind,
                          detail=f"{pkg.code}: {detail}")

    if not sub.auto_renew:
        sub.status = SubscriptionStatus.EXPIRED
        notify(session, acc, at_s, "expired", f"{pkg.name} has ended (renewal is off)")
        return event("expired", "renewal off")
    if pkg.kind == "addon":
        base = base_of(open_subscriptions(session, acc))
        if base is None or base[0].status != SubscriptionStatus.ACTIVE:
            sub.status = SubscriptionStatus.EXPIRED
            notify(session, acc, at_s, "expired", f"{pkg.name} needs a base package")
            return event("expired", "no active base package")
    if renew(session, acc, sub, pkg, at_s):
        touch_rights(session, acc, at_s, "renewal")
        return event("renewed", f"until {from_s(sub.paid_until_s or 0):%Y-%m-%d}, "
                                f"balance {profile.money(acc.balance_minor)}")
    sub.status = SubscriptionStatus.BLOCKED
    if pkg.kind == "base":
        update_block(session, profile, acc, at_s)
        touch_rights(session, acc, at_s, "financial_block")
        return event("blocked", f"insufficient balance {profile.money(acc.balance_minor)}")
    notify(session, acc, at_s, "not_renewed", f"{pkg.name}: insufficient balance")
    return event("not_renewed", "insufficient balance")



def resume_at(session: Session, profile: OperatorProfile, acc: Account, at_s: int) -> None:
    assert acc.suspended_from_s is not None
    frozen_s = max(0, at_s - acc.suspended_from_s)
    for sub, _pkg in open_subscriptions(session, acc):
        if sub.status == SubscriptionStatus.ACTIVE and sub.paid_until_s is not None \
                and sub.paid_until_s > acc.suspended_from_s:
            sub.paid_until_s += frozen_s  # no paid day is lost to the holiday
            if sub.reminded_until_s is not None:
                sub.reminded_until_s = None
    acc.suspended_from_s = None
    acc.suspended_until_s = None
    notify(session, acc, at_s, "resumed", "Service resumed")
    touch_rights(session, acc, at_s, "resume")
    settle(session, profile, acc, at_s, "resume")



def prepare_account(session: Session, account_id: int,
                    at_s: int) -> tuple[OperatorProfile, Account]:
    """Profile + locked account with its due events processed up to ``at_s``."""
    profile = current_profile(session)
    acc = lock_account(session, account_id)
    run_account_until(session, profile, acc, at_s)
    return profile, acc


__all__ = ["ClockEvent", "prepare_account", "resume_at", "run_account_until"]
