"""Entitlement state per card at a time T — a pure function of the store's rows (DESIGN §4).

This is the input of EMM generation and of ``cas why``:

* card status: ``KILLED`` (card killed), ``INACTIVE`` (not on an account), ``SUSPENDED``
  (account on holiday at T), ``FINANCIAL_BLOCK`` (account blocked at T), else ``ACTIVE``;
* entitlements: the current window ``[start, paid_until)`` of every subscription that has
  one (active, blocked or expired — a past window makes ``ENTITLEMENT_EXPIRED`` explainable;
  pending and switched-away subscriptions carry none);
* region and maturity limit from the card; the paired Chip ID.

:func:`iter_card_states` streams the whole base in one ordered query (server-side cursor on
PostgreSQL, ``yield_per`` batches everywhere) with a few tuple operations per row, in
shared-address order so the EMM generator can build shared EMMs group by group.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Select, and_, select
from sqlalchemy.orm import Session

from cas.access import CardRights, CardStatus, Entitlement, decide
from cas.billing.catalog import access_criteria, get_channel
from cas.billing.vocab import WINDOW_STATES
from cas.reasons import Reason
from cas.store.errors import RecordNotFound
from cas.store.models import Account, Card, Subscription
from cas.store.repo import to_s
from cas.wiretime import WIRE_TIME_MAX_S

_BATCH = 20_000


class CardState(NamedTuple):
    """One card's rights at T plus what addressing and pairing EMMs need.

    A named tuple rather than a frozen dataclass on purpose: a million of these are built per
    full EMM refresh, and a tuple is built several times faster (attribute access is the same).
    """

    serial: int
    shared_address: int
    member_position: int
    rights: CardRights
    paired_chip_id: int | None
    account_id: int | None
    rights_version: int


def _statement(serials: Collection[int] | None,
               shared_range: tuple[int, int] | None = None) -> Select[*tuple[Any, ...]]:
    sub_join = and_(Subscription.account_id == Card.account_id,
                    Subscription.status.in_(WINDOW_STATES),
                    Subscription.paid_until_s.is_not(None))
    stmt: Select[*tuple[Any, ...]] = (
        select(Card.serial, Card.shared_address, Card.member_position, Card.status, Card.region,
               Card.maturity_limit, Card.paired_chip_id, Card.rights_version, Card.account_id,
               Account.suspended_from_s, Account.suspended_until_s, Account.blocked_since_s,
               Subscription.package_id, Subscription.start_s, Subscription.paid_until_s)
        .select_from(Card)
        .outerjoin(Account, Account.id == Card.account_id)
        .outerjoin(Subscription, sub_join)
        .order_by(Card.shared_address, Card.member_position)
    )
    if serials is not None:
        stmt = stmt.where(Card.serial.in_(list(serials)))
    if shared_range is not None:
        stmt = stmt.where(Card.shared_address.between(*shared_range))
    return stmt


def _rows(session: Session, stmt: Select[*tuple[Any, ...]], batch: int) -> Iterator[Sequence[Any]]:
    """Plain DBAPI tuples, streamed: a server-side (named) cursor on PostgreSQL, ``fetchmany``
    batches on SQLite.  Runs inside the session's transaction, on its connection."""
    conn = session.connection()
    dialect = conn.dialect
    if dialect.name not in ("sqlite", "postgresql"):  # pragma: no cover - other databases
        yield from session.execute(stmt.execution_options(yield_per=batch))
        return
    # Every bound value here is a constant of ours (states, ints), so inlining is safe.
    sql = str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    raw: Any = conn.connection.dbapi_connection
    if dialect.name == "postgresql":
        cur = raw.cursor(name=f"cas_card_states_{next(_CURSOR_IDS)}")
        cur.itersize = batch
    else:
        cur = raw.cursor()
    try:
        cur.execute(sql)
        while True:
            rows = cur.fetchmany(batch)
            if not rows:
                break
            yield from rows
    finally:
        cur.close()


_CURSOR_IDS = itertools.count(1)
_ACTIVE = CardStatus.ACTIVE
_INACTIVE = CardStatus.INACTIVE
_KILLED = CardStatus.KILLED
_SUSPENDED = CardStatus.SUSPENDED
_BLOCKED = CardStatus.FINANCIAL_BLOCK


def _by_package(e: Entitlement) -> tuple[int, int, int]:
    # The whole window breaks ties: two windows of one package come out in one order
    # whatever order the database returned them in (the SQL of cas.headend.emmfast too).
    return (e.package_id, e.start_s, e.end_s)


