"""Accounts, cards, boxes, devices and phone verification (DESIGN §6).

* Account number: assigned once from a counter (with a Luhn check digit) and never changed
  (MTS seed); contract number given or generated; holder surname, name, patronymic; phone;
  e-mail; prepaid or postpaid.
* Cards (serial) and boxes (Chip ID) are linked to accounts; a card is paired with one box.
* Screens: a tariff allows 1-3 simultaneous devices, extra screens can be bought up to the
  profile's total; beyond the limit the oldest devices are logged out (TV+ seed).
* Kids profile = the card's maturity limit; region = where the card is installed.
* Phone verification: a code sent by SMS, valid until the authentication session ends
  (Uzonline seed).
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from cas.access import NO_MATURITY_LIMIT
from cas.billing._core import (
    account_by_number,
    atomic,
    base_of,
    current_profile,
    hash_code,
    lock_account,
    notify,
    open_subscriptions,
    touch_rights,
)
from cas.billing.profile import OperatorProfile
from cas.errors import BillingError, ValidationError
from cas.store.errors import RecordConflict, RecordNotFound
from cas.store.models import Account, Box, Card, Device, VerificationSession
from cas.store.repo import from_s, get_card, next_counter, record_rights_change, to_s
from cas.text import control_character, control_refusal, is_ascii_digits

_PHONE = re.compile(r"^\+?[0-9]{7,15}$")
#: No spaces, no control characters (C0, DEL, C1), no lone surrogates: :mod:`cas.text`.
_EMAIL_PART = r"[^@\s\x00-\x1f\x7f-\x9f\ud800-\udfff]+"
_EMAIL = re.compile(rf"^{_EMAIL_PART}@{_EMAIL_PART}\.{_EMAIL_PART}$")
_CONTRACT = re.compile(r"^[A-Za-z0-9\-/]{4,32}$")
_DEVICE = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


def luhn_digit(digits: str) -> str:
    """The Luhn check digit for ``digits`` (so a mistyped account number is caught)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return is_ascii_digits(number) and len(number) > 1 and luhn_digit(number[:-1]) == number[-1]


def normalise_phone(phone: str) -> str:
    if control_character(str(phone)) is not None:
        raise ValidationError("a phone number must not contain control characters",
                              code="BAD_PHONE")
    text = re.sub(r"[\s()\-]", "", str(phone))
    if not _PHONE.match(text):
        raise ValidationError(f"phone {phone!r} is not a phone number", code="BAD_PHONE")
    return text


def _name(value: str | None, what: str, *, required: bool) -> str | None:
    if value is None or not str(value).strip():
        if required:
            raise ValidationError(f"{what} is required", code="BAD_NAME")
        return None
    refusal = control_refusal(str(value), what)
    if refusal is not None:
        raise ValidationError(refusal, code="BAD_NAME")
    text = " ".join(str(value).split())
    if len(text) > 128:
        raise ValidationError(f"{what} is too long", code="BAD_NAME")
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
                              code="BAD_ACCOUNT_KIND")
    phone_v = normalise_phone(phone) if phone else None
    if email is not None and email != "" and not _EMAIL.match(email):
        raise ValidationError(f"e-mail {email!r} is not an address", code="BAD_EMAIL")
    if region is not None and (isinstance(region, bool) or not 0 <= region <= 0xFFFF):
        raise ValidationError("region must be a u16", code="BAD_REGION")
    if credit_limit_minor is not None:
        if kind != "postpaid" and credit_limit_minor:
            raise ValidationError("only postpaid accounts have a credit limit",
                                  code="BAD_CREDIT_LIMIT")
        if isinstance(credit_limit_minor, bool) or not isinstance(credit_limit_minor, int) \
                or credit_limit_minor < 0:
            raise ValidationError("credit limit must be a non-negative integer",
                                  code="BAD_CREDIT_LIMIT")
    if contract_number is not None:
        contract_number = contract_number.strip()
        if not _CONTRACT.match(contract_number):
            raise ValidationError("contract number: 4-32 letters, digits, - or /",
                                  code="BAD_CONTRACT")
        if session.execute(select(Account.id).where(
                Account.contract_number == contract_number)).first():
            raise RecordConflict(f"contract {contract_number} already exists",
                                 code="DUPLICATE_CONTRACT")
    else:
        while True:
            contract_number = f"{next_counter(session, 'contract'):0{profile.contract_number_digits}d}"
            if not session.execute(select(Account.id).where(
                    Account.contract_number == contract_number)).first():
                break
    seq = next_counter(session, "account")
    body = f"{seq:0{profile.account_number_digits - 1}d}"
    if len(body) >= profile.account_number_digits:
        raise RecordConflict("account numbers exhausted", code="NUMBERS_EXHAUSTED")
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
            raise ValidationError(f"e-mail {email!r} is not an address", code="BAD_EMAIL")
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


