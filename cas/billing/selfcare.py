"""Subscriber self-care rules (DESIGN §6) that the personal-account portal offers and that are
not HTTP: who a login identifier means, whether a card is the subscriber's own, an SMS code
put in the notification outbox, a payment by the subscriber's own card number (free amount,
or an operator's payment-card denomination with the payment card's number as the payment id),
and the dates of the package-switch lock.

Like every billing function these take a session and never commit.  A card that is not the
subscriber's reads exactly like a card that does not exist: same refusal, same words.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cas.billing import service
from cas.billing.identifiers import normalise_phone
from cas.billing.money import parse_amount
from cas.billing.profile import OperatorProfile
from cas.billing.records import DAY_S, current_profile
from cas.billing.verification import start_verification
from cas.errors import ValidationError
from cas.store.models import Account, Card, Notification
from cas.text import parse_digits

_ACCOUNT_NUMBER = re.compile(r"^[0-9]{4,20}$")
_VOUCHER = re.compile(r"[0-9]{6,20}")


# --- who is logging in ---------------------------------------------------------------------------
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


# --- own cards -----------------------------------------------------------------------------------
def owns_card(session: Session, account_id: int, serial: int) -> bool:
    return session.execute(select(Card.serial).where(
        Card.serial == serial, Card.account_id == account_id)).first() is not None


def own_card_serial(session: Session, account_id: int, text: str) -> int | None:
    """The serial of the account's own card written as ``text`` (ASCII digits), or None for a
    card that is malformed, unknown or someone else's — one answer for all three."""
    serial = parse_digits(text, max_value=0xFFFF_FFFF)
    if not serial or not owns_card(session, account_id, serial):
        return None
    return serial


# --- SMS codes -------------------------------------------------------------------------------------
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


# --- paying by one's own card number --------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class OwnCardPayment:
    amount_minor: int
    result: service.PaymentResult


def pay_own_card(session: Session, *, account_id: int, card: str, amount: str,
                 denomination: str, voucher: str, package: str | None,
                 at: datetime) -> OwnCardPayment:
    """Pay by the number of one of the account's own cards, optionally choosing a package
    (ATV+).  With payment cards (the operator lists denominations) the amount is one
    ``denomination`` and the payment card's number ``voucher`` is the payment id, so one
    payment card pays once; otherwise ``amount`` is free and the payment id is new."""
    profile = current_profile(session)
    serial_text = card.strip()
    if own_card_serial(session, account_id, serial_text) is None:
        raise ValidationError("unknown card", code="CARD_NOT_YOURS").with_id(
            "billing.unknown_card_2")
    if profile.payment_card_denominations_minor:
        amount_minor = parse_amount(denomination or "0", profile.minor_per_major)
        if not _VOUCHER.fullmatch(voucher.strip()):
            raise ValidationError("payment card number: 6-20 digits", code="BAD_VOUCHER").with_id(
                "billing.payment_card_number_digits")
        payment_id, method = f"pcard-{voucher.strip()}", "payment_card"
    else:
        amount_minor = parse_amount(amount or "0", profile.minor_per_major)
        payment_id, method = f"web-{secrets.token_hex(12)}", "online"
    result = service.pay(session, by="card", ref=serial_text, amount_minor=amount_minor,
                         payment_id=payment_id, at=at, method=method, package=package)
    return OwnCardPayment(amount_minor=amount_minor, result=result)


# --- dates -------------------------------------------------------------------------------------------
def parse_day(text: str) -> datetime:
    """A calendar day written ``YYYY-MM-DD``, as midnight UTC."""
    try:
        day = datetime.strptime(text.strip(), "%Y-%m-%d")
    except ValueError as exc:
        raise ValidationError("a date looks like 2026-03-01", code="BAD_DATE").with_id(
            "billing.date_looks_like") from exc
    return day.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class SwitchLock:
    """ATV+: "a repeated package switch is possible no earlier than 30 days after the last
    one" — the last switch and the first moment the next one is allowed."""

    days: int
    last: datetime
    next_free: datetime


def switch_lock(profile: OperatorProfile, last_switch_at_s: int) -> SwitchLock:
    return SwitchLock(days=profile.switch_lock_days,
                      last=datetime.fromtimestamp(last_switch_at_s, UTC),
                      next_free=datetime.fromtimestamp(
                          last_switch_at_s + profile.switch_lock_days * DAY_S, UTC))


def account_switch_lock(session: Session, account_id: int) -> SwitchLock | None:
    """The switch lock of an account, or None when it never switched."""
    acc = session.get(Account, account_id)
    if acc is None or acc.last_switch_at_s is None:
        return None
    return switch_lock(current_profile(session), acc.last_switch_at_s)
