"""Accounts (DESIGN §6): the account number assigned once from a counter (with a Luhn check
digit) and never changed (MTS seed); contract number given or generated; holder surname,
name, patronymic; phone; e-mail; prepaid or postpaid.

The rest of the account side lives in its own modules, re-exported here so
``cas.billing.accounts`` stays the one entry point: cards (:mod:`cas.billing.cards`), boxes
(:mod:`cas.billing.boxes`), screens and devices (:mod:`cas.billing.devices`), phone
verification (:mod:`cas.billing.verification`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from cas.billing.boxes import (
    BoxView,
    ChipRecordLike,
    ImportReport,
    get_box,
    import_boxes,
    link_box,
    list_boxes,
)
from cas.billing.cards import (
    CardView,
    card_view,
    kill_card,
    link_card,
    list_cards,
    pair_card,
    set_card_region,
    set_kids_profile,
    unlink_card,
)
from cas.billing.devices import (
    DeviceLogin,
    active_devices,
    device_login,
    device_logout,
    enforce_device_limit,
    screens_limit,
    set_extra_screens,
)
from cas.billing.identifiers import luhn_digit, luhn_valid, normalise_phone
from cas.billing.ledger import touch_rights
from cas.billing.txn import account_by_number, atomic, current_profile, lock_account
from cas.billing.verification import (
    VerificationChallenge,
    VerificationResult,
    confirm_verification,
    end_verification,
    require_verified,
    start_verification,
)
from cas.errors import ValidationError
from cas.i18n import Msg
from cas.store.errors import RecordConflict
from cas.store.models import Account, Box, Card
from cas.store.repo import from_s, next_counter, to_s
from cas.text import control_refusal

#: No spaces, no control characters (C0, DEL, C1), no lone surrogates: :mod:`cas.text`.
_EMAIL_PART = r"[^@\s\x00-\x1f\x7f-\x9f\ud800-\udfff]+"
_EMAIL = re.compile(rf"^{_EMAIL_PART}@{_EMAIL_PART}\.{_EMAIL_PART}$")
_CONTRACT = re.compile(r"^[A-Za-z0-9\-/]{4,32}$")


def _name(value: str | None, what: str, *, required: bool) -> str | None:
    if value is None or not str(value).strip():
        if required:
            raise ValidationError(f"{what} is required", code="BAD_NAME").with_id(
                "billing.required", what=what)
        return None
    refusal = control_refusal(str(value), what)
    if refusal is not None:
        raise ValidationError(refusal, code="BAD_NAME").with_id(
            refusal.message_id, **refusal.params)
    text = " ".join(str(value).split())
    if len(text) > 128:
        raise ValidationError(f"{what} is too long", code="BAD_NAME").with_id(
            "billing.too_long", what=what)
    return text


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountView:
    account_number: str
    contract_number: str
    surname: str
    name: str
    patronymic: str | None
    phone: str | None
    email: str | None
    kind: str
    balance_minor: int
    credit_limit_minor: int
    region: int
    screens_limit: int
    created_at: datetime
    blocked_since: datetime | None
    suspended_from: datetime | None
    suspended_until: datetime | None
    cards: tuple[int, ...]
    boxes: tuple[int, ...]


def account_view(session: Session, acc: Account) -> AccountView:
    profile = current_profile(session)
    cards = tuple(int(s) for s in session.execute(
        select(Card.serial).where(Card.account_id == acc.id).order_by(Card.serial)).scalars())
    boxes = tuple(int(c) for c in session.execute(
        select(Box.chip_id).where(Box.account_id == acc.id).order_by(Box.chip_id)).scalars())
    return AccountView(
        account_number=acc.account_number, contract_number=acc.contract_number,
        surname=acc.surname, name=acc.name, patronymic=acc.patronymic, phone=acc.phone,
        email=acc.email, kind=acc.kind, balance_minor=acc.balance_minor,
        credit_limit_minor=acc.credit_limit_minor, region=acc.region,
        screens_limit=screens_limit(session, profile, acc),
        created_at=from_s(acc.created_at_s),
        blocked_since=from_s(acc.blocked_since_s) if acc.blocked_since_s is not None else None,
        suspended_from=from_s(acc.suspended_from_s) if acc.suspended_from_s is not None else None,
        suspended_until=(from_s(acc.suspended_until_s)
                         if acc.suspended_until_s is not None else None),
        cards=cards, boxes=boxes)


# --- accounts --------------------------------------------------------------------------------
@atomic
def create_account(session: Session, *, surname: str, name: str, at: datetime,
                   patronymic: str | None = None, phone: str | None = None,
                   email: str | None = None, kind: str | None = None,
                   contract_number: str | None = None, credit_limit_minor: int | None = None,
                   region: int | None = None) -> AccountView:
    """Open a personal account.  The account number is assigned here, once."""
    at_s = to_s(at)
    profile = current_profile(session)
    surname_v = _name(surname, "surname", required=True)
    name_v = _name(name, "name", required=True)
    assert surname_v is not None and name_v is not None
    kind = kind or profile.default_account_kind
    if kind not in profile.account_kinds:
        raise ValidationError(f"{profile.name} accounts are {' or '.join(profile.account_kinds)}",
                              code="BAD_ACCOUNT_KIND").with_id(
            "billing.accounts", name=profile.name,
            account_kinds=[Msg(f"ticket.account_kind.{k}") for k in profile.account_kinds])
    phone_v = normalise_phone(phone) if phone else None
    if email is not None and email != "" and not _EMAIL.match(email):
        raise ValidationError(f"e-mail {email!r} is not an address", code="BAD_EMAIL").with_id(
            "billing.e_mail_not_address", email=f"{email!r}")
    if region is not None and (isinstance(region, bool) or not 0 <= region <= 0xFFFF):
        raise ValidationError("region must be a u16", code="BAD_REGION").with_id(
            "billing.region_u16")
    if credit_limit_minor is not None:
        if kind != "postpaid" and credit_limit_minor:
            raise ValidationError("only postpaid accounts have a credit limit",
                                  code="BAD_CREDIT_LIMIT").with_id(
                "billing.only_postpaid_accounts_credit")
        if isinstance(credit_limit_minor, bool) or not isinstance(credit_limit_minor, int) \
                or credit_limit_minor < 0:
            raise ValidationError("credit limit must be a non-negative integer",
                                  code="BAD_CREDIT_LIMIT").with_id(
                "billing.credit_limit_non_negative")
    if contract_number is not None:
        contract_number = contract_number.strip()
        if not _CONTRACT.match(contract_number):
            raise ValidationError("contract number: 4-32 letters, digits, - or /",
                                  code="BAD_CONTRACT").with_id(
                "billing.contract_number_letters_digits")
        if session.execute(select(Account.id).where(
                Account.contract_number == contract_number)).first():
            raise RecordConflict(f"contract {contract_number} already exists",
                                 code="DUPLICATE_CONTRACT").with_id(
                "billing.contract_already_exists", contract_number=contract_number)
    else:
        while True:
            contract_number = f"{next_counter(session, 'contract'):0{profile.contract_number_digits}d}"
            if not session.execute(select(Account.id).where(
                    Account.contract_number == contract_number)).first():
                break
    seq = next_counter(session, "account")
    body = f"{seq:0{profile.account_number_digits - 1}d}"
    if len(body) >= profile.account_number_digits:
        raise RecordConflict("account numbers exhausted", code="NUMBERS_EXHAUSTED").with_id(
            "billing.account_numbers_exhausted")
    acc = Account(
        account_number=body + luhn_digit(body), contract_number=contract_number,
        surname=surname_v, name=name_v, patronymic=_name(patronymic, "patronymic", required=False),
        phone=phone_v, email=email or None, kind=kind,
        credit_limit_minor=(credit_limit_minor if credit_limit_minor is not None
                            else (profile.postpaid_credit_limit_minor if kind == "postpaid" else 0)),
        balance_minor=0, region=profile.home_region if region is None else region,
        extra_screens=0, notify_email=True, notify_sms=True, created_at_s=at_s)
    session.add(acc)
    session.flush()
    return account_view(session, acc)


def same_holder_accounts(session: Session, *, surname: str, name: str,
                         patronymic: str | None = None, phone: str | None = None,
                         email: str | None = None) -> list[str]:
    """Account numbers whose holder looks like this one: the same surname, name and
    patronymic (case and spacing ignored) and no contact detail that differs (a phone or
    e-mail given on both sides must be equal).  ``cas account create`` warns with these, so
    a repeated command does not silently open a second account for the same person."""
    def key(v: str | None) -> str:
        return " ".join(str(v or "").split()).casefold()

    phone_v = normalise_phone(phone) if phone else None
    stored = " ".join(str(surname).split())  # as _name stores it
    # SQLite's lower() folds ASCII only: the exact match catches the rest.
    rows = session.execute(select(Account).where(or_(
        Account.surname == stored, func.lower(Account.surname) == stored.lower()))
        .order_by(Account.id)).scalars()
    found = []
    for acc in rows:
        if (key(acc.surname), key(acc.name), key(acc.patronymic)) != (
                key(surname), key(name), key(patronymic)):
            continue
        if phone_v and acc.phone and acc.phone != phone_v:
            continue
        if email and acc.email and acc.email.casefold() != email.strip().casefold():
            continue
        found.append(acc.account_number)
    return found


@atomic
def update_account(session: Session, *, account_number: str, at: datetime,
                   phone: str | None = None, email: str | None = None,
                   surname: str | None = None, name: str | None = None,
                   patronymic: str | None = None, notify_sms: bool | None = None,
                   notify_email: bool | None = None) -> AccountView:
    """Change the holder's contact data and notification choices (never the account number)."""
    to_s(at)
    acc = lock_account(session, account_by_number(session, account_number).id)
    if phone is not None:
        acc.phone = normalise_phone(phone) if phone else None
    if email is not None:
        if email and not _EMAIL.match(email):
            raise ValidationError(f"e-mail {email!r} is not an address", code="BAD_EMAIL").with_id(
                "billing.e_mail_not_address", email=f"{email!r}")
        acc.email = email or None
    if surname is not None:
        acc.surname = _name(surname, "surname", required=True) or acc.surname
    if name is not None:
        acc.name = _name(name, "name", required=True) or acc.name
    if patronymic is not None:
        acc.patronymic = _name(patronymic, "patronymic", required=False)
    if notify_sms is not None:
        acc.notify_sms = notify_sms
    if notify_email is not None:
        acc.notify_email = notify_email
    session.flush()
    return account_view(session, acc)


def get_account(session: Session, account_number: str) -> AccountView:
    return account_view(session, account_by_number(session, account_number))


def list_accounts(session: Session, *, limit: int = 100, offset: int = 0) -> list[AccountView]:
    rows = session.execute(select(Account).order_by(Account.id).limit(limit).offset(offset))
    return [account_view(session, a) for a in rows.scalars()]




__all__ = [
    "AccountView", "BoxView", "CardView", "ChipRecordLike", "DeviceLogin", "ImportReport",
    "VerificationChallenge", "VerificationResult", "account_view", "active_devices", "card_view",
    "confirm_verification", "create_account", "device_login", "device_logout", "end_verification",
    "enforce_device_limit", "get_account", "get_box", "import_boxes", "kill_card", "link_box",
    "link_card", "list_accounts", "list_boxes", "list_cards", "luhn_digit", "luhn_valid",
    "normalise_phone", "pair_card", "require_verified", "same_holder_accounts", "screens_limit",
    "set_card_region", "set_extra_screens", "set_kids_profile", "start_verification",
    "touch_rights", "unlink_card", "update_account",
]
