"""Cards on accounts (DESIGN §6): link, unlink and pair with a box (DESIGN §2: the CWPK goes
to this card for this chip), the kids profile (maturity limit), the region, killing a card,
and the card as the operator sees it.  Every change is written to the rights journal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cas.access import NO_MATURITY_LIMIT
from cas.billing.txn import account_by_number, atomic, current_profile, lock_account
from cas.errors import BillingError, ValidationError
from cas.store.errors import RecordConflict, RecordNotFound
from cas.store.models import Account, Box, Card
from cas.store.repo import from_s, get_card, record_rights_change, to_s


@atomic
def link_card(session: Session, *, serial: int, account_number: str, at: datetime) -> None:
    """Give a registered card to an account (NTV Plus: the smart-card number is part of the
    personal account).  The card takes the account's region."""
    at_s = to_s(at)
    acc = lock_account(session, account_by_number(session, account_number).id)
    card = get_card(session, serial, lock=True)
    if card.status == "killed":
        raise BillingError(f"card {serial:010d} is killed", code="CARD_KILLED").with_id(
            "billing.card_killed", serial=f"{serial:010d}")
    if card.account_id is not None:
        if card.account_id == acc.id:
            raise RecordConflict(f"card {serial:010d} is already on this account",
                                 code="CARD_ALREADY_LINKED").with_id(
                "billing.card_already_account", serial=f"{serial:010d}")
        raise RecordConflict(f"card {serial:010d} belongs to another account",
                             code="CARD_LINKED_ELSEWHERE").with_id(
            "billing.card_belongs_another_account", serial=f"{serial:010d}")
    card.account_id = acc.id
    card.region = acc.region
    session.flush()
    record_rights_change(session, [serial], at_s, "link")


@atomic
def unlink_card(session: Session, *, serial: int, at: datetime) -> None:
    at_s = to_s(at)
    card = get_card(session, serial, lock=True)
    if card.account_id is None:
        raise RecordConflict(f"card {serial:010d} is not linked", code="CARD_NOT_LINKED").with_id(
            "billing.card_not_linked", serial=f"{serial:010d}")
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
        raise RecordNotFound(f"unknown box {chip_id:08X}", code="UNKNOWN_BOX").with_id(
            "unknown_box", chip=f"{chip_id:08X}")
    if card.account_id is None:
        raise BillingError(f"card {serial:010d} is not linked to an account", code="CARD_NOT_LINKED").with_id(
            "billing.card_not_linked_account", serial=f"{serial:010d}")
    if box.account_id is not None and box.account_id != card.account_id:
        raise RecordConflict(f"box {chip_id:08X} belongs to another account",
                             code="BOX_LINKED_ELSEWHERE").with_id(
            "billing.box_belongs_another_account", chip_id=f"{chip_id:08X}")
    if card.paired_chip_id == chip_id:
        raise RecordConflict(f"card {serial:010d} is already paired with {chip_id:08X}",
                             code="ALREADY_PAIRED").with_id(
            "billing.card_already_paired", serial=f"{serial:010d}", chip_id=f"{chip_id:08X}")
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
        raise ValidationError("region must be a u16", code="BAD_REGION").with_id(
            "billing.region_u16")
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
        raise RecordConflict(f"card {serial:010d} is already killed", code="CARD_KILLED").with_id(
            "billing.card_already_killed", serial=f"{serial:010d}")
    card.status = "killed"
    session.flush()
    record_rights_change(session, [serial], at_s, "kill")


@atomic
def block_card(session: Session, *, serial: int, at: datetime, cause: str = "sharing") -> bool:
    """Block a card (card-sharing found, docs/sharing.md): status ``blocked``, every channel
    locked like a killed card, and the rights change journalled so the next EMM run carries it
    to the card.  False (nothing changed) when the card is already blocked or killed."""
    at_s = to_s(at)
    card = get_card(session, serial, lock=True)
    if card.status in ("blocked", "killed"):
        return False
    card.status = "blocked"
    session.flush()
    record_rights_change(session, [serial], at_s, cause)
    return True


@atomic
def unblock_card(session: Session, *, serial: int, at: datetime) -> None:
    """Take back a card blocked for sharing (docs/sharing.md): status ``active`` again, the
    rights change journalled (cause ``unblock``), so the next EMM run sets the card's status
    back — and the card, leaving KILLED, forgets its own sharing flag and ECM record.  Only a
    ``blocked`` card: a killed one is gone for good (``CARD_KILLED``), any other is
    ``CARD_NOT_BLOCKED``."""
    at_s = to_s(at)
    card = get_card(session, serial, lock=True)
    if card.status == "killed":
        raise BillingError(f"card {serial:010d} is killed for good", code="CARD_KILLED").with_id(
            "billing.card_killed_for_good", serial=f"{serial:010d}")
    if card.status != "blocked":
        raise RecordConflict(f"card {serial:010d} is not blocked",
                             code="CARD_NOT_BLOCKED").with_id(
            "billing.card_not_blocked", serial=f"{serial:010d}")
    card.status = "active"
    session.flush()
    record_rights_change(session, [serial], at_s, "unblock")


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


__all__ = ["CardView", "block_card", "card_view", "kill_card", "link_card", "list_cards",
           "pair_card", "set_card_region", "set_kids_profile", "unblock_card", "unlink_card"]
