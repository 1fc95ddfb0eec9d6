"""Pay-per-view at the head-end: the event catalogue, pre-booking, the purchase-report
return path and the EMMs that close the loop (docs/ppv.md).

Money rule: one token is one major unit of the operator's currency (``price_minor =
tokens × minor_per_major``, e.g. 150 tokens = 150.00 KZT); money stays integer minor units.
A pre-booked event is billed when it is booked; an impulse purchase when the card's report
arrives, once per (card, purchase sequence) however often it is reported.  Loading tokens
into a purse costs nothing by itself: tokens are spending authority, bounded by the credit
limit, and become money only when a purchase is reported.

Nothing here commits: callers run inside one transaction (``cas.store.engine``); every
public function is ``@atomic``, so a refused report or booking leaves no row behind.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from cas.access import CardRights, EventRight
from cas.access import PpvEvent as OnAir
from cas.billing.ledger import post
from cas.billing.txn import atomic, current_profile, lock_account
from cas.billing.vocab import LedgerKind
from cas.crypto import OperatorKeys
from cas.crypto.ppv import report_key, verify_report_tag
from cas.errors import AuthenticationError, BillingError, FormatError, ValidationError
from cas.formats.emm import (
    NONCE_SIZE,
    EmmCommand,
    EmmHeader,
    PpvEventRight,
    PpvReportAck,
    PurseCredit,
    UniqueAddress,
    wire_seq,
)
from cas.formats.ppv import PurchaseReport, parse_report, report_clear_bytes, report_nonce
from cas.messages import seal_emm
from cas.store.errors import RecordConflict, RecordNotFound
from cas.store.models import (
    Card,
    Channel,
    EmmOutbox,
    PpvBooking,
    PpvEvent,
    PpvPurchase,
    PpvReportState,
)

#: How long a PPV EMM stays valid on the card (as the rights EMMs: 30 days).
PPV_EMM_VALIDITY_S = 30 * 86_400
MAX_PRICE_TOKENS = 0xFFFF


class PpvReportError(BillingError):
    """A purchase report the head-end refuses."""


class ReportForgedError(PpvReportError):
    """The report does not authenticate under the card's report key (or does not parse)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="PPV_REPORT_FORGED")


class ReportReplayedError(PpvReportError):
    """The report's counter is not newer than the last accepted one from that card."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="PPV_REPORT_REPLAYED")


# --- catalogue --------------------------------------------------------------------------------
def price_minor(session: Session, tokens: int) -> int:
    """The money rule (module doc): tokens × minor units per major unit."""
    return tokens * current_profile(session).minor_per_major


@atomic
def add_event(session: Session, *, event_id: int, service_id: int, start_s: int, end_s: int,
              price_tokens: int, title: str = "", impulse: bool = True,
              now_s: int) -> PpvEvent:
    if not 1 <= event_id <= 0xFFFFFFFF:
        raise ValidationError("an event id is 1..4294967295", code="BAD_EVENT_ID").with_id(
            "billing.event_id")
    if not 0 < price_tokens <= MAX_PRICE_TOKENS:
        raise ValidationError(f"price is 1..{MAX_PRICE_TOKENS} tokens", code="BAD_PRICE").with_id(
            "billing.price_tokens", max_price_tokens=MAX_PRICE_TOKENS)
    if not 0 <= start_s < end_s <= 0xFFFFFFFF:
        raise ValidationError("an event ends after it starts", code="BAD_EVENT_TIME").with_id(
            "billing.event_ends_after_starts")
    if session.get(Channel, service_id) is None:
        raise RecordNotFound(f"no channel with service id {service_id}", code="UNKNOWN_CHANNEL").with_id(
            "billing.no_channel_service_id", service_id=service_id)
    if session.get(PpvEvent, event_id) is not None:
        raise RecordConflict(f"PPV event {event_id} exists", code="PPV_EVENT_EXISTS").with_id(
            "billing.ppv_event_exists", event_id=event_id)
    overlap = session.execute(select(PpvEvent.event_id).where(
        PpvEvent.service_id == service_id, PpvEvent.start_s < end_s,
        PpvEvent.end_s > start_s)).scalar()
    if overlap is not None:
        raise RecordConflict(f"channel {service_id} already carries PPV event {overlap} then",
                             code="PPV_EVENT_OVERLAP").with_id(
            "billing.channel_already_carries_ppv", service_id=service_id, overlap=overlap)
    row = PpvEvent(event_id=event_id, service_id=service_id, title=title[:128],
                   start_s=start_s, end_s=end_s, price_tokens=price_tokens, impulse=impulse,
                   created_at_s=now_s)
    session.add(row)
    session.flush()
    return row


def list_events(session: Session) -> list[PpvEvent]:
    return list(session.execute(select(PpvEvent).order_by(PpvEvent.start_s,
                                                          PpvEvent.event_id)).scalars())


def get_event(session: Session, event_id: int) -> PpvEvent:
    row = session.get(PpvEvent, event_id)
    if row is None:
        raise RecordNotFound(f"unknown PPV event {event_id}", code="UNKNOWN_PPV_EVENT").with_id(
            "billing.unknown_ppv_event", event_id=event_id)
    return row


def on_air(row: PpvEvent) -> OnAir:
    """What an ECM carries for the event (``cas.access.PpvEvent``)."""
    return OnAir(event_id=row.event_id, start_s=row.start_s, end_s=row.end_s,
                 price_tokens=row.price_tokens, impulse=row.impulse)


def events_by_service(session: Session) -> dict[int, tuple[OnAir, ...]]:
    """Every catalogued event per service id, for the ECM generator's schedule."""
    out: dict[int, list[OnAir]] = {}
    for row in list_events(session):
        out.setdefault(row.service_id, []).append(on_air(row))
    return {sid: tuple(v) for sid, v in out.items()}


