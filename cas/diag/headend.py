"""What the head-end's records say about one card, for ``cas diag visit --db``.

Per channel the head-end's own verdict comes from :func:`cas.headend.why.explain` (``cas
why``: :func:`cas.access.decide` on the entitlement state the store says the card should
hold, plus pairing), so the visit's head-end side and ``cas why`` cannot disagree.  Around it
the facts a support agent reads to the subscriber: account, balance, block, subscriptions,
the last ledger entries, the box the card is paired with, and the EMM bookkeeping (the
sequence number the head-end has issued for the card, when its rights last changed) that
tells "the card did not get its EMMs" apart from "the head-end never sent them".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cas.billing.service import money_text
from cas.billing.txn import current_profile
from cas.errors import CasError
from cas.headend.why import Explanation, explain
from cas.i18n import Day, Money, Translator
from cas.reasons import Reason
from cas.store.models import (
    Account,
    Box,
    Card,
    EmmSequence,
    LedgerEntry,
    Package,
    RightsChange,
    Subscription,
)


def day(ts: int | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelView:
    """The head-end's verdict on one channel (or why it has none)."""

    service_id: int
    explanation: Explanation | None
    error: str | None = None

    @property
    def reason(self) -> Reason | None:
        return self.explanation.reason if self.explanation is not None else None


@dataclass(frozen=True, slots=True, kw_only=True)
class HeadendFacts:
    at: datetime
    serial: int
    registered: bool
    card_status: str | None = None
    card_region: int | None = None
    paired_chip_id: int | None = None
    paired_box: dict[str, Any] | None = None
    box_here: dict[str, Any] | None = None  # the store's record of the box being diagnosed
    account_number: str | None = None
    holder: str | None = None
    account_kind: str | None = None
    balance_minor: int | None = None
    balance: str | None = None
    #: the balance as an amount, printed in the reader's language (``balance`` is English)
    balance_money: Money | None = None
    blocked_since_s: int | None = None
    block_cause: str | None = None
    suspended_from_s: int | None = None
    suspended_until_s: int | None = None
    rights_version: int | None = None
    sent_rights_version: int | None = None
    rights_changed_at_s: int | None = None
    emm_issued_seq: int | None = None  # last unique EMM sequence number the head-end used
    rights_changes: tuple[tuple[int, str], ...] = ()  # newest first: (at_s, cause)
    subscriptions: tuple[dict[str, Any], ...] = ()
    ledger: tuple[dict[str, Any], ...] = ()
    channels: dict[int, ChannelView] = field(default_factory=dict)

    def channel(self, service_id: int) -> ChannelView | None:
        return self.channels.get(service_id)

    def missing_since_s(self, card_seq: int) -> int | None:
        """When the card began to miss EMMs: the rights change behind the oldest EMM the card
        lacks (one EMM per change — the generator sends the whole state at every change)."""
        if self.emm_issued_seq is None or card_seq >= self.emm_issued_seq:
            return None
        lag = self.emm_issued_seq - card_seq
        if self.rights_changes:
            return self.rights_changes[min(lag, len(self.rights_changes)) - 1][0]
        return self.rights_changed_at_s

    def to_json(self, lang: str = "en") -> dict[str, Any]:
        """The facts as data; amounts and days of subscriptions, ledger and balance in
        ``lang``'s form (English: ``2510.00 KZT``, ``2026-11-01``; Russian: ``2 510,00 ₸``,
        ``01.11.2026``)."""
        t = Translator(lang)

        def shown(value: Any) -> Any:
            if isinstance(value, Day):
                return None if value.at_s is None else t.value(value)
            return t.value(value) if isinstance(value, Money) else value

        def days(ts: int | None) -> str | None:
            return None if ts is None else t.date(ts)

        return {
            "at": self.at.astimezone(UTC).isoformat(),
            "card": f"{self.serial:010d}",
            "registered": self.registered,
            "card_status": self.card_status,
            "card_region": self.card_region,
            "paired_chip_id": None if self.paired_chip_id is None else f"{self.paired_chip_id:08X}",
            "paired_box": self.paired_box,
            "box_here": self.box_here,
            "account": self.account_number,
            "holder": self.holder,
            "account_kind": self.account_kind,
            "balance": (self.balance if self.balance_money is None
                        else shown(self.balance_money)),
            "blocked_since": days(self.blocked_since_s),
            "block_cause": self.block_cause,
            "suspended_from": days(self.suspended_from_s),
            "suspended_until": days(self.suspended_until_s),
            "rights_version": self.rights_version,
            "sent_rights_version": self.sent_rights_version,
            "rights_changed": days(self.rights_changed_at_s),
            "emm_issued_seq": self.emm_issued_seq,
            "rights_changes": [{"at": days(at_s), "cause": c} for at_s, c in self.rights_changes],
            "subscriptions": [{k: shown(v) for k, v in s.items()} for s in self.subscriptions],
            "ledger": [{k: shown(v) for k, v in e.items()} for e in self.ledger],
            "channels": {str(sid): (v.explanation.as_dict() if v.explanation else
                                    {"error": v.error}) for sid, v in self.channels.items()},
        }


