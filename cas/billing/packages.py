"""Packages as the subscriber chooses them: subscribe, switch the base package (the switch
lock, the credit for unused days), prepay more periods, turn renewal off or on, and the
subscription as the personal account shows it.

Every entry point runs in a SAVEPOINT (:func:`cas.billing.txn.atomic`) and never commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cas.billing.catalog import get_package, price_for_period
from cas.billing.devices import enforce_device_limit
from cas.billing.events import prepare_account
from cas.billing.ledger import floor_minor, post, touch_rights
from cas.billing.profile import OperatorProfile
from cas.billing.renewals import activate, base_of, next_price, open_subscriptions, renew, settle
from cas.billing.txn import DAY_S, account_by_number, atomic
from cas.billing.verification import require_verified
from cas.billing.vocab import LedgerKind, SubscriptionStatus
from cas.errors import BillingError, ValidationError
from cas.i18n import Money
from cas.store.errors import RecordConflict, RecordNotFound
from cas.store.models import Account, Package, Subscription
from cas.store.repo import from_s, to_s


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionView:
    """A subscription as the personal account shows it (Uzonline: activation date, end date,
    days left)."""

    package_id: int
    package_code: str
    package_name: str
    kind: str
    status: str
    auto_renew: bool
    activated_at: datetime | None
    start: datetime | None
    end: datetime | None
    days_left: int
    next_price_minor: int



@dataclass(frozen=True, slots=True, kw_only=True)
class SwitchResult:
    account_number: str
    from_package: str
    to_package: str
    unused_days: int
    credited_minor: int
    charged_minor: int
    balance_minor: int
    next_switch_from: datetime | None



def subscription_view(session: Session, sub: Subscription, pkg: Package,
                      at_s: int) -> SubscriptionView:
    end_s = sub.paid_until_s if sub.status != SubscriptionStatus.PENDING else None
    days_left = 0
    if end_s is not None and end_s > at_s and sub.status == SubscriptionStatus.ACTIVE:
        days_left = -(-(end_s - at_s) // DAY_S)  # a started day counts as left
    return SubscriptionView(
        package_id=pkg.id, package_code=pkg.code, package_name=pkg.name, kind=pkg.kind,
        status=sub.status, auto_renew=sub.auto_renew,
        activated_at=from_s(sub.activated_at_s) if sub.activated_at_s is not None else None,
        start=(from_s(sub.start_s)
               if sub.start_s is not None and sub.status != SubscriptionStatus.PENDING else None),
        end=from_s(end_s) if end_s is not None else None,
        days_left=days_left, next_price_minor=next_price(session, sub, pkg))


def subscriptions(session: Session, *, account_number: str, at: datetime,
                  include_closed: bool = False) -> list[SubscriptionView]:
    """The account's subscriptions (base first), as of ``at``."""
    at_s = to_s(at)
    acc = account_by_number(session, account_number)
    rows: list[tuple[Subscription, Package]]
    if include_closed:
        rows = [(r[0], r[1]) for r in session.execute(
            select(Subscription, Package).join(Package, Package.id == Subscription.package_id)
            .where(Subscription.account_id == acc.id).order_by(Subscription.id))]
    else:
        rows = open_subscriptions(session, acc)
    return [subscription_view(session, s, p, at_s) for s, p in rows]



