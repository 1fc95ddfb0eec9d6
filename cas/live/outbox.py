"""The durable side of the EMM carousel: rights changes -> sealed EMMs in ``emm_outbox``.

An EMM is generated once, with its sequence number, and stored before it is aired (the
"Restart semantics" of ``docs/live-ops.md``).  Every function here is one transaction:

* :func:`generate_for_cards` reads the cards' entitlement state at T
  (:func:`cas.billing.state.iter_card_states`), seals one unique EMM set per card (its
  complete rights, so every EMM is idempotent; a card with many entitlements gets several
  sections with consecutive sequence numbers, stored together as one row), inserts the
  outbox rows, deletes the card's older rows, and advances ``emm_sequences.next_seq`` and
  ``sent_rights_version`` — all or nothing.  A crash before the commit leaves no trace (the
  sequence numbers were not taken, the change is found again); after it, the row is there
  to be aired.
* :func:`queue_global_emm` does the same for a global EMM (on-screen message, ECM-key
  rollover), from the head-end or from another process (``cas headend osd``).
* :func:`mark_aired` moves rows whose repeats are done from ``queued`` to ``sent``.

Rows (``emm_outbox``): ``kind`` is ``unique`` (a card's complete rights), ``global``, or a
command kind (``ppv``, ``command``: a one-shot EMM to one card, queued by
:func:`queue_card_emm` or :func:`cas.billing.ppv.queue_card_emm`); ``status`` is ``queued``
(repeats to air; re-aired in full after a restart) or ``sent`` (kept as the card's latest EMM,
or a command EMM until it expires, for the background cycle); ``payload`` is one or more
complete sections back to back.

The live carousel sends unique EMMs only (no shared ones).  A card's rights rows replace one
another (the latest is always its complete current state); its command rows are never
replaced: they share the card's one sequence counter, so the carousel airs a card's still
valid command EMMs together with its rights EMM, in sequence-number order
(:func:`card_commands`).  A card that missed a command EMM's own airings (its box was off or
starting) gets it before the newer rights EMM that would otherwise make the card refuse it as
old (9811); a card that already applied it refuses the repeat, so nothing is applied twice.
A card that applied the rights EMM but lost the command EMM aired just before it takes the
command EMM late from the next cycle: its window below the counter knows the number as not
applied (docs/card.md §4, "Late command EMMs").

What changed is found two ways (:func:`journal_since`, :func:`stale_serials`): the
``rights_changes`` journal by id (cheap, every poll), and a comparison of
``cards.rights_version`` with ``emm_sequences.sent_rights_version`` (at start and now and
then), which also catches journal ids PostgreSQL allocated before a slow commit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from cas.billing.state import CardState, iter_card_states
from cas.crypto import Key, OperatorKeys
from cas.errors import UsageError
from cas.formats.emm import EmmCommand, wire_seq
from cas.formats.sections import iter_sections
from cas.headend.emmgen import (
    NONCE_SIZE,
    CardTarget,
    EmmSettings,
    PairingTarget,
    _csk_of,
    build_batch,
    seal_global,
)
from cas.store.engine import Store
from cas.store.models import Box, Card, EmmOutbox, EmmSequence, RightsChange
from cas.store.repo import to_s

#: Rows per IN (...) list, well under every database's bound-parameter limit.
_IN_CHUNK = 500
_UNIQUE_SEQ = "unique"
_GLOBAL_SEQ = "global"


class EmmKind(StrEnum):
    UNIQUE = "unique"
    GLOBAL = "global"
    #: a unique EMM with pay-per-view commands (docs/ppv.md): one-shot, so a later rights
    #: EMM of the card does not replace it
    PPV = "ppv"
    #: a unique EMM with other one-shot commands (an on-screen message, a fingerprint, a
    #: sharing policy: :func:`queue_card_emm`)
    COMMAND = "command"


#: The kinds of one card's one-shot command EMMs: kept until they expire and aired with the
#: card's rights EMM, in sequence-number order.
COMMAND_KINDS = frozenset({EmmKind.PPV, EmmKind.COMMAND})
#: At most this many of a card's command EMMs (the newest) go with its rights EMM.
MAX_COMMANDS_PER_CARD = 16


class OutboxStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxEmm:
    """One outbox row: ``sections`` are aired together, in order."""

    id: int
    kind: EmmKind
    card_serial: int | None
    created_at_s: int
    not_after_s: int
    sections: tuple[bytes, ...]

    @property
    def size(self) -> int:
        return sum(len(s) for s in self.sections)

    @property
    def seq(self) -> int:
        """The sequence number of the first section (0 for an empty row)."""
        return seq_of(self.sections[0]) if self.sections else 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Generated:
    """What :func:`generate_for_cards` stored (``ids``) and deleted (``removed_ids``)."""

    ids: tuple[int, ...] = ()
    removed_ids: tuple[int, ...] = ()
    cards: int = 0


def not_after_of(section: bytes) -> int:
    """``not_after_s`` from an EMM section's clear header (docs/formats.md §5)."""
    table_id = section[0]
    offset = {0x82: 11, 0x83: 42, 0x84: 7}.get(table_id)
    if offset is None:
        raise UsageError(f"not an EMM section (table_id 0x{table_id:02X})").with_id(
            "live.not_emm_section_table", table_id=f"{table_id:02X}")
    return int.from_bytes(section[offset : offset + 4], "big")


