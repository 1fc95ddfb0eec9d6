"""The subscriber store's tables (SQLAlchemy 2, typed declarative mapping).

Conventions (docs/architecture.md): times are ``int`` seconds since 1970-01-01 UTC in
``*_s`` columns, so SQLite and PostgreSQL compare and index them the same way; money is
``int`` minor units in ``*_minor`` columns; card serials and Chip IDs are u32, so they live in
BIGINT columns (PostgreSQL's INTEGER is signed 32-bit).  No key material is stored in clear:
a box's chipset key is kept only as delivered, wrapped by the vendor.

The migration in ``cas/store/migrations/versions`` creates exactly these tables; a test
compares the two on both databases.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, validates

from cas.errors import ConflictError

#: Auto-incrementing 64-bit key: SQLite only auto-increments an ``INTEGER PRIMARY KEY``.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# --- store-wide -----------------------------------------------------------------------------
class Setting(Base):
    """Key/value settings: the operator profile in use, the simulation clock, cursors."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Counter(Base):
    """Named monotonic counters (account and contract numbers), bumped atomically."""

    __tablename__ = "counters"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


# --- catalog --------------------------------------------------------------------------------
class Channel(Base):
    """A channel of the lineup.  ``service_id`` is also the ECM ``channel_id``."""

    __tablename__ = "channels"
    service_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    number: Mapped[int] = mapped_column(Integer, unique=True)
    name: Mapped[str] = mapped_column(String(128))
    maturity_rating: Mapped[int] = mapped_column(Integer, default=0)


class ChannelRegion(Base):
    """A region a channel may be watched in; a channel with no rows is watchable everywhere."""

    __tablename__ = "channel_regions"
    service_id: Mapped[int] = mapped_column(
        ForeignKey("channels.service_id", ondelete="CASCADE"), primary_key=True)
    region: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)


class Package(Base):
    """A package: ``id`` is the u16 package id carried in entitlements and ECM criteria."""

    __tablename__ = "packages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(8))  # "base" | "addon"
    price_minor: Mapped[int] = mapped_column(BigInteger)
    period_days: Mapped[int] = mapped_column(Integer)
    max_screens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    retired: Mapped[bool] = mapped_column(Boolean, default=False)


class PackagePriceTier(Base):
    """Tiered price: from billing period ``from_period`` (1-based) on, the price is this."""

    __tablename__ = "package_price_tiers"
    package_id: Mapped[int] = mapped_column(
        ForeignKey("packages.id", ondelete="CASCADE"), primary_key=True)
    from_period: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    price_minor: Mapped[int] = mapped_column(BigInteger)


class PackageChannel(Base):
    __tablename__ = "package_channels"
    package_id: Mapped[int] = mapped_column(
        ForeignKey("packages.id", ondelete="CASCADE"), primary_key=True)
    service_id: Mapped[int] = mapped_column(
        ForeignKey("channels.service_id", ondelete="CASCADE"), primary_key=True)


class PromoCode(Base):
    __tablename__ = "promo_codes"
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id"))
    days: Mapped[int] = mapped_column(Integer)
    max_uses: Mapped[int | None] = mapped_column(Integer, nullable=True)
    used_count: Mapped[int] = mapped_column(Integer, default=0)
    valid_until_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


# --- subscribers ----------------------------------------------------------------------------
class Account(Base):
    """A personal account (лицевой счёт).  ``account_number`` is assigned once, never changed."""

    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_number: Mapped[str] = mapped_column(String(32), unique=True)
    contract_number: Mapped[str] = mapped_column(String(32), unique=True)
    surname: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(128))
    patronymic: Mapped[str | None] = mapped_column(String(128), nullable=True)
    phone: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    email: Mapped[str | None] = mapped_column(String(256), nullable=True)
    kind: Mapped[str] = mapped_column(String(8))  # "prepaid" | "postpaid"
    credit_limit_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    balance_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    region: Mapped[int] = mapped_column(Integer)
    extra_screens: Mapped[int] = mapped_column(Integer, default=0)
    notify_email: Mapped[bool] = mapped_column(Boolean, default=True)
    notify_sms: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at_s: Mapped[int] = mapped_column(BigInteger)
    suspended_from_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    suspended_until_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    blocked_since_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    block_cause: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last_switch_at_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    @validates("account_number")
    def _immutable_number(self, key: str, value: str) -> str:
        # MTS seed: the personal account number "remains unchanged from the moment the
        # contract is signed" — once set, the ORM refuses to change it.
        current = self.__dict__.get("account_number")
        if current is not None and current != value:
            raise ConflictError("the account number is assigned once and cannot be changed").with_id(
                "store.account_number_assigned_once")
        return value