def event_on_air_at(session: Session, service_id: int, at_s: int) -> OnAir | None:
    row = session.execute(select(PpvEvent).where(
        PpvEvent.service_id == service_id, PpvEvent.start_s <= at_s,
        PpvEvent.end_s > at_s)).scalars().first()
    return on_air(row) if row is not None else None


def card_event_rights(session: Session, serial: int) -> tuple[EventRight, ...]:
    """What the head-end knows the card holds: its bookings and its reported purchases."""
    rows = session.execute(
        select(PpvEvent, PpvPurchase.id.is_not(None))
        .outerjoin(PpvBooking, (PpvBooking.event_id == PpvEvent.event_id)
                   & (PpvBooking.card_serial == serial))
        .outerjoin(PpvPurchase, (PpvPurchase.event_id == PpvEvent.event_id)
                   & (PpvPurchase.card_serial == serial))
        .where((PpvBooking.id.is_not(None)) | (PpvPurchase.id.is_not(None)))
        .order_by(PpvEvent.event_id)).all()
    return tuple(EventRight(event_id=ev.event_id, channel_id=ev.service_id, start_s=ev.start_s,
                            end_s=ev.end_s, impulse=bool(bought)) for ev, bought in rows)


def with_ppv(session: Session, serial: int, rights: CardRights) -> CardRights:
    """``rights`` with the card's event rights (for ``cas why``)."""
    from dataclasses import replace

    return replace(rights, events=card_event_rights(session, serial))


# --- EMMs ---------------------------------------------------------------------------------------
def _take_unique_seq(session: Session, serial: int) -> int:
    """The next unique EMM sequence number of ``serial``, taken atomically (above the
    floor of the last full refresh: :mod:`cas.store.emmseq`)."""
    from cas.store.emmseq import take_seq

    return take_seq(session, "unique", serial)