def seq_of(section: bytes) -> int:
    """``seq`` from a unique or global EMM section's clear header (docs/formats.md §5)."""
    table_id = section[0]
    offset = {0x82: 7, 0x84: 3}.get(table_id)
    if offset is None:
        raise UsageError(f"not an EMM section (table_id 0x{table_id:02X})").with_id(
            "live.not_emm_section_table", table_id=f"{table_id:02X}")
    return int.from_bytes(section[offset : offset + 4], "big")


def with_commands(emm: OutboxEmm, commands: Sequence[OutboxEmm]) -> OutboxEmm:
    """``emm`` (a card's rights row) with the card's command EMMs numbered below it aired
    first, in sequence order: a card that missed them gets them before the rights EMM that
    would make it refuse them as old."""
    before = [c for c in commands if c.seq < emm.seq and c.id != emm.id]
    if not before:
        return emm
    return replace(emm, sections=tuple(s for c in before for s in c.sections) + emm.sections)


def card_group(rights: OutboxEmm | None, commands: Sequence[OutboxEmm]) -> OutboxEmm | None:
    """A card's rights row and command rows as one EMM for the background cycle: every
    section in sequence-number order (a card applies them all, oldest first)."""
    rows = sorted([*([rights] if rights is not None else []), *commands], key=lambda e: e.seq)
    if not rows:
        return None
    head = rights if rights is not None else rows[-1]
    return replace(head, sections=tuple(s for e in rows for s in e.sections))


def _row(row_id: int, kind: str, serial: int | None, created_at_s: int,
         payload: bytes | None) -> OutboxEmm:
    sections = tuple(iter_sections(payload or b""))
    return OutboxEmm(id=int(row_id), kind=EmmKind(kind), card_serial=serial,
                     created_at_s=int(created_at_s),
                     not_after_s=min((not_after_of(s) for s in sections), default=0),
                     sections=sections)


def _chunks(items: Sequence[int]) -> Iterable[Sequence[int]]:
    for i in range(0, len(items), _IN_CHUNK):
        yield items[i : i + _IN_CHUNK]


def _upsert_sequences(session: Session, rows: Sequence[Mapping[str, object]],
                      with_version: bool) -> None:
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    stmt = (pg_insert if dialect == "postgresql" else sqlite_insert)(EmmSequence)
    set_: dict[str, object] = {"next_seq": stmt.excluded.next_seq}
    if with_version:
        set_["sent_rights_version"] = stmt.excluded.sent_rights_version
    session.execute(stmt.on_conflict_do_update(
        index_elements=[EmmSequence.address_kind, EmmSequence.address], set_=set_), rows)


# --- what changed ------------------------------------------------------------------------------