# --- cards -----------------------------------------------------------------------------------
@atomic
def link_card(session: Session, *, serial: int, account_number: str, at: datetime) -> None:
    """Give a registered card to an account (NTV Plus: the smart-card number is part of the
    personal account).  The card takes the account's region."""
    at_s = to_s(at)
    acc = lock_account(session, account_by_number(session, account_number).id)
    card = get_card(session, serial, lock=True)
    if card.status == "killed":
        raise BillingError(f"card {serial:010d} is killed", code="CARD_KILLED")
    if card.account_id is not None:
        if card.account_id == acc.id:
            raise RecordConflict(f"card {serial:010d} is already on this account",
                                 code="CARD_ALREADY_LINKED")
        raise RecordConflict(f"card {serial:010d} belongs to another account",
                             code="CARD_LINKED_ELSEWHERE")
    card.account_id = acc.id
    card.region = acc.region
    session.flush()
    record_rights_change(session, [serial], at_s, "link")


@atomic
def unlink_card(session: Session, *, serial: int, at: datetime) -> None:
    at_s = to_s(at)
    card = get_card(session, serial, lock=True)
    if card.account_id is None:
        raise RecordConflict(f"card {serial:010d} is not linked", code="CARD_NOT_LINKED")
    card.account_id = None
    card.paired_chip_id = None
    session.flush()
    record_rights_change(session, [serial], at_s, "unlink")


@atomic
def pair_card(session: Session, *, serial: int, chip_id: int, at: datetime) -> None:
    """Pair a card with a box (DESIGN §2: the CWPK goes to this card for this chip).  The box
    joins the card's account; a card that was paired with the box loses the pairing."""
    at_s = to_s(at)
    card = get_card(session, serial, lock=True)
    box = session.get(Box, chip_id, with_for_update=True)
    if box is None:
        raise RecordNotFound(f"unknown box {chip_id:08X}", code="UNKNOWN_BOX")
    if card.account_id is None:
        raise BillingError(f"card {serial:010d} is not linked to an account", code="CARD_NOT_LINKED")
    if box.account_id is not None and box.account_id != card.account_id:
        raise RecordConflict(f"box {chip_id:08X} belongs to another account",
                             code="BOX_LINKED_ELSEWHERE")
    if card.paired_chip_id == chip_id:
        raise RecordConflict(f"card {serial:010d} is already paired with {chip_id:08X}",
                             code="ALREADY_PAIRED")
    previous = session.execute(select(Card).where(Card.paired_chip_id == chip_id)).scalar()
    touched = [serial]
    if previous is not None:
        previous.paired_chip_id = None
        touched.append(previous.serial)
        session.flush()
    box.account_id = card.account_id
    card.paired_chip_id = chip_id
    session.flush()
    record_rights_change(session, touched, at_s, "pair")


@atomic
def set_kids_profile(session: Session, *, serial: int, on: bool, at: datetime) -> int:
    """Kids profile (TV+ seed: "adult content is not shown"): the card's maturity limit."""
    at_s = to_s(at)
    profile = current_profile(session)
    card = get_card(session, serial, lock=True)
    limit = profile.kids_maturity_limit if on else NO_MATURITY_LIMIT
    if card.maturity_limit != limit:
        card.maturity_limit = limit
        session.flush()
        record_rights_change(session, [serial], at_s, "maturity")
    return limit


