"""``cas why``: the head-end's own explanation of a locked channel, from its records.

The reason comes from :func:`cas.billing.state.explain`, i.e. :func:`cas.access.decide` run on
the entitlement state the store says the card should hold — the same function the card runs
on an ECM — so the box's reason and the head-end's reason agree whenever the card has
received its EMMs.  This module adds what only the head-end knows, in words a support agent
can read to a subscriber: package names, balance, dates, a package that waits for money, and
the fix that works (pay only what is missing; turn renewal on when the balance already
covers the price).

It also says what the head-end cannot know (``cannot_know``): whether the card got its EMMs,
which box the card is in (unless a Chip ID is given), the card's parental-PIN counter, and
whether the card's own sharing check refuses ECMs (E60 ``SHARING_DETECTED``, docs/sharing.md)
— the card's flag is read from the card (``cas diag card``), not kept at the head-end.  A card
the head-end blocked for sharing (``cas diag sharing --block``) is explained as such, with
``cas card unblock`` as the fix.
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
from cas.billing.state import account_of, card_state_at
from cas.billing.state import explain as state_explain
from cas.billing.txn import current_profile
from cas.i18n import Day, Money, Msg, Translator
from cas.reasons import Reason, info
from cas.store.models import Account, Channel, Package, PackageChannel, Subscription
from cas.store.repo import get_card


class WhyState(StrEnum):
    """The head-end's verdict in one word."""

    OPEN = "OPEN"
    LOCKED = "LOCKED"
    #: Open only once the card accepts the parental PIN — which the head-end cannot see.
    OPEN_IF_PIN = "OPEN_IF_PIN"


_EN = Translator("en")

#: What the head-end never sees, whatever the channel (catalogue keys, ``cas/i18n``) ...
CANNOT_KNOW_EMMS_MSG = Msg("why.cannot_know.emms")
CANNOT_KNOW_BOX_MSG = Msg("why.cannot_know.box")
CANNOT_KNOW_PIN_MSG = Msg("why.cannot_know.pin")
CANNOT_KNOW_SHARING_MSG = Msg("why.cannot_know.sharing")
#: ... and in English, as :attr:`Explanation.cannot_know` lists them.
CANNOT_KNOW_EMMS = _EN(CANNOT_KNOW_EMMS_MSG)
CANNOT_KNOW_BOX = _EN(CANNOT_KNOW_BOX_MSG)
CANNOT_KNOW_PIN = _EN(CANNOT_KNOW_PIN_MSG)
CANNOT_KNOW_SHARING = _EN(CANNOT_KNOW_SHARING_MSG)