def _states(session: Session, at_s: int, serials: Collection[int] | None,
            batch: int, shared_range: tuple[int, int] | None = None) -> Iterator[CardState]:
    # Rows of one card are adjacent (ordered by slot); fold them into one CardState.  The
    # loop is deliberately flat: it runs once per row of a million-card base.
    head: Sequence[Any] | None = None
    ents: list[Entitlement] = []
    cache: dict[tuple[int, int, int], Entitlement] = {}
    for row in _rows(session, _statement(serials, shared_range), batch):
        if head is None or row[0] != head[0]:
            if head is not None:
                yield _emit(head, ents, at_s)
            head = row
            ents = []
        package_id = row[12]
        if package_id is not None:
            start_s, end_s = row[13], row[14]
            if end_s is not None and end_s > WIRE_TIME_MAX_S:
                # Paid beyond 2106: the entitlement's u32 end_s says "to the end of wire
                # time", the most the card can hold (cas/wiretime.py).
                end_s = WIRE_TIME_MAX_S
            if start_s is not None and end_s is not None and end_s > start_s:
                key = (package_id, start_s, end_s)
                ent = cache.get(key)
                if ent is None:
                    ent = Entitlement(package_id=package_id, start_s=start_s, end_s=end_s)
                    if len(cache) < 200_000:
                        cache[key] = ent
                ents.append(ent)
    if head is not None:
        yield _emit(head, ents, at_s)


def _emit(head: Sequence[Any], ents: list[Entitlement], at_s: int) -> CardState:
    (serial, sa, pos, card_status, region, maturity, chip, version, account_id, s_from, s_until,
     blocked) = head[:12]
    if card_status in ("killed", "blocked"):  # blocked: card-sharing (docs/sharing.md)
        status = _KILLED
    elif account_id is None:
        status = _INACTIVE
    elif s_from is not None and s_from <= at_s and (s_until is None or at_s < s_until):
        status = _SUSPENDED
    elif blocked is not None and blocked <= at_s:
        status = _BLOCKED
    else:
        status = _ACTIVE
    if len(ents) > 1:
        ents.sort(key=_by_package)
    return CardState(serial, sa, pos,
                     CardRights(status=status, region=region, maturity_limit=maturity,
                                entitlements=tuple(ents)),
                     chip, account_id, version)


def iter_card_states(session: Session, at: datetime, *, serials: Collection[int] | None = None,
                     shared_range: tuple[int, int] | None = None,
                     batch: int = _BATCH) -> Iterator[CardState]:
    """Every card's state at ``at`` (or only ``serials``; or only the cards whose shared address
    is in the inclusive ``shared_range``), ordered by shared address and member position.
    Streams: memory stays flat for any base size."""
    at_s = to_s(at)
    if serials is None:
        yield from _states(session, at_s, None, batch, shared_range)
        return
    wanted = sorted(set(serials))
    for i in range(0, len(wanted), 1000):
        yield from _states(session, at_s, wanted[i:i + 1000], batch)


def card_state_at(session: Session, serial: int, at: datetime) -> CardState:
    for state in iter_card_states(session, at, serials=[serial]):
        return state
    raise RecordNotFound(f"unknown card {serial:010d}", code="UNKNOWN_CARD").with_id(
            "unknown_card", card=f"{serial:010d}")


def card_rights_at(session: Session, serial: int, at: datetime) -> CardRights:
    """What card ``serial`` should hold at ``at`` (docs/architecture.md)."""
    return card_state_at(session, serial, at).rights


@dataclass(frozen=True, slots=True, kw_only=True)
class Explanation:
    """The head-end's answer to "why is this channel locked on this card"."""

    serial: int
    channel_number: int
    channel_id: int
    reason: Reason
    rights: CardRights


def explain(session: Session, *, serial: int, channel: str | int, at: datetime,
            chip_id: int | None = None, pin_ok: bool = False) -> Explanation:
    """``cas why``: :func:`cas.access.decide` on the head-end's own records, plus the checks
    only the head-end can make (the card is in a box it is not paired with)."""
    state = card_state_at(session, serial, at)
    ch = get_channel(session, channel)
    criteria = access_criteria(session, ch)
    # pay-per-view (docs/ppv.md): the event on air then, and the card's event rights
    from dataclasses import replace as _replace

    from cas.billing.ppv import event_on_air_at, with_ppv

    criteria = _replace(criteria, ppv_event=event_on_air_at(session, ch.service_id, to_s(at)))
    rights = with_ppv(session, serial, state.rights)
    reason = decide(rights, criteria, to_s(at), pin_ok=pin_ok)
    if reason == Reason.OPEN and chip_id is not None and state.paired_chip_id != chip_id:
        reason = Reason.PAIRING_MISMATCH
    return Explanation(serial=serial, channel_number=ch.number, channel_id=ch.service_id,
                       reason=reason, rights=rights)


def status_counts(session: Session, at: datetime) -> dict[str, int]:
    """How many cards are in each status at ``at`` (for reports and benchmarks)."""
    counts: dict[str, int] = {}
    for state in iter_card_states(session, at):
        name = state.rights.status.name
        counts[name] = counts.get(name, 0) + 1
    return counts


def account_of(session: Session, serial: int) -> Account | None:
    card = session.get(Card, serial)
    if card is None:
        raise RecordNotFound(f"unknown card {serial:010d}", code="UNKNOWN_CARD").with_id(
            "unknown_card", card=f"{serial:010d}")
    return session.get(Account, card.account_id) if card.account_id is not None else None