def channel_numbers(session: Session, service_ids: Iterable[int]) -> dict[int, int]:
    """service id -> the channel number of the head-end's lineup (no card needed)."""
    from cas.store.models import Channel

    wanted = list(service_ids)
    if not wanted:
        return {}
    return {int(sid): int(num) for sid, num in session.execute(
        select(Channel.service_id, Channel.number).where(Channel.service_id.in_(wanted)))}


def _box_dict(session: Session, box: Box | None) -> dict[str, Any] | None:
    if box is None:
        return None
    acc = session.get(Account, box.account_id) if box.account_id is not None else None
    return {"chip_id": f"{box.chip_id:08X}", "vendor": box.vendor, "model": box.model,
            "firmware_version": box.firmware_version,
            "account": acc.account_number if acc else None}


def _issued_seq(session: Session, seq: EmmSequence | None) -> int:
    """The last unique EMM number the head-end used for the card: its own row's, or the
    epoch base of the last full refresh when that is newer (a refresh numbers its EMMs from
    the epoch without a row per card: :mod:`cas.store.emmseq`)."""
    from cas.store.emmseq import last_epoch

    own = seq.next_seq - 1 if seq is not None else 0
    return max(own, last_epoch(session, "unique"))


def collect(session: Session, serial: int, at: datetime, *, chip_id: int | None,
            service_ids: Iterable[int], pin_ok: bool = False) -> HeadendFacts:
    """Everything the head-end knows about card ``serial`` at ``at`` (read only)."""
    card = session.get(Card, serial)
    sids = list(dict.fromkeys(service_ids))
    box_here = _box_dict(session, session.get(Box, chip_id)) if chip_id is not None else None
    if card is None:
        return HeadendFacts(at=at, serial=serial, registered=False, box_here=box_here)
    acc = session.get(Account, card.account_id) if card.account_id is not None else None
    seq = session.get(EmmSequence, ("unique", serial))
    changes = tuple((int(r.at_s), r.cause) for r in session.scalars(
        select(RightsChange).where(RightsChange.card_serial == serial)
        .order_by(RightsChange.id.desc()).limit(20)))  # journal order, newest first
    subs: list[dict[str, Any]] = []
    ledger: list[dict[str, Any]] = []
    profile = current_profile(session)

    def money(minor: int) -> Money:
        return Money(minor, profile.minor_per_major, profile.currency)

    if acc is not None:
        for sub, pkg in session.execute(
                select(Subscription, Package).join(Package, Package.id == Subscription.package_id)
                .where(Subscription.account_id == acc.id).order_by(Subscription.id)):
            subs.append({"package": pkg.name, "code": pkg.code, "kind": pkg.kind,
                         "status": sub.status, "start": Day(sub.start_s),
                         "paid_until": Day(sub.paid_until_s), "auto_renew": sub.auto_renew,
                         "price": money(sub.period_price_minor or pkg.price_minor)})
        for row in session.scalars(select(LedgerEntry).where(LedgerEntry.account_id == acc.id)
                                   .order_by(LedgerEntry.id.desc()).limit(8)):
            ledger.append({"at": Day(row.at_s), "kind": row.kind,
                           "amount": money(row.amount_minor),
                           "balance_after": money(row.balance_after_minor),
                           "description": row.description})
    channels: dict[int, ChannelView] = {}
    for sid in sids:
        try:
            channels[sid] = ChannelView(service_id=sid, explanation=explain(
                session, serial, f"sid:{sid}", at, chip_id=chip_id, pin_ok=pin_ok))
        except CasError as exc:
            channels[sid] = ChannelView(service_id=sid, explanation=None, error=str(exc))
    paired = session.get(Box, card.paired_chip_id) if card.paired_chip_id is not None else None
    return HeadendFacts(
        at=at, serial=serial, registered=True, card_status=card.status,
        card_region=card.region, paired_chip_id=card.paired_chip_id,
        paired_box=_box_dict(session, paired), box_here=box_here,
        account_number=acc.account_number if acc else None,
        holder=" ".join(p for p in (acc.surname, acc.name, acc.patronymic) if p) if acc else None,
        account_kind=acc.kind if acc else None,
        balance_minor=acc.balance_minor if acc else None,
        balance=money_text(session, acc.balance_minor) if acc else None,
        balance_money=money(acc.balance_minor) if acc else None,
        blocked_since_s=acc.blocked_since_s if acc else None,
        block_cause=acc.block_cause if acc else None,
        suspended_from_s=acc.suspended_from_s if acc else None,
        suspended_until_s=acc.suspended_until_s if acc else None,
        rights_version=card.rights_version,
        sent_rights_version=seq.sent_rights_version if seq is not None else 0,
        rights_changed_at_s=card.rights_changed_at_s,
        emm_issued_seq=_issued_seq(session, seq),
        rights_changes=changes, subscriptions=tuple(subs), ledger=tuple(ledger),
        channels=channels)