@atomic
def set_card_region(session: Session, *, serial: int, region: int, at: datetime) -> None:
    """Where the card is installed (TV+ seed: the service works only inside the country)."""
    at_s = to_s(at)
    if isinstance(region, bool) or not isinstance(region, int) or not 0 <= region <= 0xFFFF:
        raise ValidationError("region must be a u16", code="BAD_REGION")
    card = get_card(session, serial, lock=True)
    if card.region != region:
        card.region = region
        session.flush()
        record_rights_change(session, [serial], at_s, "region")


@atomic
def kill_card(session: Session, *, serial: int, at: datetime) -> None:
    """Kill a card for good (lost or stolen): every channel locked, ``CARD_KILLED``."""
    at_s = to_s(at)
    card = get_card(session, serial, lock=True)
    if card.status == "killed":
        raise RecordConflict(f"card {serial:010d} is already killed", code="CARD_KILLED")
    card.status = "killed"
    session.flush()
    record_rights_change(session, [serial], at_s, "kill")


@dataclass(frozen=True, slots=True, kw_only=True)
class CardView:
    serial: int
    shared_address: int
    member_position: int
    status: str
    account_number: str | None
    region: int
    maturity_limit: int
    paired_chip_id: int | None
    rights_version: int
    registered_at: datetime


def card_view(session: Session, card: Card) -> CardView:
    acc = session.get(Account, card.account_id) if card.account_id is not None else None
    return CardView(serial=card.serial, shared_address=card.shared_address,
                    member_position=card.member_position, status=card.status,
                    account_number=acc.account_number if acc else None, region=card.region,
                    maturity_limit=card.maturity_limit, paired_chip_id=card.paired_chip_id,
                    rights_version=card.rights_version,
                    registered_at=from_s(card.registered_at_s))


def list_cards(session: Session, *, account_number: str | None = None, limit: int = 100,
               offset: int = 0) -> list[CardView]:
    stmt = select(Card).order_by(Card.serial).limit(limit).offset(offset)
    if account_number is not None:
        stmt = stmt.where(Card.account_id == account_by_number(session, account_number).id)
    return [card_view(session, c) for c in session.execute(stmt).scalars()]