def choose_package(session: Session, profile: OperatorProfile, acc: Account, pkg: Package,
                    at_s: int) -> Package | None:
    """Record the subscriber's choice of ``pkg``; return it if choosing it means switching an
    active base package (done later, once the money is in).  Refusals happen here, before
    anything is written."""
    subs = open_subscriptions(session, acc)
    base = base_of(subs)
    if pkg.kind == "base":
        if base is not None and base[1].id == pkg.id:
            if base[0].status in (SubscriptionStatus.EXPIRED, SubscriptionStatus.BLOCKED):
                base[0].status = (SubscriptionStatus.PENDING
                                  if base[0].status == SubscriptionStatus.EXPIRED
                                  else SubscriptionStatus.BLOCKED)
                base[0].auto_renew = True
            return None
        if base is not None and base[0].status == SubscriptionStatus.ACTIVE:
            _check_switch_lock(profile, acc, at_s)
            return pkg
        if base is not None:  # pending/blocked/expired on another package: replace the choice
            base[0].status = SubscriptionStatus.CLOSED
            base[0].closed_at_s = at_s
            if base[0].paid_until_s is not None and base[0].paid_until_s > at_s:
                base[0].paid_until_s = at_s
        _add_choice(session, profile, acc, pkg, at_s)
        return None
    if base is None or base[0].status not in (SubscriptionStatus.ACTIVE,
                                               SubscriptionStatus.PENDING):
        raise BillingError(f"{pkg.name} is an add-on: it needs a base package first",
                           code="ADDON_NEEDS_BASE").with_id("addon_needs_base", package=pkg.name)
    for sub, p in subs:
        if p.id == pkg.id:
            if sub.status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PENDING):
                raise RecordConflict(f"{pkg.name} is already on this account",
                                     code="ALREADY_SUBSCRIBED").with_id(
                                         "already_on_account", package=pkg.name)
            sub.status = SubscriptionStatus.PENDING
            sub.auto_renew = True
            return None
    _add_choice(session, profile, acc, pkg, at_s)
    return None


def _add_choice(session: Session, profile: OperatorProfile, acc: Account, pkg: Package,
                at_s: int) -> None:
    session.add(Subscription(account_id=acc.id, package_id=pkg.id,
                             status=SubscriptionStatus.PENDING,
                             auto_renew=profile.auto_renew_default, created_at_s=at_s,
                             source="choice"))
    session.flush()


def _check_switch_lock(profile: OperatorProfile, acc: Account, at_s: int) -> None:
    # ATV+ seed: "a repeated package switch is possible no earlier than 30 days after the
    # last switch".
    if profile.switch_lock_days and acc.last_switch_at_s is not None:
        free_s = acc.last_switch_at_s + profile.switch_lock_days * DAY_S
        if at_s < free_s:
            raise BillingError(
                f"the package was switched on {from_s(acc.last_switch_at_s):%Y-%m-%d}; the next "
                f"switch is possible from {from_s(free_s):%Y-%m-%d %H:%M} UTC "
                f"({profile.switch_lock_days}-day rule)", code="SWITCH_LOCKED").with_id(
                "billing.package_switched_next_switch",
                last_switch_at_s=f"{from_s(acc.last_switch_at_s):%Y-%m-%d}",
                free_s=f"{from_s(free_s):%Y-%m-%d %H:%M}",
                switch_lock_days=profile.switch_lock_days)