@dataclass(frozen=True, slots=True, kw_only=True)
class Explanation:
    """Why channel ``channel_number`` is open or locked on card ``serial`` at ``at``."""

    serial: int
    channel_number: int
    channel_name: str
    at: datetime
    reason: Reason
    screen_code: str
    #: The cause and the fix as catalogue messages (any language: :meth:`in_language`).
    cause_msg: Msg
    fix_msg: Msg
    details: dict[str, Any] = field(default_factory=dict)
    #: ``reason`` is OPEN only because the caller said the PIN was entered (``pin_ok``).
    needs_pin: bool = False
    #: Facts the answer depends on that the head-end's records do not hold.
    cannot_know_msgs: tuple[Msg, ...] = ()

    @property
    def message(self) -> str:
        return info(self.reason).en

    @property
    def cause(self) -> str:
        return _EN(self.cause_msg)

    @property
    def fix(self) -> str:
        return _EN(self.fix_msg)

    @property
    def cannot_know(self) -> tuple[str, ...]:
        return tuple(_EN(m) for m in self.cannot_know_msgs)

    @property
    def state(self) -> WhyState:
        if self.reason is not Reason.OPEN:
            return WhyState.LOCKED
        return WhyState.OPEN_IF_PIN if self.needs_pin else WhyState.OPEN

    @property
    def is_open(self) -> bool:
        """Open without conditions (an ``OPEN_IF_PIN`` answer is not)."""
        return self.state is WhyState.OPEN

    def as_dict(self, lang: str = "en") -> dict[str, Any]:
        """The ``--json`` form; ``message``, ``cause``, ``fix`` and ``cannot_know`` in
        ``lang`` (``message_en``/``message_ru`` always both)."""
        t = Translator(lang)
        return {
            "card": f"{self.serial:010d}",
            "channel": self.channel_number,
            "channel_name": self.channel_name,
            "at": self.at.astimezone(UTC).isoformat(),
            "state": self.state.value,
            "reason": self.reason.value,
            "screen_code": self.screen_code,
            "message": info(self.reason).ru if t.lang == "ru" else info(self.reason).en,
            "message_en": info(self.reason).en,
            "message_ru": info(self.reason).ru,
            "cause": t(self.cause_msg),
            "fix": t(self.fix_msg),
            "details": self.details,
            "cannot_know": [t(m) for m in self.cannot_know_msgs],
            "lang": t.lang,
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
    names: Msg | str = ", ".join(f"'{p.name}'" for p in packages) or Msg("why.no_package")
    profile = current_profile(session)

    def money(minor: int) -> Money:
        return Money(minor, profile.minor_per_major, profile.currency)
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
        # pay-per-view (docs/ppv.md): the events the card holds, booked or reported bought
        "ppv_events": [
            {"event_id": e.event_id, "service_id": e.channel_id, "start": _date(e.start_s),
             "end": _date(e.end_s), "bought": e.impulse}
            for e in base.rights.events
        ],
    }
    cause = Msg(f"reason.{reason.value}.cause")
    fix = Msg(f"reason.{reason.value}.fix")
    rated = criteria.maturity_rating > rights.maturity_limit
    needs_pin = reason is Reason.OPEN and pin_ok and rated
    unknown = [CANNOT_KNOW_EMMS_MSG]
    if chip_id is None:
        unknown.append(CANNOT_KNOW_BOX_MSG)
    if rated:
        unknown.append(CANNOT_KNOW_PIN_MSG)
    if reason is Reason.OPEN:
        unknown.append(CANNOT_KNOW_SHARING_MSG)
    waiting = None
    if account is not None and reason in (Reason.NOT_SUBSCRIBED, Reason.CHANNEL_NOT_IN_PACKAGE,
                                          Reason.ENTITLEMENT_EXPIRED):
        waiting = _waiting(session, account, {p.id for p in packages})
    if waiting is not None:
        details["waiting_package"], cause, fix = waiting
    elif reason is Reason.NOT_SUBSCRIBED:
        cause = Msg("why.cause.not_subscribed", {"channel": ch.number, "names": names})
        fix = Msg("why.fix.subscribe", {"names": names})
    elif reason is Reason.CHANNEL_NOT_IN_PACKAGE:
        cause = Msg("why.cause.not_in_package", {"channel": ch.number, "names": names})
        fix = Msg("why.fix.subscribe", {"names": names})
    elif reason is Reason.ENTITLEMENT_EXPIRED:
        wanted = set(criteria.package_ids)
        lapsed = [e for e in rights.entitlements if e.package_id in wanted]
        ended = max((e.end_s for e in lapsed), default=None)
        had = ", ".join(f"'{p.name}'" for p in packages if p.id in {e.package_id for e in lapsed})
        cause = Msg("why.cause.expired", {"names": had or names, "day": Day(ended)})
        fix = Msg("why.fix.renew") if account is None else \
            _renewal_fix(session, account, [p for p in packages
                                            if p.id in {e.package_id for e in lapsed}] or packages)
    elif needs_pin:
        cause = Msg("why.cause.open_if_pin", {"rating": criteria.maturity_rating,
                                               "limit": rights.maturity_limit})
        fix = Msg("why.fix.enter_pin")
    elif reason is Reason.NOT_YET_VALID:
        wanted = set(criteria.package_ids)
        start = min((e.start_s for e in rights.entitlements if e.package_id in wanted), default=None)
        cause = Msg("why.cause.not_yet_valid", {"names": names, "day": Day(start)})
    elif reason is Reason.FINANCIAL_BLOCK and account is not None:
        due = _amount_due(session, account.id)
        cause = Msg("why.cause.financial_block", {"day": Day(account.blocked_since_s),
                                                   "balance": money(account.balance_minor)})
        fix = (Msg("why.fix.pay", {"amount": money(due)}) if due > 0
               else Msg("why.fix.top_up"))
        details["balance"] = profile.money(account.balance_minor)
    elif reason is Reason.CARD_SUSPENDED and account is not None:
        cause = Msg("why.cause.suspended", {"start": Day(account.suspended_from_s),
                                             "end": Day(account.suspended_until_s)})
    elif reason is Reason.REGION_BLACKOUT:
        cause = Msg("why.cause.region", {"region": rights.region,
                                          "regions": str(sorted(criteria.regions))})
    elif reason is Reason.MATURITY_LOCKED:
        cause = Msg("why.cause.maturity", {"rating": criteria.maturity_rating,
                                            "limit": rights.maturity_limit})
        fix = Msg("why.fix.pin_or_profile")
    elif reason is Reason.PAIRING_MISMATCH:
        own = (Msg("why.no_box") if state.paired_chip_id is None
               else Msg("why.box", {"chip": f"{state.paired_chip_id:08X}"}))
        here = (Msg("why.this_box") if chip_id is None
                else Msg("why.box", {"chip": f"{chip_id:08X}"}))
        cause = Msg("why.cause.pairing", {"card": f"{serial:010d}", "own": own, "here": here})
    elif reason is Reason.CARD_NOT_ACTIVE:
        cause = Msg("why.cause.not_registered", {"card": f"{serial:010d}"})
    elif reason is Reason.CARD_KILLED and get_card(session, serial).status == "blocked":
        cause = Msg("why.cause.blocked_sharing", {"card": f"{serial:010d}"})
        fix = Msg("why.fix.unblock", {"card": f"{serial:010d}"})
    return Explanation(
        serial=serial, channel_number=ch.number, channel_name=ch.name, at=at, reason=reason,
        screen_code=info(reason).screen_code, cause_msg=cause, fix_msg=fix,
        details=details, needs_pin=needs_pin, cannot_know_msgs=tuple(unknown),
    )


