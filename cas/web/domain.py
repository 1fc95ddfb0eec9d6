"""The few domain functions the web layer needs that the billing layer does not offer (yet):
EMM queue status, payment look-up by id, portal logins and passwords, SMS codes written to
the notification outbox, and API keys.  Like the billing functions they take a session and
never commit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cas.billing.accounts import normalise_phone, start_verification
from cas.billing.txn import account_by_number
from cas.errors import ValidationError
from cas.store.errors import RecordConflict, RecordNotFound
from cas.store.models import (
    Account,
    Card,
    EmmOutbox,
    EmmSequence,
    Notification,
    Payment,
    RightsChange,
)
from cas.web.models import WebApiKey, WebCredential
from cas.web.security import MintedKey, hash_password, mint_api_key

_ACCOUNT_NUMBER = re.compile(r"^[0-9]{4,20}$")


# --- EMM queue ------------------------------------------------------------------------------------
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
        raise RecordNotFound(f"unknown card {serial:010d}", code="UNKNOWN_CARD")
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


# --- payments ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentView:
    payment_id: str
    account_number: str
    at_s: int
    amount_minor: int
    method: str
    by: str
    ref: str
    package: str | None


def get_payment(session: Session, payment_id: str) -> PaymentView:
    row = session.execute(select(Payment, Account.account_number)
                          .join(Account, Account.id == Payment.account_id)
                          .where(Payment.payment_id == payment_id)).first()
    if row is None:
        raise RecordNotFound(f"unknown payment {payment_id!r}", code="UNKNOWN_PAYMENT")
    p, number = row
    return PaymentView(payment_id=p.payment_id, account_number=number, at_s=p.at_s,
                       amount_minor=p.amount_minor, method=p.method, by=p.by_kind, ref=p.ref,
                       package=p.package_code)


# --- portal logins ------------------------------------------------------------------------------
def account_for_login(session: Session, identifier: str) -> Account | None:
    """The account a subscriber means by ``identifier``: an account number, or a phone number
    registered on exactly one account (MTS seed: "log in by account number or by phone").
    None when nothing — or more than one account — matches; the caller answers the same."""
    text = str(identifier).strip()
    if not text or len(text) > 32:
        return None
    if _ACCOUNT_NUMBER.match(text):
        acc = session.execute(select(Account).where(Account.account_number == text)).scalar()
        if acc is not None:
            return acc
    try:
        phone = normalise_phone(text)
    except ValidationError:
        return None
    variants = {phone, phone.lstrip("+"), "+" + phone.lstrip("+")}
    rows = session.execute(select(Account).where(Account.phone.in_(variants)).limit(2)).scalars()
    found = list(rows)
    return found[0] if len(found) == 1 else None


def password_hash_of(session: Session, account_id: int) -> str | None:
    row = session.get(WebCredential, account_id)
    return row.password_hash if row is not None else None


def set_portal_password(session: Session, *, account_number: str, password: str,
                        wall_s: int) -> None:
    """Set (or replace) the portal password of an account (argon2id hash only)."""
    acc = account_by_number(session, account_number)
    digest = hash_password(password)
    row = session.get(WebCredential, acc.id)
    if row is None:
        session.add(WebCredential(account_id=acc.id, password_hash=digest, updated_at_s=wall_s))
    else:
        row.password_hash = digest
        row.updated_at_s = wall_s
    session.flush()


def send_sms_code(session: Session, *, account: Account, phone: str, at: datetime) -> str:
    """Start an SMS verification (billing layer) and put the simulated SMS with the code in the
    notification outbox.  Returns the verification token; the code itself is only in the SMS."""
    challenge = start_verification(session, account_number=account.account_number,
                                   phone=phone, at=at)
    session.add(Notification(account_id=account.id, at_s=int(at.timestamp()), channel="sms",
                             kind="verification_code",
                             text=f"Code {challenge.code} (to {challenge.phone}); valid until "
                                  "you log out"))
    session.flush()
    return challenge.token


def owns_card(session: Session, account_id: int, serial: int) -> bool:
    return session.execute(select(Card.serial).where(
        Card.serial == serial, Card.account_id == account_id)).first() is not None


# --- API keys -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKeyView:
    key_id: str
    operator: str
    label: str
    created_at_s: int
    last_used_at_s: int | None
    revoked_at_s: int | None


def create_api_key(session: Session, *, operator: str, label: str, wall_s: int) -> MintedKey:
    minted = mint_api_key(operator)
    session.add(WebApiKey(key_id=minted.key_id, operator=operator, label=label[:128],
                          secret_sha256=minted.secret_sha256, created_at_s=wall_s))
    session.flush()
    return minted


def list_api_keys(session: Session) -> list[ApiKeyView]:
    return [ApiKeyView(key_id=k.key_id, operator=k.operator, label=k.label,
                       created_at_s=k.created_at_s, last_used_at_s=k.last_used_at_s,
                       revoked_at_s=k.revoked_at_s)
            for k in session.execute(select(WebApiKey).order_by(WebApiKey.id)).scalars()]


def revoke_api_key(session: Session, *, key_id: str, wall_s: int) -> None:
    row = session.execute(select(WebApiKey).where(WebApiKey.key_id == key_id)).scalar()
    if row is None:
        raise RecordNotFound(f"unknown API key {key_id!r}", code="UNKNOWN_API_KEY")
    if row.revoked_at_s is not None:
        raise RecordConflict(f"API key {key_id} is already revoked", code="ALREADY_REVOKED")
    row.revoked_at_s = wall_s
