"""The simulation clock: the store keeps "now", and advancing it runs what falls due.

``cas clock advance --days N`` / ``--to DATE`` walks every account with something due up to
the target and processes, in time order per account: ends of suspension, renewal reminders,
renewals (base package before add-ons; a base renewal the balance cannot cover becomes a
financial block), expiries (renewal off, add-on without base) and promised payments falling
due (written off; a negative balance blocks).  Accounts are independent, so processing them
one after the other is the same as interleaving their events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from cas.billing.events import run_account_until
from cas.billing.txn import DAY_S, current_profile, lock_account
from cas.billing.vocab import SubscriptionStatus
from cas.errors import ValidationError
from cas.store.models import Account, PromisedPayment, Subscription
from cas.store.repo import from_s, get_setting, set_setting, to_s
from cas.wiretime import clock_time_s

CLOCK_KEY = "clock.now_s"


def clock_now(session: Session) -> datetime:
    """The simulated "now" (the wall clock, to the second, until the clock is first set)."""
    value = get_setting(session, CLOCK_KEY)
    if value is None:
        return datetime.now(UTC).replace(microsecond=0)
    return from_s(int(value))


def set_clock(session: Session, at: datetime) -> datetime:
    """Set "now" without running anything (test benches); never backwards once set, never
    past what the wire can carry (:func:`cas.wiretime.clock_time_s`)."""
    to_s(at)  # naive times are refused as everywhere in the store
    at_s = clock_time_s(at, "clock")
    current = get_setting(session, CLOCK_KEY)
    if current is not None and at_s < int(current):
        raise ValidationError(f"the clock is at {from_s(int(current)):%Y-%m-%d %H:%M:%S} UTC and "
                              "never goes back", code="CLOCK_BACKWARDS").with_id(
            "billing.clock_utc_never_goes", current=f"{from_s(int(current)):%Y-%m-%d %H:%M:%S}")
    set_setting(session, CLOCK_KEY, str(at_s))
    return from_s(at_s)


@dataclass(frozen=True, slots=True, kw_only=True)
class AdvanceReport:
    start: datetime
    end: datetime
    events: tuple[ClockEventView, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockEventView:
    at: datetime
    account_number: str
    kind: str
    detail: str


def advance_clock(session: Session, *, to: datetime | None = None, days: int | None = None,
                  hours: int | None = None) -> AdvanceReport:
    """Move the clock forward and run everything due, in time order (see module doc)."""
    start = clock_now(session)
    if to is None:
        if days is None and hours is None:
            raise ValidationError("advance by --days/--hours or --to a date", code="BAD_CLOCK").with_id(
                "billing.advance_days_hours_date")
        for v in (days, hours):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ValidationError("days and hours must be non-negative integers",
                                      code="BAD_CLOCK").with_id("billing.days_hours_non_negative")
        to = start + timedelta(days=days or 0, hours=hours or 0)
    to_s(to)
    target_s = clock_time_s(to, "clock")
    if target_s < to_s(start):
        raise ValidationError(f"the clock is at {start:%Y-%m-%d %H:%M:%S} UTC and never goes back",
                              code="CLOCK_BACKWARDS").with_id(
            "billing.clock_utc_never_goes_2", start=f"{start:%Y-%m-%d %H:%M:%S}")
    profile = current_profile(session)
    horizon_s = target_s + profile.reminder_days * DAY_S
    due_accounts = set(session.execute(
        select(Subscription.account_id).where(Subscription.status == SubscriptionStatus.ACTIVE,
                                              Subscription.paid_until_s <= horizon_s)
    ).scalars())
    due_accounts |= set(session.execute(
        select(PromisedPayment.account_id).where(PromisedPayment.status == "open",
                                                 PromisedPayment.due_at_s <= target_s)
    ).scalars())
    due_accounts |= set(session.execute(
        select(Account.id).where(Account.suspended_until_s.is_not(None),
                                 or_(Account.suspended_until_s <= target_s))
    ).scalars())
    events = []
    for account_id in sorted(due_accounts):
        acc = lock_account(session, account_id)
        events.extend(run_account_until(session, profile, acc, target_s))
    set_setting(session, CLOCK_KEY, str(target_s))
    events.sort(key=lambda e: (e.at_s, e.account_number))
    return AdvanceReport(start=start, end=from_s(target_s), events=tuple(
        ClockEventView(at=from_s(e.at_s), account_number=e.account_number, kind=e.kind,
                       detail=e.detail) for e in events))
