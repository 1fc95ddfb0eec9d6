"""Repository functions shared by the layers: cards and their group slots, counters, settings,
and the rights-change journal.

These do not commit: they work inside the caller's transaction (see
:meth:`cas.store.engine.Store.transaction`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from cas.access import NO_MATURITY_LIMIT
from cas.errors import ValidationError
from cas.store.errors import RecordConflict, RecordNotFound
from cas.store.models import Card, CardGroup, Counter, RightsChange, Setting

#: Members per shared address: the shared-EMM member bitmap is 32 bytes = 256 bits.
GROUP_SIZE = 256
MAX_SERIAL = 0xFFFF_FFFF
MAX_SHARED_ADDRESS = 0xFF_FFFF
#: Shared address 0 is never allocated, so "no group" can be told from group 0.
FIRST_SHARED_ADDRESS = 1


def to_s(at: datetime) -> int:
    """Seconds since the epoch for a timezone-aware ``datetime`` (naive ones are refused)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValidationError("times must be timezone-aware (UTC)", code="NAIVE_TIME").with_id(
            "store.times_timezone_aware_utc")
    return int(at.timestamp())


def from_s(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


# --- settings and counters ---------------------------------------------------------------------
def get_setting(session: Session, key: str) -> str | None:
    row = session.get(Setting, key)
    return row.value if row is not None else None


def set_setting(session: Session, key: str, value: str) -> None:
    row = session.get(Setting, key)
    if row is None:
        session.add(Setting(key=key, value=value))
    else:
        row.value = value
    session.flush()


def next_counter(session: Session, name: str) -> int:
    """Atomically increment the counter ``name`` and return its new value (1 on first use)."""
    bumped = session.execute(
        update(Counter).where(Counter.name == name).values(value=Counter.value + 1)
        .returning(Counter.value)
    ).scalar_one_or_none()
    if bumped is not None:
        return int(bumped)
    session.execute(insert(Counter).values(name=name, value=1))
    return 1


# --- cards ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class CardSlot:
    """Where a card sits for shared EMMs: its group (u24) and its bit in the member bitmap (u8)."""

    serial: int
    shared_address: int
    member_position: int


def _check_serial(serial: int) -> None:
    if isinstance(serial, bool) or not isinstance(serial, int) or not 0 < serial <= MAX_SERIAL:
        raise ValidationError(f"card serial must be 1..{MAX_SERIAL}, got {serial!r}",
                              code="BAD_SERIAL").with_id(
            "store.card_serial", max_serial=MAX_SERIAL, serial=f"{serial!r}")


def _allocate_slot(session: Session) -> tuple[int, int]:
    """Next free (shared address, position): fill the lowest open group, else open a new one."""
    while True:
        group = session.execute(
            select(CardGroup).where(CardGroup.next_position < GROUP_SIZE)
            .order_by(CardGroup.shared_address).limit(1).with_for_update()
        ).scalar_one_or_none()
        if group is None:
            break
        position = group.next_position
        group.next_position = position + 1
        session.flush()
        taken = session.execute(
            select(Card.serial).where(Card.shared_address == group.shared_address,
                                      Card.member_position == position)
        ).first()
        if taken is None:
            return group.shared_address, position
    top = session.execute(select(func.max(CardGroup.shared_address))).scalar_one_or_none()
    address = max(top or 0, FIRST_SHARED_ADDRESS - 1) + 1
    if address > MAX_SHARED_ADDRESS:
        raise RecordConflict("no shared address left", code="GROUPS_EXHAUSTED").with_id(
            "store.no_shared_address_left")
    session.add(CardGroup(shared_address=address, next_position=1))
    session.flush()
    return address, 0


def register_card(
    session: Session,
    serial: int,
    shared_address: int | None = None,
    member_position: int | None = None,
    *,
    at: datetime,
    region: int = 0,
    maturity_limit: int = NO_MATURITY_LIMIT,
) -> CardSlot:
    """Register a smart card in the store and return its group slot.

    Without ``shared_address``/``member_position`` the card gets the next free slot, filling
    groups of 256 in order.  With them (a card personalised elsewhere) the slot is checked
    and reserved.  Registering a serial again with the same (or no) slot returns its
    existing slot — personalisation may be re-run; a different slot is a conflict.
    """
    _check_serial(serial)
    existing = session.get(Card, serial)
    if existing is not None:
        if (shared_address is not None and shared_address != existing.shared_address) or (
                member_position is not None and member_position != existing.member_position):
            raise RecordConflict(
                f"card {serial:010d} is already registered at group "
                f"{existing.shared_address}/{existing.member_position}", code="CARD_SLOT_CONFLICT").with_id(
                "store.card_already_registered_group", serial=f"{serial:010d}",
                shared_address=existing.shared_address, member_position=existing.member_position)
        return CardSlot(serial=serial, shared_address=existing.shared_address,
                        member_position=existing.member_position)
    if (shared_address is None) != (member_position is None):
        raise ValidationError("give both shared address and member position, or neither",
                              code="BAD_SLOT").with_id("store.give_both_shared_address")
    if shared_address is None or member_position is None:
        shared_address, member_position = _allocate_slot(session)
    else:
        if not 0 <= shared_address <= MAX_SHARED_ADDRESS or not 0 <= member_position < GROUP_SIZE:
            raise ValidationError("shared address must be u24 and member position u8",
                                  code="BAD_SLOT").with_id("store.shared_address_u24_member")
        clash = session.execute(
            select(Card.serial).where(Card.shared_address == shared_address,
                                      Card.member_position == member_position)
        ).first()
        if clash is not None:
            raise RecordConflict(
                f"group slot {shared_address}/{member_position} is taken by card {clash[0]:010d}",
                code="CARD_SLOT_CONFLICT").with_id(
                "store.group_slot_taken_card", shared_address=shared_address,
                member_position=member_position, clash=f"{clash[0]:010d}")
        group = session.get(CardGroup, shared_address, with_for_update=True)
        if group is None:
            session.add(CardGroup(shared_address=shared_address,
                                  next_position=member_position + 1))
        elif group.next_position <= member_position:
            group.next_position = member_position + 1
    at_s = to_s(at)
    session.add(Card(serial=serial, shared_address=shared_address,
                     member_position=member_position, region=region,
                     maturity_limit=maturity_limit, registered_at_s=at_s,
                     rights_version=1, rights_changed_at_s=at_s, status="active"))
    session.flush()
    session.add(RightsChange(card_serial=serial, at_s=at_s, cause="register"))
    return CardSlot(serial=serial, shared_address=shared_address, member_position=member_position)


def get_card(session: Session, serial: int, *, lock: bool = False) -> Card:
    card = session.get(Card, serial, with_for_update=lock or None)
    if card is None:
        raise RecordNotFound(f"unknown card {serial:010d}" if isinstance(serial, int)
                             else f"unknown card {serial!r}", code="UNKNOWN_CARD").with_id(
            "unknown_card", card=f"{serial:010d}" if isinstance(serial, int) else serial)
    return card


def card_slots(session: Session, shared_address: int) -> list[CardSlot]:
    """All cards of one group, by member position (for shared-EMM bitmaps)."""
    rows = session.execute(
        select(Card.serial, Card.shared_address, Card.member_position)
        .where(Card.shared_address == shared_address).order_by(Card.member_position)
    ).all()
    return [CardSlot(serial=r[0], shared_address=r[1], member_position=r[2]) for r in rows]


# --- rights-change journal -------------------------------------------------------------------
def record_rights_change(session: Session, serials: Sequence[int], at_s: int, cause: str) -> None:
    """Journal a change of rights for ``serials`` and bump their ``rights_version``.

    Every domain function that changes what a card may watch calls this, so the EMM
    generator can find "what changed since the last run" (by journal id or by version).
    """
    if not serials:
        return
    session.execute(
        update(Card).where(Card.serial.in_(list(serials)))
        .values(rights_version=Card.rights_version + 1, rights_changed_at_s=at_s)
        .execution_options(synchronize_session=False)
    )
    session.execute(insert(RightsChange),
                    [{"card_serial": s, "at_s": at_s, "cause": cause[:32]} for s in serials])
    # Loaded Card objects must not keep a stale version.
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Card) and obj.serial in serials:
            session.expire(obj, ["rights_version", "rights_changed_at_s"])


def account_card_serials(session: Session, account_id: int) -> list[int]:
    return [int(s) for s in session.execute(
        select(Card.serial).where(Card.account_id == account_id).order_by(Card.serial)
    ).scalars()]


@dataclass(frozen=True, slots=True, kw_only=True)
class RightsChangeRow:
    id: int
    card_serial: int
    at_s: int
    cause: str


def iter_rights_changes(session: Session, after_id: int = 0,
                        limit: int | None = None) -> Iterator[RightsChangeRow]:
    """Journal rows with ``id > after_id`` in id order (the incremental EMM feed's input).

    On PostgreSQL ids are allocated before commit, so a reader that must never miss a row
    should also compare ``cards.rights_version`` with ``emm_sequences.sent_rights_version``.
    """
    stmt = select(RightsChange.id, RightsChange.card_serial, RightsChange.at_s,
                  RightsChange.cause).where(RightsChange.id > after_id).order_by(RightsChange.id)
    if limit is not None:
        stmt = stmt.limit(limit)
    for r in session.execute(stmt):
        yield RightsChangeRow(id=r[0], card_serial=r[1], at_s=r[2], cause=r[3])


def unique(iterable: Iterable[int]) -> list[int]:
    return sorted(set(iterable))