def journal_since(session: Session, after_id: int, gaps: Collection[int] = (),
                  limit: int = 10_000) -> tuple[dict[int, str], list[int]]:
    """Cards named by journal rows with ``id > after_id`` (or in ``gaps``): serial -> cause of
    its latest row, and the ids read (ascending)."""
    cond = RightsChange.id > after_id
    if gaps:
        cond = cond | RightsChange.id.in_(list(gaps))
    rows = session.execute(
        select(RightsChange.id, RightsChange.card_serial, RightsChange.cause)
        .where(cond).order_by(RightsChange.id).limit(limit)).all()
    causes = {int(serial): str(cause) for _, serial, cause in rows}
    return causes, [int(r[0]) for r in rows]


def max_journal_id(session: Session) -> int:
    return int(session.execute(select(func.coalesce(func.max(RightsChange.id), 0))).scalar_one())


def stale_serials(session: Session, limit: int | None = None) -> list[int]:
    """Cards whose rights changed since their last EMM (``rights_version`` >
    ``sent_rights_version``), in serial order."""
    sent = (select(EmmSequence.address, EmmSequence.sent_rights_version)
            .where(EmmSequence.address_kind == _UNIQUE_SEQ).subquery())
    stmt = (select(Card.serial).outerjoin(sent, sent.c.address == Card.serial)
            .where(Card.rights_version > func.coalesce(sent.c.sent_rights_version, 0))
            .order_by(Card.serial))
    if limit is not None:
        stmt = stmt.limit(limit)
    return [int(s) for s in session.execute(stmt).scalars()]


# --- generation ----------------------------------------------------------------------------------

def _pairings(session: Session, keys: OperatorKeys, chip_ids: Iterable[int]) -> dict[int, Key]:
    wanted = sorted(set(chip_ids))
    csks: dict[int, Key] = {}
    for part in _chunks(wanted):
        for chip_id, wrapped in session.execute(
                select(Box.chip_id, Box.wrapped_csk).where(Box.chip_id.in_(list(part)))):
            csk = _csk_of(keys, wrapped) if wrapped else None
            if csk is not None:
                csks[int(chip_id)] = csk
    return csks


def _sequences(session: Session, serials: Sequence[int]) -> dict[int, tuple[int, int]]:
    """serial -> (next_seq, sent_rights_version) for every card of ``serials`` (the next
    number is at least the floor of the last full refresh, :mod:`cas.store.emmseq`)."""
    from cas.store.emmseq import floor

    f = floor(session, _UNIQUE_SEQ)
    out: dict[int, tuple[int, int]] = dict.fromkeys(serials, (f, 0))
    locking = session.get_bind().dialect.name == "postgresql"
    for part in _chunks(serials):
        if locking:
            # Read and lock the cards' counters until the commit (a row made for a card
            # that has none): a booking or a message queued meanwhile (take_seq) waits for
            # the numbers this transaction writes instead of taking one of them too.  SQLite
            # needs no lock: its write transactions run one at a time (BEGIN IMMEDIATE).
            stmt = pg_insert(EmmSequence).values(
                [{"address_kind": _UNIQUE_SEQ, "address": a, "next_seq": f,
                  "sent_rights_version": 0} for a in part])
            rows = session.execute(stmt.on_conflict_do_update(
                index_elements=[EmmSequence.address_kind, EmmSequence.address],
                set_={"next_seq": EmmSequence.next_seq})
                .returning(EmmSequence.address, EmmSequence.next_seq,
                           EmmSequence.sent_rights_version)).all()
        else:
            rows = session.execute(
                select(EmmSequence.address, EmmSequence.next_seq,
                       EmmSequence.sent_rights_version)
                .where(EmmSequence.address_kind == _UNIQUE_SEQ,
                       EmmSequence.address.in_(list(part)))).all()
        for address, nxt, sent in rows:
            out[int(address)] = (max(int(nxt), f), int(sent))
    return out


