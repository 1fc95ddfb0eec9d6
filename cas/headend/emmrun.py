"""EMM runs over the store: full refresh and incremental feed, resumable.

DESIGN §3–§4, ``docs/headend.md`` ("Resumable runs").  The I/O edge of EMM generation: card
states come from the store (:func:`cas.billing.state.iter_card_states`), sequence numbers are
read from and committed to ``emm_sequences``, sections go to a partial file that is renamed
into place at the end.  The EMMs themselves come from the pure :mod:`cas.headend.emmgen`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

from cas.crypto import Key, OperatorKeys
from cas.errors import UsageError
from cas.headend.emmgen import (
    NONCE_SIZE,
    CardTarget,
    EmmSettings,
    PairingTarget,
    csk_of,
    generate_parallel,
    seal_global,
    sections_to_ts,
)
from cas.outpath import check_output_file
from cas.wiretime import wire_end_s

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from cas.billing.state import CardState
    from cas.store.engine import Store


# A run keeps its state in the store's ``settings`` table under RUN_KEY (JSON): mode, the time
# T of the entitlement state, the temp output file, how many bytes of it are committed, the
# last group (shared address) done, counters.  Cards are processed in shared-address order in
# chunks that never split a group.  Per chunk:
#
#   1. build the EMMs (sequence numbers read from ``emm_sequences``; nothing reserved yet);
#   2. append them to the temp file, flush + fsync;
#   3. ONE transaction: advance ``emm_sequences.next_seq`` (and ``sent_rights_version``) for
#      every card/group of the chunk AND move the run state to the new byte count / group.
#
# A run killed anywhere restarts from its run state: the temp file is cut back to the
# committed byte count (dropping EMMs whose sequence numbers were never reserved) and the next
# chunk is rebuilt with the same sequence numbers.  So no sequence number is used twice in
# the output and none is skipped.  The finished file is renamed into place (sections), or
# packetised into a TS file that is then renamed, or copied to stdout.

RUN_KEY = "emm.run"
#: Pause after every committed chunk (seconds, from $CAS_EMM_THROTTLE_S): lets a demo or a
#: test interrupt a run at a known pace.  Zero (no pause) unless set.
_THROTTLE_S = float(os.environ.get("CAS_EMM_THROTTLE_S", "0") or 0)
_UNIQUE = "unique"
_SHARED = "shared"
_GLOBAL = "global"


@dataclass(slots=True, kw_only=True)
class RunState:
    """The persisted position of an EMM run (see the block comment above)."""

    mode: str
    at_s: int
    tmp_path: str
    bytes_done: int = 0
    last_group: int = -1
    cards: int = 0
    unique_emms: int = 0
    shared_emms: int = 0
    global_emms: int = 0
    finished: bool = False

    def to_json(self) -> str:
        import json

        return json.dumps({f: getattr(self, f) for f in self.__dataclass_fields__},
                          sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunState:
        import json

        data = json.loads(text)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True, slots=True, kw_only=True)
class RunReport:
    mode: str
    at_s: int
    cards: int
    unique_emms: int
    shared_emms: int
    global_emms: int
    bytes: int
    resumed: bool
    output: str

    def to_json(self) -> dict[str, object]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


def emm_run(store: Store, keys: OperatorKeys, *, mode: str, at: datetime,
            out: str | None, out_format: str = "sections",
            settings: EmmSettings = EmmSettings(), workers: int = 2, chunk: int = 20_000,
            global_commands: Sequence[bytes] = (),
            ca_system_id: int | None = None, emm_pid: int = 0x0C00,
            progress: Callable[[int], None] | None = None,
            total: Callable[[int], None] | None = None,
            stdout: IO[bytes] | None = None) -> RunReport:
    """Full refresh (``mode="full"``), incremental feed (``"incremental"``) or global EMMs only
    (``"global"``), resumable (see the block comment).  ``out`` None means stdout.

    ``store`` is a :class:`cas.store.engine.Store`; ``total(n)`` is told the number of cards
    once known (progress bars); ``progress(n)`` after every chunk.
    """
    import sys

    from sqlalchemy import func, select

    from cas.billing.state import iter_card_states
    from cas.store.engine import Store
    from cas.store.models import Card, EmmSequence, Setting
    from cas.store.repo import get_setting, set_setting

    if not isinstance(store, Store):
        raise UsageError("emm_run needs a cas.store Store").with_id("headend.emm_run_needs_cas")
    if mode not in ("full", "incremental", "global"):
        raise UsageError(f"unknown EMM run mode {mode!r}").with_id(
            "headend.unknown_emm_run_mode", mode=f"{mode!r}")
    if out_format not in ("sections", "ts"):
        raise UsageError("output format is 'sections' or 'ts'").with_id(
            "headend.output_format_sections_ts")
    if mode == "global" and not global_commands:
        raise UsageError("a global run needs at least one global command").with_id(
            "headend.global_run_needs_least")
    # Every EMM of the run expires at at + validity (u32 not_after_s): refuse a run the wire
    # cannot carry before the partial file or a sequence number exists (cas/wiretime.py).
    wire_end_s(at, settings.validity_s, "EMM expiry (--at or the clock, + --validity-s)")
    # The run commits sequence numbers chunk by chunk and renames its partial file to ``out``
    # only at the end: an output that cannot be written must be refused now, not then.
    if out is not None:
        check_output_file(out, "EMM output")
        check_output_file(_tmp_path(out), "EMM output (partial file)")

    # --- start or resume -------------------------------------------------------------------
    with store.transaction() as s:
        raw = get_setting(s, RUN_KEY)
        resumed = raw is not None
        if raw is not None:
            state = RunState.from_json(raw)
            if state.mode != mode:
                raise UsageError(f"an unfinished {state.mode} EMM run is pending: run "
                                 f"'cas emm generate --{state.mode}' to finish it first").with_id(
                    "headend.unfinished_emm_run_pending", mode=state.mode)
        else:
            tmp = _tmp_path(out)
            state = RunState(mode=mode, at_s=int(at.timestamp()), tmp_path=tmp)
            with open(tmp, "wb"):
                pass
            if global_commands:
                seq_row = s.get(EmmSequence, (_GLOBAL, 0))
                seq = seq_row.next_seq if seq_row is not None else 1
                data = b"".join(
                    seal_global(keys.global_key(), seq + i, state.at_s + settings.validity_s,
                                os.urandom(NONCE_SIZE), cmd)
                    for i, cmd in enumerate(global_commands))
                _append(tmp, 0, data)
                _upsert(s, [(_GLOBAL, 0, seq + len(global_commands), None)])
                state.bytes_done = len(data)
                state.global_emms = len(global_commands)
            set_setting(s, RUN_KEY, state.to_json())
    at_s = state.at_s
    at_dt = datetime.fromtimestamp(at_s, tz=at.tzinfo)

    # --- the cards ---------------------------------------------------------------------------
    if not state.finished and mode != "global":
        _truncate(state.tmp_path, state.bytes_done)
        with store.reader() as rs:
            serials: list[int] | None = None
            if mode == "incremental":
                sent = (select(EmmSequence.address, EmmSequence.sent_rights_version)
                        .where(EmmSequence.address_kind == _UNIQUE).subquery())
                serials = [int(x) for x in rs.execute(
                    select(Card.serial).outerjoin(sent, sent.c.address == Card.serial)
                    .where(Card.rights_version > func.coalesce(sent.c.sent_rights_version, 0))
                ).scalars()]
                n_cards = len(serials)
            else:
                n_cards = int(rs.execute(
                    select(func.count()).select_from(Card)
                    .where(Card.shared_address > state.last_group)).scalar_one())
            if total is not None:
                total(n_cards)
            states = iter_card_states(rs, at_dt, serials=serials) if serials != [] else iter([])
            window_size = max(chunk * max(workers, 1) * 2, chunk)
            window: list[Any] = []
            for st in states:
                if mode == "full" and st.shared_address <= state.last_group:
                    continue  # done before the run was interrupted
                if len(window) >= window_size and st.shared_address != window[-1].shared_address:
                    _do_window(store, rs, keys, window, state, settings, workers, chunk,
                               progress)
                    window = []
                window.append(st)
            if window:
                _do_window(store, rs, keys, window, state, settings, workers, chunk, progress)
        with store.transaction() as s:
            state.finished = True
            set_setting(s, RUN_KEY, state.to_json())

    # --- publish -----------------------------------------------------------------------------
    _truncate(state.tmp_path, state.bytes_done)
    if out is None:
        sink = stdout if stdout is not None else sys.stdout.buffer
        with open(state.tmp_path, "rb") as fh:
            data = fh.read()
        if out_format == "ts":
            data = sections_to_ts(_split_sections(data), emm_pid=emm_pid,
                                  ca_system_id=ca_system_id)
        sink.write(data)
        sink.flush()
        os.unlink(state.tmp_path)
        out_name = "-"
    elif out_format == "ts":
        with open(state.tmp_path, "rb") as fh:
            sections = _split_sections(fh.read())
        part = out + ".ts-part"
        with open(part, "wb") as fh:
            fh.write(sections_to_ts(sections, emm_pid=emm_pid, ca_system_id=ca_system_id))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(part, out)
        os.unlink(state.tmp_path)
        out_name = out
    else:
        os.replace(state.tmp_path, out)
        out_name = out
    with store.transaction() as s:
        row = s.get(Setting, RUN_KEY)
        if row is not None:
            s.delete(row)
    return RunReport(mode=mode, at_s=at_s, cards=state.cards, unique_emms=state.unique_emms,
                     shared_emms=state.shared_emms, global_emms=state.global_emms,
                     bytes=state.bytes_done, resumed=resumed, output=out_name)


def _tmp_path(out: str | None) -> str:
    if out is not None:
        return out + ".emm-partial"
    import tempfile

    fd, path = tempfile.mkstemp(prefix="cas-emm-", suffix=".partial")
    os.close(fd)
    return path


def _truncate(path: str, size: int) -> None:
    with open(path, "ab") as fh:
        fh.truncate(size)


def _append(path: str, offset: int, data: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)
        fh.truncate()
        fh.flush()
        os.fsync(fh.fileno())


def _upsert(session: Session, rows: Sequence[tuple[str, int, int, int | None]]) -> None:
    """Set ``next_seq`` (and ``sent_rights_version`` unless None) per (kind, address)."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    from cas.store.models import EmmSequence

    if not rows:
        return
    dialect = session.get_bind().dialect.name
    ins_fn = pg_insert if dialect == "postgresql" else sqlite_insert
    with_version = [{"address_kind": k, "address": a, "next_seq": n, "sent_rights_version": v}
                    for k, a, n, v in rows if v is not None]
    without = [{"address_kind": k, "address": a, "next_seq": n, "sent_rights_version": 0}
               for k, a, n, v in rows if v is None]
    if with_version:
        stmt = ins_fn(EmmSequence)
        stmt = stmt.on_conflict_do_update(
            index_elements=[EmmSequence.address_kind, EmmSequence.address],
            set_={"next_seq": stmt.excluded.next_seq,
                  "sent_rights_version": stmt.excluded.sent_rights_version})
        session.execute(stmt, with_version)
    if without:
        stmt = ins_fn(EmmSequence)
        stmt = stmt.on_conflict_do_update(
            index_elements=[EmmSequence.address_kind, EmmSequence.address],
            set_={"next_seq": stmt.excluded.next_seq})
        session.execute(stmt, without)