# --- boxes -----------------------------------------------------------------------------------
class ChipRecordLike(Protocol):
    """What the box import needs from a Chip ID record (``cas.formats.chipid.ChipIdRecord``)."""

    @property
    def chip_id(self) -> int: ...
    @property
    def vendor(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def wrapped_csk(self) -> bytes: ...
    @property
    def firmware_version(self) -> int: ...
    @property
    def manufactured_s(self) -> int: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportReport:
    added: int
    unchanged: int
    chip_ids: tuple[int, ...]


def _fw_text(version: int) -> str:
    return f"{version >> 24}.{(version >> 16) & 0xFF}.{(version >> 8) & 0xFF}.{version & 0xFF}"


@atomic
def import_boxes(session: Session, records: Iterable[ChipRecordLike], *, at: datetime,
                 batch: str = "") -> ImportReport:
    """Import the chipset vendor's Chip ID records.  Re-importing the same record is a no-op;
    a different record under a known Chip ID is refused (the whole import writes nothing)."""
    at_s = to_s(at)
    added, unchanged = 0, 0
    ids: list[int] = []
    seen: set[int] = set()
    for rec in records:
        if rec.chip_id in seen:
            raise RecordConflict(f"Chip ID {rec.chip_id:08X} appears twice in the batch",
                                 code="DUPLICATE_CHIP_ID")
        seen.add(rec.chip_id)
        existing = session.get(Box, rec.chip_id)
        manufactured = f"{from_s(rec.manufactured_s):%Y-%m-%d}" if rec.manufactured_s else ""
        if existing is not None:
            if existing.wrapped_csk != bytes(rec.wrapped_csk) or existing.vendor != rec.vendor \
                    or existing.model != rec.model:
                raise RecordConflict(f"Chip ID {rec.chip_id:08X} is already known with "
                                     "different data", code="CHIP_ID_CONFLICT")
            unchanged += 1
            continue
        session.add(Box(chip_id=rec.chip_id, vendor=rec.vendor, model=rec.model,
                        firmware_version=_fw_text(rec.firmware_version),
                        manufactured=manufactured, wrapped_csk=bytes(rec.wrapped_csk),
                        imported_at_s=at_s, batch=batch[:128]))
        added += 1
        ids.append(rec.chip_id)
    session.flush()
    return ImportReport(added=added, unchanged=unchanged, chip_ids=tuple(ids))


@atomic
def link_box(session: Session, *, chip_id: int, account_number: str, at: datetime) -> None:
    to_s(at)
    acc = account_by_number(session, account_number)
    box = session.get(Box, chip_id, with_for_update=True)
    if box is None:
        raise RecordNotFound(f"unknown box {chip_id:08X}", code="UNKNOWN_BOX")
    if box.account_id is not None and box.account_id != acc.id:
        raise RecordConflict(f"box {chip_id:08X} belongs to another account",
                             code="BOX_LINKED_ELSEWHERE")
    box.account_id = acc.id
    session.flush()


@dataclass(frozen=True, slots=True, kw_only=True)
class BoxView:
    chip_id: int
    vendor: str
    model: str
    firmware_version: str
    manufactured: str
    account_number: str | None
    paired_card: int | None
    imported_at: datetime


def _box_view(session: Session, box: Box) -> BoxView:
    acc = session.get(Account, box.account_id) if box.account_id is not None else None
    paired = session.execute(select(Card.serial).where(Card.paired_chip_id == box.chip_id)).scalar()
    return BoxView(chip_id=box.chip_id, vendor=box.vendor, model=box.model,
                   firmware_version=box.firmware_version, manufactured=box.manufactured,
                   account_number=acc.account_number if acc else None,
                   paired_card=int(paired) if paired is not None else None,
                   imported_at=from_s(box.imported_at_s))


def get_box(session: Session, chip_id: int) -> BoxView:
    box = session.get(Box, chip_id)
    if box is None:
        raise RecordNotFound(f"unknown box {chip_id:08X}", code="UNKNOWN_BOX")
    return _box_view(session, box)


def list_boxes(session: Session, *, account_number: str | None = None, limit: int = 100,
               offset: int = 0) -> list[BoxView]:
    stmt = select(Box).order_by(Box.chip_id).limit(limit).offset(offset)
    if account_number is not None:
        stmt = stmt.where(Box.account_id == account_by_number(session, account_number).id)
    return [_box_view(session, box) for box in session.execute(stmt).scalars()]


# --- screens / devices ------------------------------------------------------------------------
def screens_limit(session: Session, profile: OperatorProfile, acc: Account) -> int:
    """Simultaneous devices: the active base tariff's screens (or the profile default) plus
    extra screens bought, never above the profile's total (TV+: up to 5)."""
    base = base_of(open_subscriptions(session, acc))
    tariff = profile.default_screens
    if base is not None and base[0].status == "active" and base[1].max_screens:
        tariff = base[1].max_screens
    return min(profile.max_screens_total, tariff + acc.extra_screens)


def enforce_device_limit(session: Session, profile: OperatorProfile, acc: Account,
                         at_s: int) -> list[str]:
    """Log out the devices beyond the limit, oldest login first ("extra devices will be
    logged out")."""
    limit = screens_limit(session, profile, acc)
    active = session.execute(
        select(Device).where(Device.account_id == acc.id, Device.logged_out_at_s.is_(None))
        .order_by(Device.logged_in_at_s.desc(), Device.id.desc())).scalars().all()
    out: list[str] = []
    for dev in active[limit:]:
        dev.logged_out_at_s = at_s
        dev.logout_reason = "device_limit"
        out.append(dev.device_id)
    if out:
        notify(session, acc, at_s, "device_logout",
               f"Logged out {len(out)} device(s): the tariff allows {limit} screen(s)")
    session.flush()
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceLogin:
    device_id: str
    screens_limit: int
    active_devices: tuple[str, ...]
    logged_out: tuple[str, ...]


@atomic
def device_login(session: Session, *, account_number: str, device_id: str, at: datetime,
                 label: str = "") -> DeviceLogin:
    """A device logs in to the account; devices beyond the limit are logged out."""
    at_s = to_s(at)
    if not isinstance(device_id, str) or not _DEVICE.match(device_id):
        raise ValidationError("device id: 1-64 of A-Z a-z 0-9 . _ : -", code="BAD_DEVICE")
    profile = current_profile(session)
    acc = lock_account(session, account_by_number(session, account_number).id)
    dev = session.execute(select(Device).where(Device.account_id == acc.id,
                                               Device.device_id == device_id)).scalar()
    if dev is None:
        dev = Device(account_id=acc.id, device_id=device_id, label=label[:128],
                     logged_in_at_s=at_s)
        session.add(dev)
    else:
        dev.logged_in_at_s = at_s
        dev.logged_out_at_s = None
        dev.logout_reason = None
    session.flush()
    out = enforce_device_limit(session, profile, acc, at_s)
    return DeviceLogin(device_id=device_id, screens_limit=screens_limit(session, profile, acc),
                       active_devices=tuple(active_devices(session, acc)), logged_out=tuple(out))


@atomic
def device_logout(session: Session, *, account_number: str, device_id: str, at: datetime) -> None:
    at_s = to_s(at)
    acc = account_by_number(session, account_number)
    dev = session.execute(select(Device).where(Device.account_id == acc.id,
                                               Device.device_id == device_id)).scalar()
    if dev is None or dev.logged_out_at_s is not None:
        raise RecordNotFound(f"device {device_id!r} is not logged in", code="UNKNOWN_DEVICE")
    dev.logged_out_at_s = at_s
    dev.logout_reason = "logout"


def active_devices(session: Session, acc: Account) -> list[str]:
    return [str(d) for d in session.execute(
        select(Device.device_id).where(Device.account_id == acc.id,
                                       Device.logged_out_at_s.is_(None))
        .order_by(Device.logged_in_at_s, Device.id)).scalars()]


@atomic
def set_extra_screens(session: Session, *, account_number: str, extra: int,
                      at: datetime) -> int:
    """Extra screens bought through the operator (TV+: "up to 5 in total").  Returns the new
    limit; lowering it logs out the devices beyond it."""
    at_s = to_s(at)
    profile = current_profile(session)
    acc = lock_account(session, account_by_number(session, account_number).id)
    if isinstance(extra, bool) or not isinstance(extra, int) or extra < 0:
        raise ValidationError("extra screens must be a non-negative integer", code="BAD_SCREENS")
    base = base_of(open_subscriptions(session, acc))
    tariff = base[1].max_screens if base and base[0].status == "active" and base[1].max_screens \
        else profile.default_screens
    if tariff + extra > profile.max_screens_total:
        raise ValidationError(
            f"at most {profile.max_screens_total} screens in total (tariff {tariff})",
            code="SCREEN_LIMIT")
    acc.extra_screens = extra
    session.flush()
    enforce_device_limit(session, profile, acc, at_s)
    return screens_limit(session, profile, acc)


# --- phone verification -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationChallenge:
    """The session token, and the code the simulated SMS carries (shown by the CLI; only its
    salted hash is stored)."""

    token: str
    code: str
    phone: str
    expires_at: datetime


@atomic
def start_verification(session: Session, *, account_number: str, phone: str, at: datetime,
                       rng: Callable[[int], bytes] = os.urandom) -> VerificationChallenge:
    """Send a confirmation code to ``phone`` for this account (Uzonline: phone number + account
    number; TV+ promo: phone number + promo code).  The code is valid until the
    authentication session ends."""
    at_s = to_s(at)
    profile = current_profile(session)
    acc = account_by_number(session, account_number)
    phone_v = normalise_phone(phone)
    token = rng(16).hex()
    digits = profile.verification_code_digits
    code = f"{int.from_bytes(rng(8), 'big') % 10**digits:0{digits}d}"
    expires = at_s + profile.verification_session_minutes * 60
    session.add(VerificationSession(token=token, account_id=acc.id, phone=phone_v,
                                    code_hash=hash_code(token, code), created_at_s=at_s,
                                    expires_at_s=expires, attempts=0))
    session.flush()
    return VerificationChallenge(token=token, code=code, phone=phone_v, expires_at=from_s(expires))


def _live_session(session: Session, token: str | None, at_s: int) -> VerificationSession:
    if not token or not str(token).strip():
        raise BillingError(
            "this needs the phone number confirmed by SMS code, and no verification was "
            "given: start a verification session, confirm the code, then give its token",
            code="VERIFICATION_REQUIRED")
    row = session.get(VerificationSession, token, with_for_update=True)
    if row is None:
        raise BillingError("no such verification session", code="VERIFICATION_REQUIRED")
    if row.ended_at_s is not None or at_s >= row.expires_at_s:
        raise BillingError("the verification session has ended", code="VERIFICATION_EXPIRED")
    return row


@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationResult:
    verified: bool
    attempts_left: int


def confirm_verification(session: Session, *, token: str, code: str,
                         at: datetime) -> VerificationResult:
    """Check the code.  A wrong code is counted and reported in the result (not raised), so
    the caller can commit the counter; after the profile's limit the session is closed.
    An unknown or ended session raises ``VERIFICATION_REQUIRED``/``VERIFICATION_EXPIRED``."""
    at_s = to_s(at)
    profile = current_profile(session)
    row = _live_session(session, token, at_s)
    left = max(profile.verification_max_attempts - row.attempts, 0)
    if row.verified_at_s is not None:
        return VerificationResult(verified=True, attempts_left=left)
    if not hmac.compare_digest(row.code_hash, hash_code(token, str(code).strip())):
        row.attempts += 1
        if row.attempts >= profile.verification_max_attempts:
            row.ended_at_s = at_s
        session.flush()
        return VerificationResult(verified=False, attempts_left=max(left - 1, 0))
    row.verified_at_s = at_s
    acc = session.get(Account, row.account_id)
    if acc is not None and acc.phone != row.phone:
        acc.phone = row.phone  # Uzonline: "the number is joined to the account"
    session.flush()
    return VerificationResult(verified=True, attempts_left=left)


@atomic
def end_verification(session: Session, *, token: str, at: datetime) -> None:
    """End the authentication session: its code is no longer valid."""
    at_s = to_s(at)
    row = session.get(VerificationSession, token)
    if row is None:
        raise RecordNotFound("no such verification session", code="UNKNOWN_SESSION")
    if row.ended_at_s is None:
        row.ended_at_s = at_s


def require_verified(session: Session, *, token: str | None, account_id: int, at_s: int) -> None:
    row = _live_session(session, token, at_s)
    if row.account_id != account_id or row.verified_at_s is None:
        raise BillingError("confirm the phone number with the SMS code first",
                           code="VERIFICATION_REQUIRED")


__all__ = [
    "AccountView", "BoxView", "CardView", "ChipRecordLike", "DeviceLogin", "ImportReport",
    "VerificationChallenge", "VerificationResult", "account_view", "active_devices", "card_view",
    "confirm_verification", "create_account", "device_login", "device_logout",
    "end_verification", "enforce_device_limit", "get_account", "get_box", "import_boxes", "kill_card",
    "link_box", "link_card", "list_accounts", "list_boxes", "list_cards", "luhn_digit",
    "luhn_valid", "pair_card", "require_verified", "same_holder_accounts", "screens_limit",
    "set_card_region",
    "set_extra_screens", "set_kids_profile", "start_verification", "touch_rights",
    "unlink_card", "update_account",
]
