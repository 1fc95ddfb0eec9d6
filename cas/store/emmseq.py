"""EMM sequence numbers: a row per address, and a floor per kind set by each full refresh.

``docs/scale.md`` ("Sequence epochs").  ``emm_sequences`` keeps, per address kind
(``unique`` = a card's serial, ``shared`` = a group, ``global`` = 0), the next free sequence
number.  A full refresh does not write a row per card: it takes an **epoch** instead.  When
it plans, it reserves ``stride`` numbers above every number handed out so far and records
the top of the reservation as the kind's **floor** (the row ``floor-u`` / ``floor-s``,
address 0).  Every card's refresh EMMs then carry ``base, base + 1, …`` (``base`` = the old
top), and the next free number of any address is

    max(its own row's next_seq, the floor of its kind)

so an EMM made after the plan (incremental feed, live carousel, pay-per-view, OSD) is
always numbered above the refresh's, and no number is handed out twice.  The card needs no
change: it accepts any number 1 to ``SEQ_WINDOW`` (2^24) ahead of the last it applied
(:func:`cas.formats.emm.seq_is_newer`), and an epoch moves a card's numbers forward by the
stride plus what the busiest card of its kind received since the last refresh.

Every reader and writer of ``unique``/``shared`` numbers goes through this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from cas.errors import UsageError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

UNIQUE = "unique"
SHARED = "shared"
GLOBAL = "global"
#: The floor row of each kind that has one (address 0).
FLOOR_KIND = {UNIQUE: "floor-u", SHARED: "floor-s"}
#: The epoch base of the last full refresh of each kind (address 0), for diagnostics.
EPOCH_KIND = {UNIQUE: "epoch-u", SHARED: "epoch-s"}
#: The card refuses a number more than this far ahead of the last it applied.
_CARD_WINDOW = 1 << 24


def floor(session: Session, kind: str) -> int:
    """The lowest next number of any address of ``kind`` (1 when no refresh set one)."""
    from cas.store.models import EmmSequence

    fk = FLOOR_KIND.get(kind)
    if fk is None:
        return 1
    row = session.get(EmmSequence, (fk, 0))
    return max(int(row.next_seq), 1) if row is not None else 1


def next_seqs(session: Session, kind: str, addresses: Iterable[int]) -> dict[int, int]:
    """address -> next free number, for each of ``addresses`` (floor applied)."""
    from sqlalchemy import select

    from cas.store.models import EmmSequence

    f = floor(session, kind)
    wanted = sorted(set(addresses))
    out = dict.fromkeys(wanted, f)
    for i in range(0, len(wanted), 900):
        part = wanted[i : i + 900]
        for a, n in session.execute(select(EmmSequence.address, EmmSequence.next_seq).where(
                EmmSequence.address_kind == kind, EmmSequence.address.in_(part))):
            out[int(a)] = max(int(n), f)
    return out


def next_seq_range(session: Session, kind: str, lo: int, hi: int) -> tuple[int, dict[int, int]]:
    """(floor, {address: next number}) for the addresses of ``kind`` in ``lo..hi`` that have
    a row above the floor; any other address's next number is the floor."""
    from sqlalchemy import select

    from cas.store.models import EmmSequence

    f = floor(session, kind)
    rows = {int(a): int(n) for a, n in session.execute(
        select(EmmSequence.address, EmmSequence.next_seq).where(
            EmmSequence.address_kind == kind, EmmSequence.address >= lo,
            EmmSequence.address <= hi, EmmSequence.next_seq > f))}
    return f, rows


def take_seq(session: Session, kind: str, address: int) -> int:
    """Take the next number of (``kind``, ``address``) atomically (floor applied): two
    concurrent takers get two numbers."""
    from sqlalchemy import func, literal, select
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    from cas.store.models import EmmSequence

    dialect = session.get_bind().dialect.name
    fk = FLOOR_KIND.get(kind)
    f: Any
    if fk is None:
        f = literal(1)
    else:
        f = func.coalesce(select(EmmSequence.next_seq).where(
            EmmSequence.address_kind == fk, EmmSequence.address == 0).scalar_subquery(), 1)
    greatest = func.greatest if dialect == "postgresql" else func.max
    ins = (pg_insert if dialect == "postgresql" else sqlite_insert)(EmmSequence).values(
        address_kind=kind, address=address, next_seq=f + 1, sent_rights_version=0)
    taken = session.execute(ins.on_conflict_do_update(
        index_elements=[EmmSequence.address_kind, EmmSequence.address],
        set_={"next_seq": greatest(EmmSequence.next_seq, f) + 1})
        .returning(EmmSequence.next_seq))
    return int(taken.scalar_one()) - 1


def reserve_epoch(session: Session, kind: str, stride: int) -> int:
    """Reserve ``stride`` numbers of ``kind`` above every number handed out so far, in the
    caller's transaction: returns the epoch base; the kind's floor becomes base + stride.

    On PostgreSQL the table is locked against writers until the caller commits, so no
    number is taken between reading the top and raising the floor.  A base that a card
    which never had an EMM of this kind would refuse (beyond the card's window) is refused.
    """
    from sqlalchemy import func, select, text

    from cas.store.models import EmmSequence

    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE emm_sequences IN EXCLUSIVE MODE"))
    top = session.execute(select(func.max(EmmSequence.next_seq)).where(
        EmmSequence.address_kind == kind)).scalar_one()
    base = max(int(top or 1), floor(session, kind))
    if base + stride > _CARD_WINDOW:
        raise UsageError(f"the {kind} EMM sequence epoch would pass {_CARD_WINDOW}, beyond "
                         "what a card that never had an EMM accepts (docs/scale.md)").with_id(
            "store.emm_epoch_past_window", kind=kind, window=_CARD_WINDOW)
    set_floor(session, kind, base + stride)
    _put(session, EPOCH_KIND[kind], base, raise_only=False)
    return base


def last_epoch(session: Session, kind: str) -> int:
    """The epoch base of the last full refresh of ``kind`` (0 when none was planned)."""
    from cas.store.models import EmmSequence

    row = session.get(EmmSequence, (EPOCH_KIND[kind], 0))
    return int(row.next_seq) if row is not None else 0


def set_floor(session: Session, kind: str, value: int) -> None:
    """Raise (never lower) the floor of ``kind`` to ``value``."""
    _put(session, FLOOR_KIND[kind], value, raise_only=True)


def _put(session: Session, row_kind: str, value: int, *, raise_only: bool) -> None:
    from sqlalchemy import func
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    from cas.store.models import EmmSequence

    dialect = session.get_bind().dialect.name
    greatest = func.greatest if dialect == "postgresql" else func.max
    ins = (pg_insert if dialect == "postgresql" else sqlite_insert)(EmmSequence).values(
        address_kind=row_kind, address=0, next_seq=value, sent_rights_version=0)
    new = (greatest(EmmSequence.next_seq, ins.excluded.next_seq) if raise_only
           else ins.excluded.next_seq)
    session.execute(ins.on_conflict_do_update(
        index_elements=[EmmSequence.address_kind, EmmSequence.address],
        set_={"next_seq": new}))