def queue_card_emm(session: Session, keys: OperatorKeys, serial: int,
                   commands: Sequence[EmmCommand], *, at_s: int, cause: str,
                   nonce: bytes | None = None) -> bytes:
    """Seal a unique EMM with ``commands`` for ``serial`` and queue it in the live carousel's
    outbox (kind ``ppv``: a later rights EMM of the card does not replace it, as it replaces
    the card's older ``unique`` rows); returns the section (for a file or a test bench)."""
    seq = _take_unique_seq(session, serial)
    header = EmmHeader(address=UniqueAddress(serial=serial), seq=wire_seq(seq),
                       not_after_s=at_s + PPV_EMM_VALIDITY_S)
    section = seal_emm(keys.cuk(serial), header, list(commands),
                       nonce if nonce is not None else os.urandom(NONCE_SIZE))
    session.execute(insert(EmmOutbox), [{
        "card_serial": serial, "shared_address": None, "kind": "ppv",
        "created_at_s": at_s, "payload": section, "status": "queued", "cause": cause[:32],
        "sent_at_s": None}])
    return section


def _card(session: Session, serial: int) -> Card:
    card = session.get(Card, serial)
    if card is None:
        raise RecordNotFound(f"unknown card {serial:010d}", code="UNKNOWN_CARD").with_id(
            "billing.unknown_card", serial=f"{serial:010d}")
    return card


@dataclass(frozen=True, slots=True, kw_only=True)
class Booking:
    serial: int
    event_id: int
    amount_minor: int
    emm: bytes = field(repr=False)


@atomic
def book_event(session: Session, keys: OperatorKeys, *, serial: int, event_id: int,
               now_s: int) -> Booking:
    """Pre-book ``event_id`` for the card: bill its account now, send the right by EMM."""
    card = _card(session, serial)
    if card.account_id is None:
        raise BillingError(f"card {serial:010d} is on no account", code="CARD_NOT_LINKED").with_id(
            "billing.card_no_account", serial=f"{serial:010d}")
    event = get_event(session, event_id)
    if now_s >= event.end_s:
        raise BillingError(f"PPV event {event_id} has ended", code="PPV_EVENT_ENDED").with_id(
            "billing.ppv_event_ended", event_id=event_id)
    if session.execute(select(PpvBooking.id).where(
            PpvBooking.card_serial == serial, PpvBooking.event_id == event_id)).first():
        raise RecordConflict(f"card {serial:010d} has already booked event {event_id}",
                             code="PPV_ALREADY_BOOKED").with_id(
            "billing.card_already_booked_event", serial=f"{serial:010d}", event_id=event_id)
    acc = lock_account(session, card.account_id)
    amount = price_minor(session, event.price_tokens)
    from cas.billing.ledger import can_afford

    if not can_afford(acc, amount):
        raise BillingError("not enough money on the account for this event",
                           code="INSUFFICIENT_FUNDS").with_id("billing.not_enough_money_account")
    post(session, acc, -amount, at_s=now_s, kind=LedgerKind.CHARGE,
         ref=f"ppv-book:{serial}:{event_id}", description=f"PPV event {event_id} {event.title}")
    session.add(PpvBooking(card_serial=serial, event_id=event_id, account_id=acc.id,
                           amount_minor=amount, booked_at_s=now_s))
    emm = queue_card_emm(session, keys, serial, [PpvEventRight(
        event_id=event_id, channel_id=event.service_id, start_s=event.start_s,
        end_s=event.end_s)], at_s=now_s, cause="ppv-book")
    return Booking(serial=serial, event_id=event_id, amount_minor=amount, emm=emm)


@atomic
def top_up(session: Session, keys: OperatorKeys, *, serial: int, tokens: int,
           credit_limit_tokens: int, now_s: int) -> bytes:
    """Queue a purse top-up EMM (tokens are credit, billed per reported purchase)."""
    _card(session, serial)
    if not 0 <= tokens <= 0xFFFFFFFF or not 0 <= credit_limit_tokens <= 0xFFFFFFFF:
        raise ValidationError("tokens and credit limit are 0..4294967295", code="BAD_TOKENS").with_id(
            "billing.tokens_credit_limit")
    return queue_card_emm(session, keys, serial, [PurseCredit(
        tokens=tokens, credit_limit_tokens=credit_limit_tokens)], at_s=now_s, cause="ppv-topup")