def do_switch(session: Session, profile: OperatorProfile, acc: Account, new_pkg: Package,
               at_s: int) -> SwitchResult:
    base = base_of(open_subscriptions(session, acc))
    if base is None or base[0].status != SubscriptionStatus.ACTIVE:
        raise BillingError("no active base package to switch from", code="NO_ACTIVE_BASE").with_id(
            "no_active_base")
    old_sub, old_pkg = base
    if old_pkg.id == new_pkg.id:
        raise RecordConflict(f"{new_pkg.name} is already the base package",
                             code="ALREADY_SUBSCRIBED").with_id(
                                 "already_base", package=new_pkg.name)
    _check_switch_lock(profile, acc, at_s)
    assert old_sub.paid_until_s is not None
    unused_days = max(0, (old_sub.paid_until_s - at_s) // DAY_S)
    credit = 0
    if profile.switch_credit_unused and unused_days:
        # ATV+ seed: "the remaining sum for the unused days is put on your balance".
        credit = old_sub.period_price_minor * unused_days // old_pkg.period_days
    new_sub = Subscription(account_id=acc.id, package_id=new_pkg.id,
                           status=SubscriptionStatus.PENDING,
                           auto_renew=old_sub.auto_renew, created_at_s=at_s, source="switch")
    price = price_for_period(session, new_pkg, 1)
    if acc.balance_minor + credit - price < floor_minor(acc):
        short = price - (acc.balance_minor + credit - floor_minor(acc))
        raise BillingError(f"switching to {new_pkg.name} needs {profile.money(short)} more",
                           code="INSUFFICIENT_FUNDS").with_id(
                               "switch_short", package=new_pkg.name,
                               short=Money(short, profile.minor_per_major, profile.currency))
    if credit:
        post(session, acc, credit, at_s=at_s, kind=LedgerKind.UNUSED_CREDIT,
             ref=f"sub:{old_sub.id}",
             description=f"{old_pkg.name}: {unused_days} unused days")
    old_sub.status = SubscriptionStatus.CLOSED
    old_sub.closed_at_s = at_s
    old_sub.paid_until_s = at_s
    session.add(new_sub)
    session.flush()
    before = acc.balance_minor
    if not activate(session, acc, new_sub, new_pkg, at_s):  # pragma: no cover - checked
        raise BillingError("insufficient balance", code="INSUFFICIENT_FUNDS").with_id(
            "insufficient_balance")
    acc.last_switch_at_s = at_s
    enforce_device_limit(session, profile, acc, at_s)
    touch_rights(session, acc, at_s, "switch")
    return SwitchResult(
        account_number=acc.account_number, from_package=old_pkg.code, to_package=new_pkg.code,
        unused_days=unused_days, credited_minor=credit, charged_minor=before - acc.balance_minor,
        balance_minor=acc.balance_minor,
        next_switch_from=(from_s(at_s + profile.switch_lock_days * DAY_S)
                          if profile.switch_lock_days else None))



@atomic
def switch_package(session: Session, *, account_number: str, package: str, at: datetime
                   ) -> SwitchResult:
    """Switch the base package (ATV+ seed): at most once per ``switch_lock_days``; the unused
    whole days of the old package are credited back, the new package's price debited."""
    at_s = to_s(at)
    profile, acc = prepare_account(session, account_by_number(session, account_number).id, at_s)
    pkg = get_package(session, package)
    if pkg.kind != "base":
        raise ValidationError(f"{pkg.name} is an add-on; switching is between base packages",
                              code="NOT_A_BASE_PACKAGE").with_id("switch_addon", package=pkg.name)
    return do_switch(session, profile, acc, pkg, at_s)


@atomic
def subscribe(session: Session, *, account_number: str, package: str, at: datetime,
              verification: str | None = None) -> SubscriptionView:
    """Choose a package.  It is active at once if the balance covers the price (debited),
    otherwise pending until a payment does.  Add-ons need a base package (TV+ seed); with an
    active base package, choosing another base is a switch (:func:`switch_package`)."""
    at_s = to_s(at)
    profile, acc = prepare_account(session, account_by_number(session, account_number).id, at_s)
    if profile.subscribe_requires_verification:
        # Uzonline seed: activation by phone + account number, confirmed by the SMS code.
        require_verified(session, token=verification, account_id=acc.id, at_s=at_s)
    pkg = get_package(session, package)
    base = base_of(open_subscriptions(session, acc))
    if pkg.kind == "base" and base is not None and base[0].status == SubscriptionStatus.ACTIVE:
        if base[1].id == pkg.id:
            raise RecordConflict(f"{pkg.name} is already active",
                                 code="ALREADY_SUBSCRIBED").with_id(
                "already_active", package=pkg.name)
        raise RecordConflict(f"the account already has the base package {base[1].name}; "
                             "use a package switch", code="HAS_BASE_PACKAGE").with_id(
                                 "has_base", package=base[1].name)
    if pkg.kind == "base" and base is not None and base[1].id == pkg.id \
            and base[0].status == SubscriptionStatus.PENDING:
        raise RecordConflict(f"{pkg.name} is already chosen and waits for payment",
                             code="ALREADY_SUBSCRIBED").with_id("already_chosen", package=pkg.name)
    choose_package(session, profile, acc, pkg, at_s)
    settle(session, profile, acc, at_s, "subscribe")
    for sub, p in open_subscriptions(session, acc):
        if p.id == pkg.id:
            return subscription_view(session, sub, p, at_s)
    raise RecordNotFound("subscription vanished", code="UNKNOWN_SUBSCRIPTION").with_id(
        "billing.subscription_vanished")  # pragma: no cover


@atomic
def extend(session: Session, *, account_number: str, package: str, at: datetime,
           periods: int = 1) -> SubscriptionView:
    """Prepay ``periods`` more periods of an active subscription (Uzonline "+ Продлить")."""
    at_s = to_s(at)
    if isinstance(periods, bool) or not isinstance(periods, int) or not 1 <= periods <= 24:
        raise ValidationError("periods must be 1..24", code="BAD_PERIODS").with_id("bad_periods")
    profile, acc = prepare_account(session, account_by_number(session, account_number).id, at_s)
    pkg = get_package(session, package)
    sub = next((s for s, p in open_subscriptions(session, acc) if p.id == pkg.id), None)
    if sub is None or sub.status != SubscriptionStatus.ACTIVE:
        raise BillingError(f"{pkg.name} is not active on this account", code="NOT_ACTIVE").with_id(
            "not_active", package=pkg.name)
    for _ in range(periods):
        assert sub.paid_until_s is not None
        if not renew(session, acc, sub, pkg, at_s):
            raise BillingError(
                f"extending {pkg.name} needs {profile.money(next_price(session, sub, pkg))}; "
                f"balance {profile.money(acc.balance_minor)}", code="INSUFFICIENT_FUNDS").with_id(
                "billing.extending_needs_balance", name=pkg.name,
                session=profile.money(next_price(session, sub, pkg)),
                balance_minor=profile.money(acc.balance_minor))
    touch_rights(session, acc, at_s, "extend")
    return subscription_view(session, sub, pkg, at_s)


@atomic
def set_renewal(session: Session, *, account_number: str, on: bool, at: datetime,
                package: str | None = None) -> list[SubscriptionView]:
    """Turn auto-renewal off or on (TV+ seed) without losing prepaid days: turning it off
    keeps the paid window; turning it on again before the window ends charges nothing now;
    after it ended, the package is chosen again and activates when the balance covers it."""
    at_s = to_s(at)
    profile, acc = prepare_account(session, account_by_number(session, account_number).id, at_s)
    if not profile.renewal_toggle:
        raise BillingError(f"{profile.name} renews automatically; it cannot be switched off",
                           code="RENEWAL_FIXED").with_id("renewal_fixed", operator=profile.name)
    targets = [(s, p) for s, p in open_subscriptions(session, acc)
               if package is None or p.code == package or str(p.id) == str(package)]
    if not targets:
        raise RecordNotFound("no such subscription on this account", code="UNKNOWN_SUBSCRIPTION").with_id(
            "billing.no_such_subscription_account")
    for sub, _pkg in targets:
        sub.auto_renew = bool(on)
        if not on and sub.status == SubscriptionStatus.BLOCKED:
            # Nothing more to charge: the block is lifted below.
            sub.status = SubscriptionStatus.EXPIRED
        elif on and sub.status == SubscriptionStatus.EXPIRED:
            sub.status = SubscriptionStatus.PENDING
    settle(session, profile, acc, at_s, "renewal")
    return [subscription_view(session, s, p, at_s) for s, p in open_subscriptions(session, acc)]


__all__ = ["SubscriptionView", "SwitchResult", "choose_package", "do_switch", "extend",
           "set_renewal", "subscribe", "subscription_view", "subscriptions", "switch_package"]
