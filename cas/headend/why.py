"""``cas why``: the head-end's own explanation of a locked channel, from its records.

The reason comes from :func:`cas.billing.state.explain`, i.e. :func:`cas.access.decide` run on
the entitlement state the store says the card should hold — the same function the card runs
on an ECM — so the box's reason and the head-end's reason agree whenever the card has
received its EMMs.  This module adds what only the head-end knows, in words a support agent
can read to a subscriber: package names, balance, dates, a package that waits for money, and
the fix that works (pay only what is missing; turn renewal on when the balance already
covers the price).

It also says what the head-end cannot know (``cannot_know``): whether the card got its EMMs,
which box the card is in (unless a Chip ID is given) and the card's parental-PIN counter.
The last one matters for a channel rated above the card's limit: with ``pin_ok`` the answer
is not OPEN but ``OPEN_IF_PIN`` — it opens only if the card accepts the PIN, and a card
whose PIN is blocked after wrong tries (E23 ``PIN_BLOCKED`` on the box) refuses even the
right one until a RESET_PIN EMM.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cas.billing.catalog import access_criteria, get_channel, price_for_period
from cas.billing.ledger import floor_minor
from cas.billing.renewals import next_price, open_subscriptions
from cas.billing.service import money_text
from cas.billing.state import account_of, card_state_at
from cas.billing.state import explain as state_explain
from cas.billing.txn import current_profile
from cas.reasons import Reason, info
from cas.store.models import Account, Channel, Package, PackageChannel, Subscription


class WhyState(StrEnum):
    """The head-end's verdict in one word."""

    OPEN = "OPEN"
    LOCKED = "LOCKED"
    #: Open only once the card accepts the parental PIN — which the head-end cannot see.
    OPEN_IF_PIN = "OPEN_IF_PIN"


#: What the head-end never sees, whatever the channel.
CANNOT_KNOW_EMMS = ("whether the card has received the EMMs carrying these rights (the head-end "
                    "explains what the card should hold; read the card: cas diag card)")
CANNOT_KNOW_BOX = "which box the card is in (give the box's Chip ID to check the pairing)"
CANNOT_KNOW_PIN = ("the card's parental-PIN counter: a PIN blocked after wrong tries (E23 "
                   "PIN_BLOCKED on the box) keeps the channel locked even with the right PIN, "
                   "until a RESET_PIN EMM")


@dataclass(frozen=True, slots=True, kw_only=True)
class Explanation:
    """Why channel ``channel_number`` is open or locked on card ``serial`` at ``at``."""

    serial: int
    channel_number: int
    channel_name: str
    at: datetime
    reason: Reason
    screen_code: str
    message: str
    cause: str
    fix: str
    details: dict[str, Any] = field(default_factory=dict)
    #: ``reason`` is OPEN only because the caller said the PIN was entered (``pin_ok``).
    needs_pin: bool = False
    #: Facts the answer depends on that the head-end's records do not hold.
    cannot_know: tuple[str, ...] = ()

    @property
    def state(self) -> WhyState:
        if self.reason is not Reason.OPEN:
            return WhyState.LOCKED
        return WhyState.OPEN_IF_PIN if self.needs_pin else WhyState.OPEN

    @property
    def is_open(self) -> bool:
        """Open without conditions (an ``OPEN_IF_PIN`` answer is not)."""
        return self.state is WhyState.OPEN

    def as_dict(self) -> dict[str, Any]:
        return {
            "card": f"{self.serial:010d}",
            "channel": self.channel_number,
            "channel_name": self.channel_name,
            "at": self.at.astimezone(UTC).isoformat(),
            "state": self.state.value,
            "reason": self.reason.value,
            "screen_code": self.screen_code,
            "message": self.message,
            "cause": self.cause,
            "fix": self.fix,
            "details": self.details,
            "cannot_know": list(self.cannot_know),
        }


