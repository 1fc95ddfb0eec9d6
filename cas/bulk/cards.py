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

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, overload

from sqlalchemy.engine import Connection

from cas.bulk.fast import execute, insert_rows, lookup, query
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
        slot = self.allocate_open()
        if slot is not None:
            return slot
        self._new_group()
        return self.allocate()

    def allocate_open(self) -> tuple[int, int] | None:
        """The next free slot of the open groups (lowest first), or None if they are full."""
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
        return None

    def _new_group(self) -> None:
        self.top += 1
        if self.top > MAX_SHARED_ADDRESS:
            raise _groups_exhausted()
        address = self.top
        self.known.add(address)
        self.next[address] = 0
        self.taken[address] = set()
        self.open.append(address)

    def fresh_run(self, n: int) -> int:
        """``n`` slots in new groups, one after the other (each group filled before the
        next, as :meth:`allocate` fills them once the open groups are full): the first
        slot's linear number ``shared_address * 256 + member_position``.  Call it when
        :meth:`allocate_open` has nothing left."""
        groups = -(-n // GROUP_SIZE)
        first = self.top + 1
        if self.top + groups > MAX_SHARED_ADDRESS:
            raise _groups_exhausted()
        for i in range(groups):
            address = first + i
            used = min(GROUP_SIZE, n - GROUP_SIZE * i)
            self.known.add(address)
            self.next[address] = used
            self.changed.add(address)
            if used < GROUP_SIZE:  # the last one stays open for the next allocation
                self.taken[address] = set(range(used))
                self.open.append(address)
        self.top = first + groups - 1
        return first * GROUP_SIZE

    def flush(self) -> None:
        existing = lookup(self.conn, "card_groups", "shared_address", sorted(self.changed), ())
        updates = [(self.next[a], a) for a in sorted(self.changed) if a in existing]
        inserts = [(a, self.next[a]) for a in sorted(self.changed) if a not in existing]
        from cas.bulk.fast import execute_many

        execute_many(self.conn, "UPDATE card_groups SET next_position = ? "
                     "WHERE shared_address = ?", updates)
        insert_rows(self.conn, "card_groups", ("shared_address", "next_position"), inserts)
        self.changed.clear()


def _groups_exhausted() -> Exception:
    from cas.store.errors import RecordConflict

    return RecordConflict("no shared address left", code="GROUPS_EXHAUSTED").with_id(
        "bulk.no_shared_address_left")


class SlotRun(NamedTuple):
    """``length`` cards with consecutive serials from ``serial`` at consecutive slots from the
    linear slot number ``slot`` (``shared_address * 256 + member_position``): card ``i`` of
    the run is serial ``serial + i`` at group ``(slot + i) // 256``, position
    ``(slot + i) % 256``.  A run may cross groups; ``new`` is False for cards that were
    already registered (a re-run)."""

    serial: int
    length: int
    slot: int
    new: bool = True


def runs_of(slots: Sequence[tuple[int, int]], first_serial: int, new: bool) -> list[SlotRun]:
    """Consecutive serials from ``first_serial`` at ``slots`` (``(address, position)``
    each), as few runs as their slots allow."""
    runs: list[SlotRun] = []
    start = 0
    for i in range(1, len(slots) + 1):
        if i == len(slots) or (slots[i][0] << 8 | slots[i][1]) != (
                slots[i - 1][0] << 8 | slots[i - 1][1]) + 1:
            runs.append(SlotRun(first_serial + start, i - start,
                                slots[start][0] << 8 | slots[start][1], new))
            start = i
    return runs


class RunSlots(Sequence[CardSlot]):
    """The cards of runs as a sequence of :class:`CardSlot`, made on access (a million
    cards' slots are a handful of runs, not a million objects)."""

    def __init__(self, runs: Sequence[SlotRun]) -> None:
        self._runs = list(runs)
        self._starts: list[int] = []
        total = 0
        for run in self._runs:
            self._starts.append(total)
            total += run.length
        self._len = total

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, index: int) -> CardSlot: ...
    @overload
    def __getitem__(self, index: slice) -> list[CardSlot]: ...

    def __getitem__(self, index: int | slice) -> CardSlot | list[CardSlot]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._len))]
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError(index)
        at = bisect_right(self._starts, index) - 1
        run, offset = self._runs[at], index - self._starts[at]
        slot = run.slot + offset
        return CardSlot(serial=run.serial + offset, shared_address=slot >> 8,
                        member_position=slot & 0xFF)


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

    def register_range(self, first: int, count: int, *, status: str = "active",
                       region: int = 0, maturity_limit: int = 0xFF, registered_at_s: int,
                       advance: Callable[[int], None] | None = None,
                       allocated: Callable[[list[SlotRun]], None] | None = None,
                       chunk: int = 50_000) -> list[SlotRun]:
        """Register the cards with serials ``first`` … ``first + count - 1``, all with the
        same attributes and no slot of their own (``cas card personalise --count N``): the
        slots of :meth:`register` (a serial already registered keeps its slot), as runs.

        Nothing is done card by card in Python: the slots are allocated as runs (the open
        groups' free positions one by one, at most 255 a group; then whole new groups by
        arithmetic) and the rows are generated by the database itself, one ``INSERT …
        SELECT`` over a series per ``chunk`` cards and table.  ``allocated`` gets every
        run, in serial order, before the rows are written."""
        end = first + count
        found = [(int(s), int(a), int(p)) for s, a, p in query(
            self.conn, "SELECT serial, shared_address, member_position FROM cards "
            "WHERE serial >= ? AND serial < ? ORDER BY serial", (first, end))]
        runs: list[SlotRun] = []
        serial, i = first, 0
        while serial < end:
            j = i
            while j < len(found) and found[j][0] == serial + (j - i):
                j += 1
            if j > i:  # already registered: keeps its slot
                runs += runs_of([(a, p) for _, a, p in found[i:j]], serial, new=False)
                serial, i = serial + (j - i), j
                continue
            gap_end = found[i][0] if i < len(found) else end
            runs += self._allocate_run(serial, gap_end - serial)
            serial = gap_end
        if allocated is not None:
            allocated(runs)
        new = [r for r in runs if r.new]
        if advance is not None:
            advance(count - sum(r.length for r in new))
        for run in new:
            for start in range(0, run.length, chunk):
                n = min(chunk, run.length - start)
                self._insert_run(SlotRun(run.serial + start, n, run.slot + start),
                                 status=status, region=region, maturity_limit=maturity_limit,
                                 at_s=registered_at_s)
                if advance is not None:
                    advance(n)
        return runs

    def _allocate_run(self, serial: int, n: int) -> list[SlotRun]:
        slots: list[tuple[int, int]] = []
        while len(slots) < n:
            slot = self.groups.allocate_open()
            if slot is None:
                break
            slots.append(slot)
        runs = runs_of(slots, serial, True)
        if len(slots) < n:
            rest = n - len(slots)
            runs.append(SlotRun(serial + len(slots), rest, self.groups.fresh_run(rest)))
        return runs

    def _insert_run(self, run: SlotRun, *, status: str, region: int, maturity_limit: int,
                    at_s: int) -> None:
        """The ``cards`` and ``rights_changes`` rows of one run, generated by the database
        from a series ``i = 0 … length - 1`` (the same rows :meth:`register` writes).  The
        series' length is a parameter: after the statement's own on PostgreSQL
        (``generate_series``), before them on SQLite (a recursive common table)."""
        pre: list[int] = []
        post: list[int] = []
        if self.conn.dialect.name == "postgresql":
            head, source = "", "generate_series(0, ? - 1) AS g(i)"
            post.append(run.length)
        else:
            head = ("WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g "
                    "WHERE i + 1 < ?) ")
            source = "g"
            pre.append(run.length)
        execute(self.conn, f"{head}INSERT INTO cards ({', '.join(CARD_COLUMNS)}) "
                f"SELECT CAST(? AS BIGINT) + i, (CAST(? AS BIGINT) + i) / {GROUP_SIZE}, "
                f"(CAST(? AS BIGINT) + i) % {GROUP_SIZE}, ?, ?, ?, CAST(? AS BIGINT), 1, "
                f"CAST(? AS BIGINT) FROM {source}",
                [*pre, run.serial, run.slot, run.slot, status, region, maturity_limit, at_s,
                 at_s, *post])
        execute(self.conn, f"{head}INSERT INTO rights_changes (card_serial, at_s, cause) "
                f"SELECT CAST(? AS BIGINT) + i, CAST(? AS BIGINT), ? FROM {source} "
                "ORDER BY i",
                [*pre, run.serial, at_s, "register", *post])

    def finish(self) -> None:
        self.groups.flush()
