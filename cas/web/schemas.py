"""Request and response bodies of the operator API (they make the OpenAPI document).

Requests are strict (no "12" for 12, no unknown fields).  Money is ``*_minor`` integers in the
operator's smallest unit with ``currency`` beside it; times are ``*_s`` integer seconds since
1970-01-01 UTC; card numbers are integers (printed as 10 digits), Chip IDs 8 hex digits.
Value rules (positive amounts, known packages, phone formats ...) are the domain layer's: it
answers with the stable codes listed in ``docs/web.md``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
)

from cas.billing.accounts import AccountView, BoxView, CardView
from cas.billing.emm_queue import CardEmmQueue, EmmQueueSummary
from cas.billing.records import PaymentView
from cas.billing.service import (
    BalanceView,
    PaymentResult,
    Statement,
    SubscriptionView,
    SwitchResult,
)
from cas.text import SINGLE_LINE_PATTERN, control_refusal

MAX_SERIAL = 0xFFFF_FFFF
AccountNumber = Annotated[str, StringConstraints(pattern=r"^[0-9]{4,20}$")]
ChipIdHex = Annotated[str, StringConstraints(pattern=r"^[0-9A-Fa-f]{1,8}$")]
Serial = Annotated[int, Field(ge=1, le=MAX_SERIAL)]


def _single_line(value: str, info: ValidationInfo) -> str:
    """Text fields hold no control characters (C0, DEL, C1): :mod:`cas.text`."""
    refusal = control_refusal(value, info.field_name or "the text")
    if refusal is not None:
        raise ValueError(refusal)
    return value


_LINE = AfterValidator(_single_line)
_LINE_SCHEMA = Field(json_schema_extra={"pattern": SINGLE_LINE_PATTERN})
ShortText = Annotated[str, StringConstraints(max_length=128), _LINE, _LINE_SCHEMA]
Text32 = Annotated[str, StringConstraints(max_length=32), _LINE, _LINE_SCHEMA]
Text64 = Annotated[str, StringConstraints(max_length=64), _LINE, _LINE_SCHEMA]
Text256 = Annotated[str, StringConstraints(max_length=256), _LINE, _LINE_SCHEMA]
Name16 = Annotated[str, StringConstraints(min_length=1, max_length=16), _LINE, _LINE_SCHEMA]
Name32 = Annotated[str, StringConstraints(min_length=1, max_length=32), _LINE, _LINE_SCHEMA]
Name64 = Annotated[str, StringConstraints(min_length=1, max_length=64), _LINE, _LINE_SCHEMA]


def _s(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


class _In(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- errors -------------------------------------------------------------------------------------
class ErrorBody(_Out):
    code: str = Field(description="Stable machine-readable code (docs/web.md).")
    category: str = Field(description="Coarse class: NOT_FOUND, CONFLICT, INVALID_INPUT, ...")
    message: str
    message_ru: str | None = Field(
        default=None, description="The message in Russian, when the error names its catalogue "
                                  "message (docs/web.md); absent otherwise.")


class ErrorOut(_Out):
    error: ErrorBody


# --- operator and catalog ---------------------------------------------------------------------------
class OperatorOut(_Out):
    key: str
    name: str
    country: str
    currency: str
    minor_per_major: int
    now_s: int = Field(description="The store's simulation clock.")
    payment_by: list[str]
    payment_card_denominations_minor: list[int]
    renewal_toggle: bool
    switch_lock_days: int
    suspension: bool
    promised_payment: bool
    promo: bool
    subscribe_requires_code: bool


class PackageOut(_Out):
    id: int
    code: str
    name: str
    kind: str
    price_minor: int
    period_days: int
    max_screens: int | None
    channels: int


class ChannelOut(_Out):
    number: int
    name: str
    service_id: int
    maturity_rating: int


# --- accounts ------------------------------------------------------------------------------------------
class AccountCreate(_In):
    surname: ShortText
    name: ShortText
    patronymic: ShortText | None = None
    phone: Text32 | None = None
    email: Text256 | None = None
    kind: Literal["prepaid", "postpaid"] | None = None
    contract_number: Text32 | None = None
    credit_limit_minor: int | None = None
    region: int | None = None


class AccountUpdate(_In):
    surname: ShortText | None = None
    name: ShortText | None = None
    patronymic: ShortText | None = None
    phone: Text32 | None = None
    email: Text256 | None = None
    notify_sms: bool | None = None
    notify_email: bool | None = None


class AccountOut(_Out):
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
    created_at_s: int
    blocked_since_s: int | None
    suspended_from_s: int | None
    suspended_until_s: int | None
    cards: list[int]
    boxes: list[str]

    @classmethod
    def of(cls, v: AccountView) -> AccountOut:
        return cls(account_number=v.account_number, contract_number=v.contract_number,
                   surname=v.surname, name=v.name, patronymic=v.patronymic, phone=v.phone,
                   email=v.email, kind=v.kind, balance_minor=v.balance_minor,
                   credit_limit_minor=v.credit_limit_minor, region=v.region,
                   screens_limit=v.screens_limit, created_at_s=_s(v.created_at) or 0,
                   blocked_since_s=_s(v.blocked_since), suspended_from_s=_s(v.suspended_from),
                   suspended_until_s=_s(v.suspended_until), cards=list(v.cards),
                   boxes=[f"{b:08X}" for b in v.boxes])


class PasswordSet(_In):
    password: Text256


class BalanceOut(_Out):
    account_number: str
    balance_minor: int
    currency: str
    blocked_since_s: int | None
    block_cause: str | None
    suspended_from_s: int | None
    suspended_until_s: int | None
    promised_minor: int
    promised_due_s: int | None

    @classmethod
    def of(cls, v: BalanceView) -> BalanceOut:
        return cls(account_number=v.account_number, balance_minor=v.balance_minor,
                   currency=v.currency, blocked_since_s=_s(v.blocked_since),
                   block_cause=v.block_cause, suspended_from_s=_s(v.suspended_from),
                   suspended_until_s=_s(v.suspended_until), promised_minor=v.promised_minor,
                   promised_due_s=_s(v.promised_due))


class StatementLineOut(_Out):
    at_s: int
    kind: str
    amount_minor: int
    balance_after_minor: int
    ref: str | None
    description: str


class StatementOut(_Out):
    account_number: str
    currency: str
    opening_balance_minor: int
    closing_balance_minor: int
    lines: list[StatementLineOut]

    @classmethod
    def of(cls, v: Statement) -> StatementOut:
        return cls(account_number=v.account_number, currency=v.currency,
                   opening_balance_minor=v.opening_balance_minor,
                   closing_balance_minor=v.closing_balance_minor,
                   lines=[StatementLineOut(at_s=_s(line.at) or 0, kind=line.kind,
                                           amount_minor=line.amount_minor,
                                           balance_after_minor=line.balance_after_minor,
                                           ref=line.ref, description=line.description)
                          for line in v.lines])


# --- subscriptions ------------------------------------------------------------------------------------
class SubscriptionOut(_Out):
    package_id: int
    package_code: str
    package_name: str
    kind: str
    status: str
    auto_renew: bool
    activated_at_s: int | None
    start_s: int | None
    end_s: int | None
    days_left: int
    next_price_minor: int

    @classmethod
    def of(cls, v: SubscriptionView) -> SubscriptionOut:
        return cls(package_id=v.package_id, package_code=v.package_code,
                   package_name=v.package_name, kind=v.kind, status=v.status,
                   auto_renew=v.auto_renew, activated_at_s=_s(v.activated_at),
                   start_s=_s(v.start), end_s=_s(v.end), days_left=v.days_left,
                   next_price_minor=v.next_price_minor)


class SubscribeIn(_In):
    package: Name64
    verification: Text64 | None = Field(
        default=None, description="Token of a confirmed SMS verification (Uzonline).")


class SwitchIn(_In):
    package: Name64


class SwitchOut(_Out):
    account_number: str
    from_package: str
    to_package: str
    unused_days: int
    credited_minor: int
    charged_minor: int
    balance_minor: int
    next_switch_from_s: int | None

    @classmethod
    def of(cls, v: SwitchResult) -> SwitchOut:
        return cls(account_number=v.account_number, from_package=v.from_package,
                   to_package=v.to_package, unused_days=v.unused_days,
                   credited_minor=v.credited_minor, charged_minor=v.charged_minor,
                   balance_minor=v.balance_minor, next_switch_from_s=_s(v.next_switch_from))


class ExtendIn(_In):
    periods: int = 1


class RenewalIn(_In):
    on: bool
    package: Name64 | None = None


class SuspendIn(_In):
    until_s: int | None = Field(default=None, description="End of the suspension; default: "
                                "the longest the operator allows.")


class PromiseIn(_In):
    amount_minor: int | None = None


class PromoIn(_In):
    code: Name64
    verification: Text64 | None = None


# --- payments -----------------------------------------------------------------------------------------------
class PaymentIn(_In):
    by: Literal["card", "contract", "account"]
    ref: Name32 = Field(
        description="Card number, contract number or account number.")
    amount_minor: int
    method: Literal["online", "terminal", "payment_card", "sms", "bank", "cash"] = "online"
    package: Name64 | None = Field(
        default=None, description="Package chosen with the payment (ATV+).")
    payment_id: Name64 | None = Field(
        default=None, description="The payment system's id; default: derived from the "
        "Idempotency-Key.")


class PaymentOut(_Out):
    payment_id: str
    account_number: str
    amount_minor: int
    balance_minor: int
    activated: list[str]
    pending: list[str]
    switched_to: str | None
    #: The rule that refused the package chosen with the payment (the money is booked).
    choice_refused: str | None = None
    note: str

    @classmethod
    def of(cls, v: PaymentResult) -> PaymentOut:
        return cls(payment_id=v.payment_id, account_number=v.account_number,
                   amount_minor=v.amount_minor, balance_minor=v.balance_minor,
                   activated=list(v.activated), pending=list(v.pending),
                   switched_to=v.switched_to, choice_refused=v.choice_refused, note=v.note)


class PaymentRecordOut(_Out):
    payment_id: str
    account_number: str
    at_s: int
    amount_minor: int
    method: str
    by: str
    ref: str
    package: str | None

    @classmethod
    def of(cls, v: PaymentView) -> PaymentRecordOut:
        return cls(payment_id=v.payment_id, account_number=v.account_number, at_s=v.at_s,
                   amount_minor=v.amount_minor, method=v.method, by=v.by, ref=v.ref,
                   package=v.package)


# --- cards and boxes ------------------------------------------------------------------------------------------
class CardOut(_Out):
    serial: int
    shared_address: int
    member_position: int
    status: str
    account_number: str | None
    region: int
    maturity_limit: int
    paired_chip_id: str | None
    rights_version: int
    registered_at_s: int

    @classmethod
    def of(cls, v: CardView) -> CardOut:
        return cls(serial=v.serial, shared_address=v.shared_address,
                   member_position=v.member_position, status=v.status,
                   account_number=v.account_number, region=v.region,
                   maturity_limit=v.maturity_limit,
                   paired_chip_id=f"{v.paired_chip_id:08X}" if v.paired_chip_id is not None
                   else None,
                   rights_version=v.rights_version, registered_at_s=_s(v.registered_at) or 0)


class LinkIn(_In):
    account_number: AccountNumber


class PairIn(_In):
    chip_id: ChipIdHex


class BoxOut(_Out):
    chip_id: str
    vendor: str
    model: str
    firmware_version: str
    manufactured: str
    account_number: str | None
    paired_card: int | None
    imported_at_s: int

    @classmethod
    def of(cls, v: BoxView) -> BoxOut:
        return cls(chip_id=f"{v.chip_id:08X}", vendor=v.vendor, model=v.model,
                   firmware_version=v.firmware_version, manufactured=v.manufactured,
                   account_number=v.account_number, paired_card=v.paired_card,
                   imported_at_s=_s(v.imported_at) or 0)


class EntitlementOut(_Out):
    package_id: int
    start_s: int
    end_s: int
    valid_now: bool


class EntitlementStateOut(_Out):
    serial: int
    at_s: int
    status: str
    region: int
    maturity_limit: int
    paired_chip_id: str | None
    rights_version: int
    entitlements: list[EntitlementOut]


class WhyOut(_Out):
    card: str
    channel: int
    channel_name: str
    at_s: int
    #: OPEN_IF_PIN: open only once the card accepts the parental PIN (``pin_ok`` on a rated
    #: channel), which the head-end cannot see.
    state: Literal["OPEN", "LOCKED", "OPEN_IF_PIN"]
    reason: str
    screen_code: str
    message: str
    cause: str
    fix: str
    details: dict[str, Any]
    #: What the answer depends on that the head-end's records do not hold.
    cannot_know: list[str] = []


class RightsChangeOut(_Out):
    id: int
    at_s: int
    cause: str


class CardEmmQueueOut(_Out):
    serial: int
    rights_version: int
    sent_rights_version: int
    pending: bool
    pending_changes: list[RightsChangeOut]
    outbox: dict[str, int]

    @classmethod
    def of(cls, v: CardEmmQueue) -> CardEmmQueueOut:
        return cls(serial=v.serial, rights_version=v.rights_version,
                   sent_rights_version=v.sent_rights_version, pending=v.pending,
                   pending_changes=[RightsChangeOut(id=c.id, at_s=c.at_s, cause=c.cause)
                                    for c in v.pending_changes],
                   outbox=dict(v.outbox))


class EmmQueueOut(_Out):
    cards: int
    cards_pending: int
    journal_rows: int
    last_journal_id: int
    outbox: dict[str, int]

    @classmethod
    def of(cls, v: EmmQueueSummary) -> EmmQueueOut:
        return cls(cards=v.cards, cards_pending=v.cards_pending, journal_rows=v.journal_rows,
                   last_journal_id=v.last_journal_id, outbox=dict(v.outbox))


# --- lookup and verification ---------------------------------------------------------------------------
class LookupIn(_In):
    chip_id: ChipIdHex
    card: Serial


class LookupOut(_Out):
    account_number: str


class VerificationIn(_In):
    account_number: AccountNumber
    phone: Name32


class VerificationOut(_Out):
    token: str
    phone: str
    expires_at_s: int


class ConfirmIn(_In):
    code: Name16


class ConfirmOut(_Out):
    verified: bool
    attempts_left: int


class AuditOut(_Out):
    id: int
    at_s: int
    sim_at_s: int
    actor_kind: str
    actor: str
    client_ip: str
    action: str
    target: str
    detail: dict[str, Any]