def _do_window(store: Store, rs: Session, keys: OperatorKeys, window: list[Any], state: RunState,
               settings: EmmSettings, workers: int, chunk: int,
               progress: Callable[[int], None] | None) -> None:
    """EMMs for one window of card states, chunk by chunk, each chunk committed atomically."""
    from cas.store.emmseq import next_seq_range
    from cas.store.repo import set_setting

    # Next numbers: the card's (group's) row, at least the floor of the last full refresh.
    lo_serial = min(st.serial for st in window)
    hi_serial = max(st.serial for st in window)
    u_floor, u_rows = next_seq_range(rs, _UNIQUE, lo_serial, hi_serial)
    unique_next = {st.serial: u_rows.get(st.serial, u_floor) for st in window}
    groups = sorted({st.shared_address for st in window})
    s_floor, s_rows = next_seq_range(rs, _SHARED, groups[0], groups[-1])
    shared_next = {g: s_rows.get(g, s_floor) for g in groups}
    cards = card_targets(rs, keys, window)
    versions = {st.serial: st.rights_version for st in window}
    for (lo, hi), res in generate_parallel(keys, cards, at_s=state.at_s,
                                           unique_next=unique_next, shared_next=shared_next,
                                           settings=settings, workers=workers, chunk=chunk):
        data = b"".join(res.sections)
        _append(state.tmp_path, state.bytes_done, data)
        rows: list[tuple[str, int, int, int | None]] = [
            (_UNIQUE, serial, nxt, versions[serial]) for serial, nxt in res.unique_next.items()]
        # Members served by a shared EMM are up to date too: record their rights version.
        served = {c.serial for c in cards[lo:hi]} - set(res.unique_next)
        rows += [(_UNIQUE, s, unique_next.get(s, 1), versions[s]) for s in served]
        rows += [(_SHARED, g, nxt, None) for g, nxt in res.shared_next.items()]
        with store.transaction() as s:
            _upsert(s, rows)
            state.bytes_done += len(data)
            state.last_group = cards[hi - 1].shared_address
            state.cards += hi - lo
            state.unique_emms += res.unique_count
            state.shared_emms += res.shared_count
            set_setting(s, RUN_KEY, state.to_json())
        if progress is not None:
            progress(hi - lo)
        if _THROTTLE_S:
            time.sleep(_THROTTLE_S)