def _waiting(session: Session, account: Account, package_ids: set[int]
             ) -> tuple[str, Msg, Msg] | None:
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
        def m(minor: int) -> Money:
            return Money(minor, profile.minor_per_major, profile.currency)

        head = {"name": pkg.name, "price": m(price), "balance": m(account.balance_minor)}
        if short > 0:
            return (pkg.code, Msg("why.cause.waiting_short", {**head, "short": m(short)}),
                    Msg("why.fix.pay_more", {"name": pkg.name, "amount": m(short)}))
        base = next(((s, p) for s, p in subs if p.kind == "base"), None)
        if pkg.kind == "addon" and (base is None or base[0].status != "active"):
            return (pkg.code, Msg("why.cause.waiting_base", head),
                    Msg("why.fix.base_first"))
        return (pkg.code, Msg("why.cause.waiting_covered", head),
                Msg("why.fix.nothing_to_pay"))
    return None


def _renewal_fix(session: Session, account: Account, packages: list[Package]) -> Msg:
    """The fix for a lapsed subscription that works: pay only what is missing; with the
    balance already covering the price, turn renewal on (renewal off) or choose the package
    again (switched away) — never "pay"."""
    profile = current_profile(session)
    by_pkg = {p.id: (s, p) for s, p in open_subscriptions(session, account)}
    room = account.balance_minor - floor_minor(account)
    balance = Money(account.balance_minor, profile.minor_per_major, profile.currency)
    for pkg in packages:
        hit = by_pkg.get(pkg.id)
        sub = hit[0] if hit is not None else None
        price = next_price(session, sub, pkg) if sub is not None \
            else price_for_period(session, pkg, 1)
        short = price - room
        price_m = Money(price, profile.minor_per_major, profile.currency)
        covers = Msg("why.covers", {"balance": balance, "price": price_m})
        missing = Msg("why.missing", {"amount": Money(short, profile.minor_per_major,
                                                      profile.currency),
                                      "price": price_m, "balance": balance})
        name = pkg.name
        if sub is not None and sub.status == "expired":
            base = next(((s, p) for s, p in by_pkg.values() if p.kind == "base"), None)
            if pkg.kind == "addon" and (base is None or base[0].status != "active"):
                return Msg("why.fix.addon_ended", {"name": name})
            if sub.auto_renew:
                return (Msg("why.fix.choose_again_covered", {"name": name, "covers": covers})
                        if short <= 0 else
                        Msg("why.fix.choose_again_pay", {"name": name, "missing": missing}))
            # auto-renewal was off: turning it on re-chooses the package (service.set_renewal)
            return (Msg("why.fix.renewal_on_covered", {"name": name, "covers": covers})
                    if short <= 0 else
                    Msg("why.fix.renewal_on_pay", {"name": name, "missing": missing}))
        if sub is not None and sub.status in ("blocked", "active"):
            return (Msg("why.fix.renewal_charged", {"covers": covers})
                    if short <= 0 else Msg("why.fix.pay_to_renew", {"name": name,
                                                                    "missing": missing}))
        if sub is None:
            return (Msg("why.fix.subscribe_again_covered", {"name": name, "covers": covers})
                    if short <= 0 else
                    Msg("why.fix.subscribe_again_pay", {"name": name, "missing": missing}))
    return Msg("why.fix.renew_balance", {"balance": balance})


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
