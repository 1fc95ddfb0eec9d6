"""Registering many cards at once: the fast path of ``cas bulk import cards`` and of
``cas card personalise --count N``.

Same rules as :func:`cas.store.repo.register_card`: a card without a slot gets the next free
one (filling the lowest open group of 256 first, then new groups); a card with a slot has it
checked and reserved; a serial already registered is left as it is (a re-run changes
nothing) unless its slot differs, which is an error.  Each new card gets its ``register``
rights-change row.  Everything happens on the caller's connection and transaction; on
PostgreSQL an advisory transaction lock keeps two registrations from allocating together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from cas.bulk.fast import insert_rows, lookup, query
from cas.store.repo import CardSlot

GROUP_SIZE = 256
FIRST_SHARED_ADDRESS = 1
MAX_SHARED_ADDRESS = 0xFF_FFFF
_REGISTER_LOCK_ID = 0x0CA5_0B01

CARD_COLUMNS = ("serial", "shared_address", "member_position", "status", "region",
                "maturity_limit", "registered_at_s", "rights_version", "rights_changed_at_s")


@dataclass(frozen=True, slots=True)
class NewCard:
    """A card to register; ``shared_address``/``member_position`` both given or both None."""

    serial: int
    shared_address: int | None = None
    member_position: int | None = None
    status: str = "active"
    region: int = 0
    maturity_limit: int = 0xFF
    registered_at_s: int = 0


class _Groups:
    """Allocation state of card groups, loaded once and written back at the end."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.next: dict[int, int] = {}
        self.known: set[int] = set()
        self.changed: set[int] = set()
        self.open = [int(a) for (a,) in query(
            conn, "SELECT shared_address FROM card_groups WHERE next_position < ? "
            "ORDER BY shared_address", (GROUP_SIZE,))]
        self.open.reverse()  # pop() from the end takes the lowest
        top = query(conn, "SELECT MAX(shared_address) FROM card_groups")[0][0]
        self.top = max(int(top or 0), FIRST_SHARED_ADDRESS - 1)
        self.taken: dict[int, set[int]] = {}

    def _load(self, addresses: Sequence[int]) -> None:
        fresh = [a for a in addresses if a not in self.next and a not in self.known]
        if not fresh:
            return
        for address, (nxt,) in lookup(self.conn, "card_groups", "shared_address", fresh,
                                      ("next_position",)).items():
            self.next[int(address)] = int(nxt)
        self.known.update(fresh)

    def taken_in(self, address: int) -> set[int]:
        if address not in self.taken:
            self.taken[address] = {int(p) for (p,) in query(
                self.conn, "SELECT member_position FROM cards WHERE shared_address = ?",
                (address,))}
        return self.taken[address]

    def reserve(self, address: int, position: int) -> None:
        self._load([address])
        self.taken_in(address).add(position)
        if self.next.get(address, 0) <= position or address not in self.next:
            self.next[address] = max(self.next.get(address, 0), position + 1)
            self.changed.add(address)

    def allocate(self) -> tuple[int, int]:
        while self.open:
            address = self.open[-1]
            if address not in self.next:
                self._load([address])
            position = self.next[address]
            taken = self.taken_in(address)
            while position < GROUP_SIZE and position in taken:
                position += 1
            if position >= GROUP_SIZE:
                self.next[address] = GROUP_SIZE
                self.changed.add(address)
                self.open.pop()
                continue
            self.next[address] = position + 1
            self.changed.add(address)
            taken.add(position)
            return address, position
        self.top += 1
        if self.top > MAX_SHARED_ADDRESS:
            from cas.store.errors import RecordConflict

            raise RecordConflict("no shared address left", code="GROUPS_EXHAUSTED").with_id(
                "bulk.no_shared_address_left")
        address = self.top
        self.known.add(address)
        self.next[address] = 0
        self.taken[address] = set()
        self.open.append(address)
        return self.allocate()

    def flush(self) -> None:
        existing = lookup(self.conn, "card_groups", "shared_address", sorted(self.changed), ())
        updates = [(self.next[a], a) for a in sorted(self.changed) if a in existing]
        inserts = [(a, self.next[a]) for a in sorted(self.changed) if a not in existing]
        from cas.bulk.fast import execute_many

        execute_many(self.conn, "UPDATE card_groups SET next_position = ? "
                     "WHERE shared_address = ?", updates)
        insert_rows(self.conn, "card_groups", ("shared_address", "next_position"), inserts)
        self.changed.clear()


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one card: its slot, whether it is new, or why it was refused."""

    slot: CardSlot | None
    new: bool
    reason: str | None = None


class Registrar:
    """Register cards chunk by chunk in one transaction (call :meth:`finish` at the end)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        if conn.dialect.name == "postgresql":
            query(conn, "SELECT pg_advisory_xact_lock(?)", (_REGISTER_LOCK_ID,))
        self.groups = _Groups(conn)

    def register(self, cards: Sequence[NewCard],
                 advance: Callable[[int], None] | None = None,
                 allocated: Callable[[list[Outcome]], None] | None = None) -> list[Outcome]:
        """Register one chunk; one :class:`Outcome` per card, in order.  ``allocated`` is
        called with the outcomes once the slots are known, before the rows are written (so
        a caller can start on the cards while the database takes them)."""
        existing = lookup(self.conn, "cards", "serial", [c.serial for c in cards],
                          ("shared_address", "member_position"))
        given = [(c.shared_address, c.member_position) for c in cards
                 if c.serial not in existing and c.shared_address is not None]
        clashes: dict[tuple[int, int], int] = {}
        for address in sorted({a for a, _ in given if a is not None}):
            for serial, position in query(
                    self.conn, "SELECT serial, member_position FROM cards "
                    "WHERE shared_address = ?", (address,)):
                clashes[(address, int(position))] = int(serial)
        out: list[Outcome] = []
        new_rows: list[tuple[object, ...]] = []
        changes: list[tuple[int, int, str]] = []
        seen: dict[int, int] = {}
        for card in cards:
            old = existing.get(card.serial)
            if old is not None:
                if card.shared_address is not None and (
                        card.shared_address, card.member_position) != (old[0], old[1]):
                    out.append(Outcome(None, False, f"card {card.serial:010d} is already "
                                       f"registered at group {old[0]}/{old[1]}"))
                else:
                    out.append(Outcome(CardSlot(serial=card.serial, shared_address=int(old[0]),
                                                member_position=int(old[1])), False))
                continue
            if card.serial in seen:
                out.append(Outcome(None, False, f"card {card.serial:010d} is in the file twice"))
                continue
            if card.shared_address is not None and card.member_position is not None:
                slot_key = (card.shared_address, card.member_position)
                if slot_key in clashes:
                    out.append(Outcome(None, False, f"group slot {slot_key[0]}/{slot_key[1]} "
                                       f"is taken by card {clashes[slot_key]:010d}"))
                    continue
                clashes[slot_key] = card.serial
                self.groups.reserve(*slot_key)
                address, position = slot_key
            else:
                address, position = self.groups.allocate()
            seen[card.serial] = len(out)
            new_rows.append((card.serial, address, position, card.status, card.region,
                             card.maturity_limit, card.registered_at_s, 1,
                             card.registered_at_s))
            changes.append((card.serial, card.registered_at_s, "register"))
            out.append(Outcome(CardSlot(serial=card.serial, shared_address=address,
                                        member_position=position), True))
        if allocated is not None:
            allocated(out)
        if advance is not None:
            advance(len(cards) - len(new_rows))
        step = 50_000
        for start in range(0, len(new_rows), step):
            insert_rows(self.conn, "cards", CARD_COLUMNS, new_rows[start:start + step])
            insert_rows(self.conn, "rights_changes", ("card_serial", "at_s", "cause"),
                        changes[start:start + step])
            if advance is not None:
                advance(len(new_rows[start:start + step]))
        return out

    def finish(self) -> None:
        self.groups.flush()