def card_targets(session: Session, keys: OperatorKeys,
                 states: Sequence[CardState]) -> list[CardTarget]:
    """The generator's input for these card states: each card's rights and, for a card
    paired with a box the store knows, the pairing with that box's chipset key (opened with
    the vendor or transport key; a box whose key does not open gets no PAIR command)."""
    csks = chip_keys(session, keys, {st.paired_chip_id for st in states
                                     if st.paired_chip_id is not None})
    return [CardTarget(serial=st.serial, shared_address=st.shared_address,
                       member_position=st.member_position, rights=st.rights,
                       pairing=(PairingTarget(chip_id=st.paired_chip_id,
                                              csk=csks[st.paired_chip_id])
                                if st.paired_chip_id in csks else None))
            for st in states]


def chip_keys(session: Session, keys: OperatorKeys, chip_ids: Collection[int]) -> dict[int, Key]:
    """Chip ID -> chipset key of the boxes the store knows among ``chip_ids`` whose wrapped
    key opens (vendor or transport key); the others are left out."""
    from sqlalchemy import select

    from cas.store.models import Box

    chips = sorted(chip_ids)
    csks: dict[int, Key] = {}
    for i in range(0, len(chips), 500):
        for chip_id, wrapped in session.execute(select(Box.chip_id, Box.wrapped_csk)
                                                .where(Box.chip_id.in_(chips[i : i + 500]))):
            csk = csk_of(keys, wrapped) if wrapped else None
            if csk is not None:
                csks[int(chip_id)] = csk
    return csks


def _split_sections(data: bytes) -> list[bytes]:
    from cas.formats.sections import iter_sections

    return list(iter_sections(data))
