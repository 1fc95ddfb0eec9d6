"""``cas why``: the head-end's own explanation of a locked channel, from its records.

The reason comes from :func:`cas.billing.state.explain`, i.e. :func:`cas.access.decide` run on
the entitlement state the store says the card should hold — the same function the card runs
on an ECM — so the box's reason and the head-end's reason agree whenever the card has
received its EMMs.  This module adds what only the head-end knows, in words a support agent
can read to a subscriber: package names, balance, dates and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cas.billing.catalog import access_criteria, get_channel
from cas.billing.service import money_text
from cas.billing.state import account_of, card_state_at
from cas.billing.state import explain as state_explain
from cas.reasons import Reason, info
from cas.store.models import Channel, Package, PackageChannel, Subscription


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

    @property
    def is_open(self) -> bool:
        return self.reason is Reason.OPEN

    def as_dict(self) -> dict[str, Any]:
        return {
            "card": f"{self.serial:010d}",
            "channel": self.channel_number,
            "channel_name": self.channel_name,
            "at": self.at.astimezone(UTC).isoformat(),
            "state": "OPEN" if self.is_open else "LOCKED",
            "reason": self.reason.value,
            "screen_code": self.screen_code,
            "message": self.message,
            "cause": self.cause,
            "fix": self.fix,
            "details": self.details,
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
    if reason is Reason.NOT_SUBSCRIBED:
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
            f"pay to renew (balance {money_text(session, account.balance_minor)})"
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
    elif reason is Reason.PAIRING_MISMATCH:
        own = "no box" if state.paired_chip_id is None else f"box {state.paired_chip_id:08X}"
        here = "this box" if chip_id is None else f"box {chip_id:08X}"
        cause = f"card {serial:010d} is paired with {own}, inserted in {here}"
    elif reason is Reason.CARD_NOT_ACTIVE:
        cause = f"card {serial:010d} is not registered to an account"
    return Explanation(
        serial=serial, channel_number=ch.number, channel_name=ch.name, at=at, reason=reason,
        screen_code=info(reason).screen_code, message=info(reason).en, cause=cause, fix=fix,
        details=details,
    )


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
