"""Shared machinery of the subscriber rules: the profile in use, locking, the ledger, the
rights journal, activation/renewal and the per-account event loop (renewals, reminders,
promised-payment expiry, end of suspension) that both the domain functions and the
simulation clock run.

Nothing here commits; callers run inside one transaction (see ``cas.store.engine``).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from cas.billing.catalog import price_for_period
from cas.billing.profile import OperatorProfile, parse_profile
from cas.errors import ConfigError
from cas.store.errors import RecordConflict, RecordNotFound
from cas.store.models import (
    Account,
    LedgerEntry,
    Notification,
    Package,
    PromisedPayment,
    Subscription,
)
from cas.store.repo import account_card_serials, from_s, get_setting, record_rights_change
from cas.text import is_ascii_digits

DAY_S = 86_400
PROFILE_KEY = "operator.profile"
PROFILE_TOML_KEY = "operator.profile_toml"
#: Subscription states whose window is part of the card's rights.
WINDOW_STATES = ("active", "blocked", "expired")
OPEN_STATES = ("pending", "active", "blocked", "expired")

P = ParamSpec("P")
R = TypeVar("R")


def atomic(fn: Callable[Concatenate[Session, P], R]) -> Callable[Concatenate[Session, P], R]:
    """Run a domain function inside a SAVEPOINT: if it raises, none of its writes survive,
    even when the caller goes on to commit other work.  Integrity errors (a unique key
    raced by a concurrent writer) become :class:`RecordConflict`."""

    @functools.wraps(fn)
    def wrapper(session: Session, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            with session.begin_nested():
                return fn(session, *args, **kwargs)
        except IntegrityError as exc:
            text = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
            code = "DUPLICATE_PAYMENT" if "payment_id" in text else "CONFLICT"
            raise RecordConflict(f"conflicting change: {text}", code=code) from exc

    return wrapper


# --- profile ----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def _parse_cached(text: str) -> OperatorProfile:
    return parse_profile(text, source="store profile")


def current_profile(session: Session) -> OperatorProfile:
    """The operator profile this store runs (set by :func:`cas.billing.setup.use_profile`).

    Read once per session (``session.info``): a transaction sees one profile throughout."""
    cached = session.info.get(_PROFILE_INFO)
    if isinstance(cached, OperatorProfile):
        return cached
    text = get_setting(session, PROFILE_TOML_KEY)
    if text is None:
        raise ConfigError("this store has no operator profile yet: run `cas operator use NAME`")
    profile = _parse_cached(text)
    session.info[_PROFILE_INFO] = profile
    return profile


_PROFILE_INFO = "cas.billing.profile"


def forget_profile(session: Session) -> None:
    session.info.pop(_PROFILE_INFO, None)


# --- accounts ---------------------------------------------------------------------------------
def lock_account(session: Session, account_id: int) -> Account:
    """Load an account row with ``SELECT … FOR UPDATE`` (fresh values, row locked on PostgreSQL;
    SQLite write transactions are already exclusive)."""
    acc = session.execute(
        select(Account).where(Account.id == account_id).with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if acc is None:
        raise RecordNotFound("unknown account", code="UNKNOWN_ACCOUNT")
    return acc


def account_by_number(session: Session, account_number: str) -> Account:
    text = str(account_number).strip()
    # Account numbers are ASCII digits: anything else cannot match (and a U+0000 would not
    # even reach PostgreSQL).
    acc = session.execute(
        select(Account).where(Account.account_number == text)
    ).scalar_one_or_none() if is_ascii_digits(text) else None
    if acc is None:
        raise RecordNotFound(f"unknown account {account_number!r}", code="UNKNOWN_ACCOUNT")
    return acc


def floor_minor(acc: Account) -> int:
    """The lowest balance the account may reach: 0 prepaid, minus the credit limit postpaid."""
    return -acc.credit_limit_minor if acc.kind == "postpaid" else 0


def can_afford(acc: Account, price_minor: int) -> bool:
    return acc.balance_minor - price_minor >= floor_minor(acc)


def post(session: Session, acc: Account, amount_minor: int, *, at_s: int, kind: str,
         ref: str | None = None, description: str = "") -> int:
    """Change the balance by ``amount_minor`` (signed) and write its ledger row.

    The balance changes with one atomic ``UPDATE … SET balance = balance + x RETURNING``, so
    no concurrent change can be lost, and the row records the balance it produced.
    """
    new_balance = session.execute(
        update(Account).where(Account.id == acc.id)
        .values(balance_minor=Account.balance_minor + amount_minor)
        .returning(Account.balance_minor)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    set_committed_value(acc, "balance_minor", int(new_balance))
    session.add(LedgerEntry(account_id=acc.id, at_s=at_s, amount_minor=amount_minor,
                            balance_after_minor=int(new_balance), kind=kind, ref=ref,
                            description=description[:256]))
    return int(new_balance)


def touch_rights(session: Session, acc: Account, at_s: int, cause: str) -> None:
    record_rights_change(session, account_card_serials(session, acc.id), at_s, cause)


def notify(session: Session, acc: Account, at_s: int, kind: str, text: str) -> None:
    """Queue the SMS/e-mail the subscriber would get (MTS seed: notifications by both)."""
    if acc.phone and acc.notify_sms:
        session.add(Notification(account_id=acc.id, at_s=at_s, channel="sms", kind=kind,
                                 text=text[:512]))
    if acc.email and acc.notify_email:
        session.add(Notification(account_id=acc.id, at_s=at_s, channel="email", kind=kind,
                                 text=text[:512]))


def is_suspended(acc: Account, at_s: int) -> bool:
    return acc.suspended_from_s is not None and acc.suspended_from_s <= at_s


# --- subscriptions ------------------------------------------------------------------------------
def open_subscriptions(session: Session, acc: Account) -> list[tuple[Subscription, Package]]:
    """Non-closed subscriptions, the base package first, then add-ons by id."""
    rows = session.execute(
        select(Subscription, Package).join(Package, Package.id == Subscription.package_id)
        .where(Subscription.account_id == acc.id, Subscription.status.in_(OPEN_STATES))
        .order_by(Subscription.id)
    ).all()
    return sorted(((r[0], r[1]) for r in rows), key=lambda r: (r[1].kind != "base", r[0].id))


def base_of(subs: list[tuple[Subscription, Package]]) -> tuple[Subscription, Package] | None:
    for sub, pkg in subs:
        if pkg.kind == "base":
            return sub, pkg
    return None


def next_price(session: Session, sub: Subscription, pkg: Package) -> int:
    return price_for_period(session, pkg, sub.periods_billed + 1)


def activate(session: Session, acc: Account, sub: Subscription, pkg: Package, at_s: int) -> bool:
    """Start a new window at ``at_s`` if the balance covers the price, debiting it (ATV+ seed:
    "the card is activated only when the balance covers the package price")."""
    period_no = sub.periods_billed + 1
    price = price_for_period(session, pkg, period_no)
    if not can_afford(acc, price):
        return False
    if price:
        post(session, acc, -price, at_s=at_s, kind="charge", ref=f"sub:{sub.id}",
             description=f"{pkg.name}: period {period_no}")
    sub.status = "active"
    sub.start_s = at_s
    sub.period_start_s = at_s
    sub.paid_until_s = at_s + pkg.period_days * DAY_S
    sub.period_price_minor = price
    sub.periods_billed = period_no
    sub.reminded_until_s = None
    if sub.activated_at_s is None:
        sub.activated_at_s = at_s
    return True


def renew(session: Session, acc: Account, sub: Subscription, pkg: Package, due_s: int) -> bool:
    """Extend a window by one period from its end, debiting the next period's price."""
    assert sub.paid_until_s is not None
    period_no = sub.periods_billed + 1
    price = price_for_period(session, pkg, period_no)
    if not can_afford(acc, price):
        return False
    if price:
        post(session, acc, -price, at_s=due_s, kind="charge", ref=f"sub:{sub.id}",
             description=f"{pkg.name}: period {period_no}")
    sub.period_start_s = sub.paid_until_s
    sub.paid_until_s = sub.paid_until_s + pkg.period_days * DAY_S
    sub.period_price_minor = price
    sub.periods_billed = period_no
    sub.reminded_until_s = None
    return True