def generate_for_cards(store: Store, keys: OperatorKeys, serials: Collection[int], *,
                       at: datetime, causes: Mapping[int, str] | None = None,
                       cause: str = "rights", queued: bool = True, only_changed: bool = True,
                       settings: EmmSettings = EmmSettings(shared_min_members=0),
                       created_at_s: int | None = None) -> Generated:
    """Seal and store each card's current rights as of ``at`` (one transaction).

    ``only_changed``: skip cards already sent at their current ``rights_version`` (the change
    path); otherwise skip cards with a change not yet sent (the background cycle refreshes
    only cards the change path is not about to serve).  ``queued`` False stores the rows as
    ``sent`` (background cycle only, no repeats).
    """
    if not serials:
        return Generated()
    at_s = to_s(at)
    now_s = created_at_s if created_at_s is not None else int(time.time())
    wanted = sorted(set(serials))
    with store.transaction() as s:
        seqs = _sequences(s, wanted)
        states: list[CardState] = []
        for part in _chunks(wanted):
            for st in iter_card_states(s, at, serials=part):
                sent = seqs.get(st.serial, (1, 0))[1]
                if (st.rights_version > sent) == only_changed:
                    states.append(st)
        if not states:
            return Generated()
        states.sort(key=lambda st: st.serial)
        csks = _pairings(s, keys, (st.paired_chip_id for st in states
                                   if st.paired_chip_id is not None))
        targets = [CardTarget(serial=st.serial, shared_address=st.shared_address,
                              member_position=st.member_position, rights=st.rights,
                              pairing=(PairingTarget(chip_id=st.paired_chip_id,
                                                     csk=csks[st.paired_chip_id])
                                       if st.paired_chip_id in csks else None))
                   for st in states]
        first = {st.serial: seqs.get(st.serial, (1, 0))[0] for st in states}
        res = build_batch(keys, targets, at_s=at_s, unique_seq=lambda x: first[x],
                          shared_seq=lambda _g: 1, settings=settings)
        # build_batch emits each card's sections in input order, consecutive sequence numbers.
        rows: list[dict[str, object]] = []
        pos = 0
        for st in states:
            n = res.unique_next[st.serial] - first[st.serial]
            payload = b"".join(res.sections[pos : pos + n])
            pos += n
            rows.append({"card_serial": st.serial, "shared_address": None,
                         "kind": EmmKind.UNIQUE.value, "created_at_s": now_s,
                         "payload": payload,
                         "status": (OutboxStatus.QUEUED if queued else OutboxStatus.SENT).value,
                         "cause": ((causes or {}).get(st.serial, cause))[:32],
                         "sent_at_s": None if queued else now_s})
        # Insert first, then delete the cards' older rows: SQLite hands out max(id) + 1, so
        # deleting the newest row first would give its id to the new one.
        ids = [int(i) for i in s.execute(
            insert(EmmOutbox).returning(EmmOutbox.id, sort_by_parameter_order=True),
            rows).scalars()]
        removed: list[int] = []
        for part in _chunks([st.serial for st in states]):
            removed += [int(i) for i in s.execute(
                delete(EmmOutbox).where(EmmOutbox.card_serial.in_(list(part)),
                                        EmmOutbox.kind == EmmKind.UNIQUE.value,
                                        EmmOutbox.id < min(ids))
                .returning(EmmOutbox.id)).scalars()]
        _upsert_sequences(s, [{"address_kind": _UNIQUE_SEQ, "address": st.serial,
                               "next_seq": res.unique_next[st.serial],
                               "sent_rights_version": st.rights_version} for st in states],
                          with_version=True)
    return Generated(ids=tuple(ids), removed_ids=tuple(removed), cards=len(states))


def _take_seq(s: Session, kind: str, address: int) -> int:
    """The next sequence number of (``kind``, ``address``), taken atomically (two
    `cas headend osd` at once get two numbers; above a full refresh's floor)."""
    from cas.store.emmseq import take_seq

    return take_seq(s, kind, address)


def take_sequence(store: Store, kind: str, address: int) -> int:
    """Take the next EMM sequence number of a card (``unique``, serial), a group
    (``shared``, shared address) or all cards (``global``, 0) for an EMM sent outside the
    carousel (``cas osd send --out``), so the carousel's next EMM of that address follows it."""
    if kind not in (_UNIQUE_SEQ, "shared", _GLOBAL_SEQ):
        raise UsageError(f"unknown EMM address kind {kind!r}").with_id(
            "live.unknown_emm_address_kind", kind=f"{kind!r}")
    with store.transaction() as s:
        return _take_seq(s, kind, address)