# --- the return path ----------------------------------------------------------------------------
def verify_report(keys: OperatorKeys, data: bytes) -> PurchaseReport:
    """Parse and authenticate a purchase report (:class:`ReportForgedError` otherwise; the
    message says nothing about which check failed)."""
    try:
        report = parse_report(data)
        verify_report_tag(report_key(keys.cuk(report.serial)),
                          report_nonce(report.report_counter), report_clear_bytes(report),
                          report.tag)
    except (FormatError, AuthenticationError):
        raise ReportForgedError("purchase report refused: not authentic").with_id(
            "billing.purchase_report_refused_not") from None
    return report


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportResult:
    serial: int
    report_counter: int
    billed: tuple[int, ...]  # purchase sequence numbers billed by this report
    already_billed: tuple[int, ...]
    amount_minor: int
    ack_emm: bytes | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, object]:
        return {"serial": f"{self.serial:010d}", "report_counter": self.report_counter,
                "billed": list(self.billed), "already_billed": list(self.already_billed),
                "amount_minor": self.amount_minor, "ack_emm": self.ack_emm is not None}


@atomic
def import_report(session: Session, keys: OperatorKeys, data: bytes, *, now_s: int,
                  top_up_tokens: int = 0, credit_limit_tokens: int | None = None) -> ImportResult:
    """Verify a card's purchase report, bill each purchase once, and queue the EMM that
    acknowledges the records (and tops the purse up by ``top_up_tokens``)."""
    report = verify_report(keys, data)
    serial = report.serial
    card = _card(session, serial)
    state = session.get(PpvReportState, serial, with_for_update=True)
    if state is not None and report.report_counter <= state.last_report_counter:
        raise ReportReplayedError(
            f"purchase report {report.report_counter} of card {serial:010d} refused: "
            f"reports up to {state.last_report_counter} are already imported").with_id(
            "billing.purchase_report_card_refused", report_counter=report.report_counter,
            serial=f"{serial:010d}", last_report_counter=state.last_report_counter)
    billed: list[int] = []
    already: list[int] = []
    total = 0
    acc = lock_account(session, card.account_id) if card.account_id is not None else None
    for p in report.purchases:
        if session.execute(select(PpvPurchase.id).where(
                PpvPurchase.card_serial == serial,
                PpvPurchase.purchase_seq == p.purchase_seq)).first():
            already.append(p.purchase_seq)
            continue
        amount = price_minor(session, p.price_tokens)
        if acc is not None:
            post(session, acc, -amount, at_s=now_s, kind=LedgerKind.CHARGE,
                 ref=f"ppv:{serial}:{p.purchase_seq}",
                 description=f"PPV event {p.event_id} bought on card {serial:010d}")
        session.add(PpvPurchase(card_serial=serial, purchase_seq=p.purchase_seq,
                                event_id=p.event_id, account_id=acc.id if acc else None,
                                price_tokens=p.price_tokens, amount_minor=amount,
                                bought_s=p.bought_s, report_counter=report.report_counter,
                                billed_at_s=now_s))
        billed.append(p.purchase_seq)
        total += amount
    if state is None:
        session.add(PpvReportState(card_serial=serial, last_report_counter=report.report_counter,
                                   last_imported_at_s=now_s, purse_tokens=report.purse_tokens))
    else:
        state.last_report_counter = report.report_counter
        state.last_imported_at_s = now_s
        state.purse_tokens = report.purse_tokens
    commands: list[EmmCommand] = []
    if report.purchases:
        commands.append(PpvReportAck(
            up_to_purchase_seq=max(p.purchase_seq for p in report.purchases)))
    if top_up_tokens or credit_limit_tokens is not None:
        commands.append(PurseCredit(tokens=top_up_tokens, credit_limit_tokens=(
            credit_limit_tokens if credit_limit_tokens is not None
            else report.credit_limit_tokens)))
    ack = (queue_card_emm(session, keys, serial, commands, at_s=now_s, cause="ppv-report")
           if commands else None)
    session.flush()
    return ImportResult(serial=serial, report_counter=report.report_counter,
                        billed=tuple(billed), already_billed=tuple(already),
                        amount_minor=total, ack_emm=ack)