class Subscription(Base):
    """One package on one account, with its current entitlement window ``[start_s, paid_until_s)``.

    status: ``pending`` (chosen, waiting for money), ``active``, ``blocked`` (renewal due but
    unpaid), ``expired`` (renewal off, or add-on without base), ``closed`` (switched away).
    """

    __tablename__ = "subscriptions"
    __table_args__ = (Index("ix_subscriptions_status_paid_until", "status", "paid_until_s"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id"))
    status: Mapped[str] = mapped_column(String(8))
    auto_renew: Mapped[bool] = mapped_column(Boolean, default=True)
    start_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    paid_until_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    period_start_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    period_price_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    periods_billed: Mapped[int] = mapped_column(Integer, default=0)
    activated_at_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at_s: Mapped[int] = mapped_column(BigInteger)
    closed_at_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    reminded_until_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    source: Mapped[str] = mapped_column(String(16), default="subscribe")


class Payment(Base):
    """A top-up.  ``payment_id`` is the payment system's id: unique, so a replay is refused."""

    __tablename__ = "payments"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    payment_id: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    at_s: Mapped[int] = mapped_column(BigInteger)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    method: Mapped[str] = mapped_column(String(16))
    by_kind: Mapped[str] = mapped_column(String(8))
    ref: Mapped[str] = mapped_column(String(32))
    package_code: Mapped[str | None] = mapped_column(String(64), nullable=True)


class LedgerEntry(Base):
    """Every change of a balance is one row; the sum of an account's rows is its balance."""

    __tablename__ = "ledger_entries"
    __table_args__ = (Index("ix_ledger_account_id_id", "account_id", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    at_s: Mapped[int] = mapped_column(BigInteger)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    balance_after_minor: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(24))
    ref: Mapped[str | None] = mapped_column(String(64), nullable=True)
    description: Mapped[str] = mapped_column(String(256), default="")


class PromisedPayment(Base):
    """NTV Plus "Promised Payment": a short credit, written off on repayment or when due."""

    __tablename__ = "promised_payments"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    granted_at_s: Mapped[int] = mapped_column(BigInteger)
    due_at_s: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(8))  # open | repaid | expired
    settled_at_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class PromoRedemption(Base):
    __tablename__ = "promo_redemptions"
    __table_args__ = (UniqueConstraint("code", "account_id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(ForeignKey("promo_codes.code"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    at_s: Mapped[int] = mapped_column(BigInteger)


class Device(Base):
    """A screen logged in to an account (TV+: 1-3 per tariff, up to 5 with extra screens)."""

    __tablename__ = "devices"
    __table_args__ = (UniqueConstraint("account_id", "device_id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    device_id: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(128), default="")
    logged_in_at_s: Mapped[int] = mapped_column(BigInteger)
    logged_out_at_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    logout_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)


class VerificationSession(Base):
    """An SMS-code authentication session (Uzonline: the code is valid until the session ends)."""

    __tablename__ = "verification_sessions"
    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    phone: Mapped[str] = mapped_column(String(32))
    code_hash: Mapped[str] = mapped_column(String(64))  # SHA-256(token || code), never the code
    created_at_s: Mapped[int] = mapped_column(BigInteger)
    expires_at_s: Mapped[int] = mapped_column(BigInteger)
    verified_at_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    ended_at_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class Notification(Base):
    """An e-mail/SMS the head-end would send (reminders, blocks, codes); kept, not sent."""

    __tablename__ = "notifications"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    at_s: Mapped[int] = mapped_column(BigInteger)
    channel: Mapped[str] = mapped_column(String(8))  # sms | email
    kind: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(String(512))


# --- devices in the field -------------------------------------------------------------------
class Box(Base):
    """A set-top box, imported from the chipset vendor's Chip ID batch file."""

    __tablename__ = "boxes"
    chip_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    vendor: Mapped[str] = mapped_column(String(64), default="")
    model: Mapped[str] = mapped_column(String(64), default="")
    firmware_version: Mapped[str] = mapped_column(String(32), default="")
    manufactured: Mapped[str] = mapped_column(String(32), default="")
    #: The chipset key exactly as the vendor delivered it (wrapped); never in clear.
    wrapped_csk: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id"), nullable=True, index=True)
    imported_at_s: Mapped[int] = mapped_column(BigInteger)
    batch: Mapped[str] = mapped_column(String(128), default="")


class CardGroup(Base):
    """Allocation state of a shared address (u24): the next free member position (u8)."""

    __tablename__ = "card_groups"
    shared_address: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    next_position: Mapped[int] = mapped_column(Integer, default=0)


class Card(Base):
    """A smart card.  ``rights_version`` goes up by one with every change of its rights."""

    __tablename__ = "cards"
    __table_args__ = (UniqueConstraint("shared_address", "member_position"),)
    serial: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    shared_address: Mapped[int] = mapped_column(Integer)
    member_position: Mapped[int] = mapped_column(Integer)
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id"), nullable=True, index=True)
    status: Mapped[str] = mapped_column(String(8), default="active")  # active | killed | blocked (sharing)
    region: Mapped[int] = mapped_column(Integer, default=0)
    maturity_limit: Mapped[int] = mapped_column(Integer, default=0xFF)
    paired_chip_id: Mapped[int | None] = mapped_column(
        ForeignKey("boxes.chip_id"), nullable=True, unique=True)
    registered_at_s: Mapped[int] = mapped_column(BigInteger)
    rights_version: Mapped[int] = mapped_column(BigInteger, default=1)
    rights_changed_at_s: Mapped[int] = mapped_column(BigInteger)


# --- change journal and EMM bookkeeping -----------------------------------------------------
class RightsChange(Base):
    """Journal: a card's rights changed at ``at_s`` because of ``cause``.

    The incremental EMM feed reads it by ``id`` (or compares ``cards.rights_version`` with
    ``emm_sequences.sent_rights_version``).
    """

    __tablename__ = "rights_changes"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    card_serial: Mapped[int] = mapped_column(BigInteger, index=True)
    at_s: Mapped[int] = mapped_column(BigInteger)
    cause: Mapped[str] = mapped_column(String(32))


class EmmSequence(Base):
    """Next EMM sequence number per address: kind ``unique`` (serial) or ``shared`` (group)."""

    __tablename__ = "emm_sequences"
    address_kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    address: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    next_seq: Mapped[int] = mapped_column(BigInteger, default=1)
    sent_rights_version: Mapped[int] = mapped_column(BigInteger, default=0)


class EmmOutbox(Base):
    """EMMs of the live carousel (:mod:`cas.live.outbox`): generated once, stored, then aired.

    ``payload`` is one or more complete sections; ``kind`` ``unique`` (one card) or ``global``;
    ``status`` ``queued`` (repeats to air, re-aired after a restart) or ``sent`` (a card's
    latest EMM, kept for the background cycle).
    """

    __tablename__ = "emm_outbox"
    __table_args__ = (Index("ix_emm_outbox_status_id", "status", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    card_serial: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    shared_address: Mapped[int | None] = mapped_column(Integer, nullable=True)
    kind: Mapped[str] = mapped_column(String(16))  # unique | shared | global | pair | ppv | command
    created_at_s: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    status: Mapped[str] = mapped_column(String(8), default="queued")  # queued | sent | failed
    cause: Mapped[str | None] = mapped_column(String(32), nullable=True)
    sent_at_s: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


# --- pay-per-view (docs/ppv.md) ----------------------------------------------------------------
class PpvEvent(Base):
    """A pay-per-view event in the catalogue: on ``service_id`` from ``start_s`` to ``end_s``,
    priced in tokens (``impulse``: may be bought on the card from the sofa)."""

    __tablename__ = "ppv_events"
    event_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    service_id: Mapped[int] = mapped_column(Integer, index=True)
    title: Mapped[str] = mapped_column(String(128), default="")
    start_s: Mapped[int] = mapped_column(BigInteger)
    end_s: Mapped[int] = mapped_column(BigInteger)
    price_tokens: Mapped[int] = mapped_column(Integer)
    impulse: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at_s: Mapped[int] = mapped_column(BigInteger)


class PpvBooking(Base):
    """A pre-booked event: billed when booked, delivered to the card by EMM."""

    __tablename__ = "ppv_bookings"
    __table_args__ = (UniqueConstraint("card_serial", "event_id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    card_serial: Mapped[int] = mapped_column(BigInteger, index=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("ppv_events.event_id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    booked_at_s: Mapped[int] = mapped_column(BigInteger)


class PpvPurchase(Base):
    """An impulse purchase a card reported: billed once, by (card, purchase sequence)."""

    __tablename__ = "ppv_purchases"
    __table_args__ = (UniqueConstraint("card_serial", "purchase_seq"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    card_serial: Mapped[int] = mapped_column(BigInteger, index=True)
    purchase_seq: Mapped[int] = mapped_column(BigInteger)
    event_id: Mapped[int] = mapped_column(BigInteger)
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id"), nullable=True, index=True)
    price_tokens: Mapped[int] = mapped_column(Integer)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    bought_s: Mapped[int] = mapped_column(BigInteger)
    report_counter: Mapped[int] = mapped_column(BigInteger)
    billed_at_s: Mapped[int] = mapped_column(BigInteger)


class PpvReportState(Base):
    """The newest purchase report accepted from a card (a report at or below it is a replay)."""

    __tablename__ = "ppv_report_state"
    card_serial: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    last_report_counter: Mapped[int] = mapped_column(BigInteger)
    last_imported_at_s: Mapped[int] = mapped_column(BigInteger)
    purse_tokens: Mapped[int] = mapped_column(BigInteger, default=0)


#: The pay-per-view tables (migration ``0003_ppv``).
PPV_TABLES = ("ppv_events", "ppv_bookings", "ppv_purchases", "ppv_report_state")