def queue_card_emm(session: Session, keys: OperatorKeys, serial: int,
                   commands: Sequence[EmmCommand], *, at: datetime, cause: str,
                   validity_s: int | None = None) -> bytes:
    """Seal one unique EMM carrying ``commands`` (an on-screen message, a fingerprint, a
    sharing policy…) for ``serial`` with the card's next sequence number and queue it in the
    outbox as a ``command`` row, in the caller's transaction; returns the section.  The
    carousel airs it ``repeat_count`` times, then with the card's rights in the background
    cycle until it expires (module doc)."""
    from cas.headend.osd import OsdTarget, osd_emm

    validity = validity_s if validity_s is not None else EmmSettings().validity_s
    if not commands:  # refused before a sequence number is taken
        osd_emm(keys, OsdTarget(serial=serial), commands, seq=0, at=at, validity_s=validity)
    seq = _take_seq(session, _UNIQUE_SEQ, serial)
    section = osd_emm(keys, OsdTarget(serial=serial), commands, seq=wire_seq(seq), at=at,
                      validity_s=validity)
    session.execute(insert(EmmOutbox), [{
        "card_serial": serial, "shared_address": None, "kind": EmmKind.COMMAND.value,
        "created_at_s": int(time.time()), "payload": section,
        "status": OutboxStatus.QUEUED.value, "cause": cause[:32], "sent_at_s": None}])
    return section


def queue_global_emm(store: Store, keys: OperatorKeys, commands: Sequence[bytes], *,
                     at: datetime, cause: str = "global",
                     validity_s: int | None = None) -> int:
    """Seal one global EMM carrying ``commands`` with the next global sequence number and
    queue it in the outbox (one transaction).  Returns the outbox id."""
    if not commands:
        raise UsageError("a global EMM needs at least one command").with_id(
            "live.global_emm_needs_least")
    validity = validity_s if validity_s is not None else EmmSettings().validity_s
    with store.transaction() as s:
        seq = _take_seq(s, _GLOBAL_SEQ, 0)
        section = seal_global(keys.global_key(), seq, to_s(at) + validity,
                              os.urandom(NONCE_SIZE), b"".join(commands))
        now_s = int(time.time())
        new_id = int(s.execute(insert(EmmOutbox).returning(EmmOutbox.id), [{
            "card_serial": None, "shared_address": None, "kind": EmmKind.GLOBAL.value,
            "created_at_s": now_s, "payload": section, "status": OutboxStatus.QUEUED.value,
            "cause": cause[:32], "sent_at_s": None}]).scalar_one())
    return new_id


# --- airing bookkeeping ------------------------------------------------------------------------

def queued_ids(session: Session) -> list[int]:
    return [int(i) for i in session.execute(
        select(EmmOutbox.id).where(EmmOutbox.status == OutboxStatus.QUEUED.value)
        .order_by(EmmOutbox.id)).scalars()]


def load_rows(session: Session, ids: Sequence[int]) -> list[OutboxEmm]:
    out: list[OutboxEmm] = []
    for part in _chunks(sorted(ids)):
        for row_id, kind, serial, created, payload in session.execute(
                select(EmmOutbox.id, EmmOutbox.kind, EmmOutbox.card_serial,
                       EmmOutbox.created_at_s, EmmOutbox.payload)
                .where(EmmOutbox.id.in_(list(part))).order_by(EmmOutbox.id)):
            out.append(_row(row_id, kind, serial, created, payload))
    return out


def mark_aired(store: Store, ids: Sequence[int], *, at_s: int | None = None) -> None:
    """Rows whose repeats are all aired: ``queued`` -> ``sent``."""
    if not ids:
        return
    sent_at = at_s if at_s is not None else int(time.time())
    with store.transaction() as s:
        for part in _chunks(sorted(ids)):
            s.execute(update(EmmOutbox)
                      .where(EmmOutbox.id.in_(list(part)),
                             EmmOutbox.status == OutboxStatus.QUEUED.value)
                      .values(status=OutboxStatus.SENT.value, sent_at_s=sent_at))


# --- the background cycle ------------------------------------------------------------------------

def cycle_cards(session: Session, after_serial: int, limit: int) -> list[int]:
    return [int(x) for x in session.execute(
        select(Card.serial).where(Card.serial > after_serial).order_by(Card.serial)
        .limit(limit)).scalars()]