def settle(session: Session, profile: OperatorProfile, acc: Account, at_s: int,
           cause: str) -> list[str]:
    """After money or choices changed: activate what the balance now covers (base first, then
    add-ons on an active base), and set or lift the financial block.  Returns the codes of
    packages activated.  Records a rights change when anything the card sees changed."""
    activated: list[str] = []
    changed = False
    subs = open_subscriptions(session, acc)
    if not is_suspended(acc, at_s):
        base = base_of(subs)
        for sub, pkg in subs:
            if sub.status not in ("pending", "blocked"):
                continue
            if pkg.kind == "addon" and (base is None or base[0].status != "active"):
                continue
            if activate(session, acc, sub, pkg, at_s):
                activated.append(pkg.code)
                changed = True
                notify(session, acc, at_s, "activated",
                       f"{pkg.name} is active until {from_s(sub.paid_until_s or at_s):%Y-%m-%d}")
    changed |= update_block(session, profile, acc, at_s, subs=subs)
    if changed:
        touch_rights(session, acc, at_s, cause)
    return activated


def update_block(session: Session, profile: OperatorProfile, acc: Account, at_s: int, *,
                 subs: list[tuple[Subscription, Package]] | None = None) -> bool:
    """Financial block: the base renewal is unpaid, or the balance is below the floor (an
    expired promised payment, a postpaid account over its credit limit).  Returns whether
    the block state changed.  ``subs``: the account's open subscriptions, if at hand."""
    base = base_of(subs if subs is not None else open_subscriptions(session, acc))
    base_unpaid = base is not None and base[0].status == "blocked"
    in_debt = acc.balance_minor < floor_minor(acc)
    should = base_unpaid or in_debt
    if should and acc.blocked_since_s is None:
        acc.blocked_since_s = at_s
        acc.block_cause = "unpaid_renewal" if base_unpaid else "debt"
        notify(session, acc, at_s, "financial_block",
               f"Service blocked: balance {profile.money(acc.balance_minor)}. Please pay.")
        return True
    if not should and acc.blocked_since_s is not None:
        acc.blocked_since_s = None
        acc.block_cause = None
        return True
    if should and acc.block_cause == "debt" and base_unpaid:
        acc.block_cause = "unpaid_renewal"
    return False


