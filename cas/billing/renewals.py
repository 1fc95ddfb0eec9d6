"""Packages and renewals: the account's open subscriptions, starting and extending a paid
window, and settling an account after its money or choices changed (activation, the
financial block).

Nothing here commits; callers run inside one transaction (see ``cas.store.engine``).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from cas.billing.catalog import price_for_period
from cas.billing.ledger import can_afford, floor_minor, is_suspended, notify, post, touch_rights
from cas.billing.profile import OperatorProfile
from cas.billing.txn import DAY_S
from cas.billing.vocab import OPEN_STATES, LedgerKind, SubscriptionStatus
from cas.store.models import Account, Package, Subscription
from cas.store.repo import from_s


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


def _charge_next_period(session: Session, acc: Account, sub: Subscription, pkg: Package,
                        at_s: int) -> bool:
    """Debit the next period's price at ``at_s`` and count the period, if the balance covers
    it; the caller moves the window."""
    period_no = sub.periods_billed + 1
    price = price_for_period(session, pkg, period_no)
    if not can_afford(acc, price):
        return False
    if price:
        post(session, acc, -price, at_s=at_s, kind=LedgerKind.CHARGE, ref=f"sub:{sub.id}",
             description=f"{pkg.name}: period {period_no}")
    sub.period_price_minor = price
    sub.periods_billed = period_no
    sub.reminded_until_s = None
    return True


def activate(session: Session, acc: Account, sub: Subscription, pkg: Package, at_s: int) -> bool:
    """Start a new window at ``at_s`` if the balance covers the price, debiting it (ATV+ seed:
    "the card is activated only when the balance covers the package price")."""
    if not _charge_next_period(session, acc, sub, pkg, at_s):
        return False
    sub.status = SubscriptionStatus.ACTIVE
    sub.start_s = at_s
    sub.period_start_s = at_s
    sub.paid_until_s = at_s + pkg.period_days * DAY_S
    if sub.activated_at_s is None:
        sub.activated_at_s = at_s
    return True


def renew(session: Session, acc: Account, sub: Subscription, pkg: Package, due_s: int) -> bool:
    """Extend a window by one period from its end, debiting the next period's price."""
    assert sub.paid_until_s is not None
    if not _charge_next_period(session, acc, sub, pkg, due_s):
        return False
    sub.period_start_s = sub.paid_until_s
    sub.paid_until_s = sub.paid_until_s + pkg.period_days * DAY_S
    return True


def settle(session: Session, profile: OperatorProfile, acc: Account, at_s: int,
           cause: str, *, subs: list[tuple[Subscription, Package]] | None = None) -> list[str]:
    """After money or choices changed: activate what the balance now covers (base first, then
    add-ons on an active base), and set or lift the financial block.  Returns the codes of
    packages activated.  Records a rights change when anything the card sees changed.
    ``subs``: the account's open subscriptions as they are now, if at hand (settling changes
    their states in place, never which ones are open)."""
    activated: list[str] = []
    changed = False
    if subs is None:
        subs = open_subscriptions(session, acc)
    if not is_suspended(acc, at_s):
        base = base_of(subs)
        for sub, pkg in subs:
            if sub.status not in (SubscriptionStatus.PENDING, SubscriptionStatus.BLOCKED):
                continue
            if pkg.kind == "addon" and (
                    base is None or base[0].status != SubscriptionStatus.ACTIVE):
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
    base_unpaid = base is not None and base[0].status == SubscriptionStatus.BLOCKED
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


__all__ = ["activate", "base_of", "next_price", "open_subscriptions", "renew", "settle",
           "update_block"]