def _date(ts: int | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _packages_of(session: Session, service_id: int) -> list[Package]:
    rows = session.scalars(
        select(Package).join(PackageChannel, PackageChannel.package_id == Package.id)
        .where(PackageChannel.service_id == service_id).order_by(Package.id)
    )
    return list(rows)


def explain(session: Session, serial: int, channel: int | str, at: datetime, *,
            chip_id: int | None = None, pin_ok: bool = False) -> Explanation:
    """The head-end's verdict for one card and channel (``chip_id``: the box it sits in)."""
    base = state_explain(session, serial=serial, channel=channel, at=at, chip_id=chip_id,
                         pin_ok=pin_ok)
    ch: Channel = get_channel(session, channel)
    state = card_state_at(session, serial, at)
    rights = state.rights
    account = account_of(session, serial)
    criteria = access_criteria(session, ch)
    packages = _packages_of(session, ch.service_id)
    names = ", ".join(f"'{p.name}'" for p in packages) or "no package"
    reason = base.reason
    details: dict[str, Any] = {
        "account": account.account_number if account else None,
        "card_status": rights.status.name,
        "card_region": rights.region,
        "maturity_limit": rights.maturity_limit,
        "channel_packages": [p.name for p in packages],
        "channel_regions": list(criteria.regions),
        "channel_maturity": criteria.maturity_rating,
        "entitlements": [
            {"package_id": e.package_id, "start": _date(e.start_s), "end": _date(e.end_s)}
            for e in rights.entitlements
        ],
        "paired_chip_id": None if state.paired_chip_id is None else f"{state.paired_chip_id:08X}",
    }
    cause = info(reason).en
    fix = info(reason).fix_en
    rated = criteria.maturity_rating > rights.maturity_limit
    needs_pin = reason is Reason.OPEN and pin_ok and rated
    unknown = [CANNOT_KNOW_EMMS]
    if chip_id is None:
        unknown.append(CANNOT_KNOW_BOX)
    if rated:
        unknown.append(CANNOT_KNOW_PIN)
    waiting = None
    if account is not None and reason in (Reason.NOT_SUBSCRIBED, Reason.CHANNEL_NOT_IN_PACKAGE,
                                          Reason.ENTITLEMENT_EXPIRED):
        waiting = _waiting(session, account, {p.id for p in packages})
    if waiting is not None:
        details["waiting_package"], cause, fix = waiting
    elif reason is Reason.NOT_SUBSCRIBED:
        cause = f"no package connected; channel {ch.number} is in {names}"
        fix = f"subscribe to {names}"
    elif reason is Reason.CHANNEL_NOT_IN_PACKAGE:
        cause = f"package {names} not connected (channel {ch.number} is not in the connected ones)"
        fix = f"subscribe to {names}"
    elif reason is Reason.ENTITLEMENT_EXPIRED:
        wanted = set(criteria.package_ids)
        lapsed = [e for e in rights.entitlements if e.package_id in wanted]
        ended = max((e.end_s for e in lapsed), default=None)
        had = ", ".join(f"'{p.name}'" for p in packages if p.id in {e.package_id for e in lapsed})
        cause = f"subscription to {had or names} ended on {_date(ended)}"
        fix = "pay to renew the subscription" if account is None else \
            _renewal_fix(session, account, [p for p in packages
                                            if p.id in {e.package_id for e in lapsed}] or packages)
    elif needs_pin:
        cause = (f"channel rated {criteria.maturity_rating}+, card limit {rights.maturity_limit}"
                 " (kids profile): open only once the card accepts the parental PIN")
        fix = ("enter the parental PIN; if the box shows E23 PIN_BLOCKED, the card refuses "
               "every PIN: reset it (RESET_PIN EMM)")
    elif reason is Reason.NOT_YET_VALID:
        wanted = set(criteria.package_ids)
        start = min((e.start_s for e in rights.entitlements if e.package_id in wanted), default=None)
        cause = f"subscription to {names} starts on {_date(start)}"
    elif reason is Reason.FINANCIAL_BLOCK and account is not None:
        due = _amount_due(session, account.id)
        cause = (f"financial block since {_date(account.blocked_since_s)}: balance "
                 f"{money_text(session, account.balance_minor)}")
        fix = f"pay {money_text(session, due)}" if due > 0 else "top up the balance"
        details["balance"] = money_text(session, account.balance_minor)
    elif reason is Reason.CARD_SUSPENDED and account is not None:
        cause = (f"service suspended from {_date(account.suspended_from_s)}"
                 f" until {_date(account.suspended_until_s)}")
    elif reason is Reason.REGION_BLACKOUT:
        cause = (f"card region {rights.region} is outside the channel's regions "
                 f"{sorted(criteria.regions)}")
    elif reason is Reason.MATURITY_LOCKED:
        cause = (f"channel rated {criteria.maturity_rating}+, card limit {rights.maturity_limit}"
                 " (kids profile)")
        fix = ("enter the parental PIN, or change the kids profile; if the box shows E23 "
               "PIN_BLOCKED, the card refuses every PIN: reset it (RESET_PIN EMM)")
    elif reason is Reason.PAIRING_MISMATCH:
        own = "no box" if state.paired_chip_id is None else f"box {state.paired_chip_id:08X}"
        here = "this box" if chip_id is None else f"box {chip_id:08X}"
        cause = f"card {serial:010d} is paired with {own}, inserted in {here}"
    elif reason is Reason.CARD_NOT_ACTIVE:
        cause = f"card {serial:010d} is not registered to an account"
    return Explanation(
        serial=serial, channel_number=ch.number, channel_name=ch.name, at=at, reason=reason,
        screen_code=info(reason).screen_code, message=info(reason).en, cause=cause, fix=fix,
        details=details, needs_pin=needs_pin, cannot_know=tuple(unknown),
    )


def _waiting(session: Session, account: Account, package_ids: set[int]
             ) -> tuple[str, str, str] | None:
    """A package with this channel chosen on the account and still waiting (``pending``):
    its code, the cause and the fix, with what is missing.  ``None`` if there is none."""
    profile = current_profile(session)
    subs = open_subscriptions(session, account)
    for sub, pkg in subs:
        if sub.status != "pending" or pkg.id not in package_ids:
            continue
        price = next_price(session, sub, pkg)
        room = account.balance_minor - floor_minor(account)
        short = price - room
        head = (f"package '{pkg.name}' is chosen and waits for payment: price "
                f"{profile.money(price)}, balance {profile.money(account.balance_minor)}")
        if short > 0:
            return (pkg.code, f"{head}, {profile.money(short)} short",
                    f"pay {profile.money(short)} more: '{pkg.name}' activates as soon as the "
                    "balance covers its price")
        base = next(((s, p) for s, p in subs if p.kind == "base"), None)
        if pkg.kind == "addon" and (base is None or base[0].status != "active"):
            return (pkg.code, f"{head}; it is an add-on and waits for the base package",
                    "connect a base package first; the add-on follows")
        return (pkg.code, f"{head}; the balance covers it",
                "nothing to pay: it activates when the account is next settled "
                "(a payment, or the clock advancing)")
    return None


def _renewal_fix(session: Session, account: Account, packages: list[Package]) -> str:
    """The fix for a lapsed subscription that works: pay only what is missing; with the
    balance already covering the price, turn renewal on (renewal off) or choose the package
    again (switched away) — never "pay"."""
    profile = current_profile(session)
    by_pkg = {p.id: (s, p) for s, p in open_subscriptions(session, account)}
    room = account.balance_minor - floor_minor(account)
    balance = profile.money(account.balance_minor)
    for pkg in packages:
        hit = by_pkg.get(pkg.id)
        sub = hit[0] if hit is not None else None
        price = next_price(session, sub, pkg) if sub is not None \
            else price_for_period(session, pkg, 1)
        short = price - room
        covers = f"the balance {balance} covers its price {profile.money(price)}"
        missing = f"pay {profile.money(short)} (price {profile.money(price)}, balance {balance})"
        if sub is not None and sub.status == "expired":
            base = next(((s, p) for s, p in by_pkg.values() if p.kind == "base"), None)
            if pkg.kind == "addon" and (base is None or base[0].status != "active"):
                return f"connect a base package first: the add-on '{pkg.name}' ended with it"
            if sub.auto_renew:
                return (f"choose '{pkg.name}' again: {covers}, so it restarts at once"
                        if short <= 0 else f"choose '{pkg.name}' again and {missing}")
            # auto-renewal was off: turning it on re-chooses the package (service.set_renewal)
            return (f"turn auto-renewal on for '{pkg.name}': {covers}, so it restarts at once"
                    if short <= 0 else f"turn auto-renewal on for '{pkg.name}' and {missing}")
        if sub is not None and sub.status in ("blocked", "active"):
            return (f"nothing to pay: {covers}; the renewal is charged when the account is "
                    "next settled (a payment, or the clock advancing)"
                    if short <= 0 else f"{missing} to renew '{pkg.name}'")
        if sub is None:
            return (f"subscribe to '{pkg.name}' again: {covers}, so it starts at once"
                    if short <= 0 else f"subscribe to '{pkg.name}' again and {missing}")
    return f"pay to renew (balance {balance})"


def _amount_due(session: Session, account_id: int) -> int:
    """What the subscriber must pay to lift a block: the cheapest blocked package's price
    less a positive balance (never negative)."""
    from cas.store.models import Account

    acc = session.get(Account, account_id)
    prices = list(session.scalars(
        select(Subscription.period_price_minor).where(
            Subscription.account_id == account_id, Subscription.status == "blocked")))
    if not prices:
        prices = list(session.scalars(
            select(Package.price_minor).join(Subscription, Subscription.package_id == Package.id)
            .where(Subscription.account_id == account_id)))
    need = min((p for p in prices if p > 0), default=0)
    balance = acc.balance_minor if acc is not None else 0
    return max(need - balance, 0)
