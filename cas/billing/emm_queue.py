"""What waits to reach the cards: rights changes not yet carried by an EMM (the
``rights_changes`` journal against each card's ``sent_rights_version``) and the EMM outbox by
status.  Read-only views for the operator API's ``/emm-queue``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cas.store.errors import RecordNotFound
from cas.store.models import Card, EmmOutbox, EmmSequence, RightsChange


@dataclass(frozen=True, slots=True, kw_only=True)
class RightsChangeView:
    id: int
    at_s: int
    cause: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CardEmmQueue:
    """What is waiting to reach one card: ``pending`` when its rights changed after the last
    unique EMM sent (``rights_version`` > ``sent_rights_version``), the journal rows behind
    that, and its rows in the EMM outbox by status."""

    serial: int
    rights_version: int
    sent_rights_version: int
    pending: bool
    pending_changes: tuple[RightsChangeView, ...]
    outbox: dict[str, int]


def card_emm_queue(session: Session, serial: int, *, limit: int = 50) -> CardEmmQueue:
    card = session.get(Card, serial)
    if card is None:
        raise RecordNotFound(f"unknown card {serial:010d}", code="UNKNOWN_CARD").with_id(
            "billing.unknown_card", serial=f"{serial:010d}")
    seq = session.get(EmmSequence, ("unique", serial))
    sent = seq.sent_rights_version if seq is not None else 0
    pending = card.rights_version > sent
    changes: list[RightsChangeView] = []
    if pending:
        # The last (version - sent) journal rows are the changes not yet carried by an EMM.
        rows = session.execute(
            select(RightsChange.id, RightsChange.at_s, RightsChange.cause)
            .where(RightsChange.card_serial == serial)
            .order_by(RightsChange.id.desc())
            .limit(min(card.rights_version - sent, limit))).all()
        changes = [RightsChangeView(id=r[0], at_s=r[1], cause=r[2]) for r in reversed(rows)]
    outbox = {str(status): int(n) for status, n in session.execute(
        select(EmmOutbox.status, func.count()).where(EmmOutbox.card_serial == serial)
        .group_by(EmmOutbox.status)).all()}
    return CardEmmQueue(serial=serial, rights_version=card.rights_version,
                        sent_rights_version=sent, pending=pending,
                        pending_changes=tuple(changes), outbox=outbox)


@dataclass(frozen=True, slots=True, kw_only=True)
class EmmQueueSummary:
    cards: int
    cards_pending: int
    journal_rows: int
    last_journal_id: int
    outbox: dict[str, int]


def emm_queue_summary(session: Session) -> EmmQueueSummary:
    sent = (select(EmmSequence.address, EmmSequence.sent_rights_version)
            .where(EmmSequence.address_kind == "unique").subquery())
    pending = int(session.execute(
        select(func.count()).select_from(Card).outerjoin(sent, sent.c.address == Card.serial)
        .where(Card.rights_version > func.coalesce(sent.c.sent_rights_version, 0))).scalar_one())
    cards = int(session.execute(select(func.count()).select_from(Card)).scalar_one())
    journal = session.execute(select(func.count(), func.max(RightsChange.id))).one()
    outbox = {str(status): int(n) for status, n in session.execute(
        select(EmmOutbox.status, func.count()).group_by(EmmOutbox.status)).all()}
    return EmmQueueSummary(cards=cards, cards_pending=pending, journal_rows=int(journal[0]),
                           last_journal_id=int(journal[1] or 0), outbox=outbox)