# --- events -------------------------------------------------------------------------------------
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
            if sub.status != "active" or sub.paid_until_s is None:
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
            from cas.billing.service import _resume_at  # local: service imports this module

            _resume_at(session, profile, acc, at_s)
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
            post(session, acc, -obj.amount_minor, at_s=at_s, kind="promised_writeoff",
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
        sub.status = "expired"
        notify(session, acc, at_s, "expired", f"{pkg.name} has ended (renewal is off)")
        return event("expired", "renewal off")
    if pkg.kind == "addon":
        base = base_of(open_subscriptions(session, acc))
        if base is None or base[0].status != "active":
            sub.status = "expired"
            notify(session, acc, at_s, "expired", f"{pkg.name} needs a base package")
            return event("expired", "no active base package")
    if renew(session, acc, sub, pkg, at_s):
        touch_rights(session, acc, at_s, "renewal")
        return event("renewed", f"until {from_s(sub.paid_until_s or 0):%Y-%m-%d}, "
                                f"balance {profile.money(acc.balance_minor)}")
    sub.status = "blocked"
    if pkg.kind == "base":
        update_block(session, profile, acc, at_s)
        touch_rights(session, acc, at_s, "financial_block")
        return event("blocked", f"insufficient balance {profile.money(acc.balance_minor)}")
    notify(session, acc, at_s, "not_renewed", f"{pkg.name}: insufficient balance")
    return event("not_renewed", "insufficient balance")


def hash_code(token: str, code: str) -> str:
    return hashlib.sha256(f"{token}:{code}".encode()).hexdigest()