def latest_unique(session: Session, serials: Sequence[int]) -> dict[int, OutboxEmm]:
    """Each card's newest outbox row (its complete current state when it was generated)."""
    out: dict[int, OutboxEmm] = {}
    for part in _chunks(serials):
        for row_id, kind, serial, created, payload in session.execute(
                select(EmmOutbox.id, EmmOutbox.kind, EmmOutbox.card_serial,
                       EmmOutbox.created_at_s, EmmOutbox.payload)
                .where(EmmOutbox.card_serial.in_(list(part)),
                       EmmOutbox.kind == EmmKind.UNIQUE.value)
                .order_by(EmmOutbox.id)):
            if serial is not None:
                out[int(serial)] = _row(row_id, kind, serial, created, payload)
    return out


def card_commands(session: Session, serials: Sequence[int],
                  at_s: int) -> dict[int, list[OutboxEmm]]:
    """Each card's command EMMs still valid at ``at_s`` (queued or aired), in sequence order,
    the newest :data:`MAX_COMMANDS_PER_CARD` at most."""
    out: dict[int, list[OutboxEmm]] = {}
    kinds = sorted(k.value for k in COMMAND_KINDS)
    for part in _chunks(sorted(set(serials))):
        for row_id, kind, serial, created, payload in session.execute(
                select(EmmOutbox.id, EmmOutbox.kind, EmmOutbox.card_serial,
                       EmmOutbox.created_at_s, EmmOutbox.payload)
                .where(EmmOutbox.card_serial.in_(list(part)), EmmOutbox.kind.in_(kinds))
                .order_by(EmmOutbox.id)):
            emm = _row(row_id, kind, serial, created, payload)
            if serial is not None and emm.sections and emm.not_after_s >= at_s:
                out.setdefault(int(serial), []).append(emm)
    return {serial: sorted(rows, key=lambda e: e.seq)[-MAX_COMMANDS_PER_CARD:]
            for serial, rows in out.items()}


def prune_commands(store: Store, at_s: int) -> int:
    """Delete aired command EMMs that expired before ``at_s``."""
    kinds = sorted(k.value for k in COMMAND_KINDS)
    with store.reader() as s:
        rows = s.execute(select(EmmOutbox.id, EmmOutbox.kind, EmmOutbox.card_serial,
                                EmmOutbox.created_at_s, EmmOutbox.payload)
                         .where(EmmOutbox.kind.in_(kinds),
                                EmmOutbox.status == OutboxStatus.SENT.value)).all()
        expired = [e.id for e in (_row(*r) for r in rows) if e.not_after_s < at_s]
    for part in _chunks(expired):
        with store.transaction() as s:
            s.execute(delete(EmmOutbox).where(EmmOutbox.id.in_(list(part)),
                                              EmmOutbox.status == OutboxStatus.SENT.value))
    return len(expired)


def live_globals(session: Session, at_s: int) -> list[OutboxEmm]:
    """Global EMMs already aired and still valid at ``at_s`` (the cycle re-airs them, so a
    box that was off still gets the ECM key of a rollover), oldest first."""
    return [e for e in aired_globals(session) if e.not_after_s >= at_s]


def prune_globals(store: Store, at_s: int) -> int:
    """Delete aired global EMMs that expired before ``at_s``."""
    with store.reader() as s:
        expired = [e.id for e in aired_globals(s) if e.not_after_s < at_s]
    if expired:
        with store.transaction() as s:
            s.execute(delete(EmmOutbox).where(EmmOutbox.id.in_(expired),
                                              EmmOutbox.status == OutboxStatus.SENT.value))
    return len(expired)


def aired_globals(session: Session) -> list[OutboxEmm]:
    rows = session.execute(
        select(EmmOutbox.id, EmmOutbox.kind, EmmOutbox.card_serial, EmmOutbox.created_at_s,
               EmmOutbox.payload)
        .where(EmmOutbox.kind == EmmKind.GLOBAL.value,
               EmmOutbox.status == OutboxStatus.SENT.value)
        .order_by(EmmOutbox.id)).all()
    return [_row(*r) for r in rows]
