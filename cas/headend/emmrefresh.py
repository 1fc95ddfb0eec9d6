"""A full EMM refresh split across processes (or hosts) by card range, coordinated through
PostgreSQL itself.  ``docs/scale.md``.

The pure generator (:func:`cas.headend.emmgen.build_batch`) does the EMMs; this module cuts
the base into work items and lets any number of workers take them.

The plan (all in the store's ``settings`` table, so no schema of its own):

* ``emm.refresh.<run>``: the run — time T of the entitlement state, validity, shared-EMM
  threshold, output directory, number of items, finished or not;
* ``emm.refresh.<run>.<n>``: item ``n`` — an inclusive range of shared addresses (groups are
  never split, so shared EMMs see every member) and its state, ``todo`` or ``done``.  The
  items tile the whole u24 address space, so a card registered during the run is not lost.

A worker, in ONE transaction per item:

1. claims a ``todo`` item with ``SELECT … FOR UPDATE SKIP LOCKED`` (two workers never get
   the same item; the row lock is held until the transaction ends);
2. reads the item's cards and builds their EMMs, numbered from the run's sequence epoch
   (taken with the plan: :mod:`cas.store.emmseq`) — on PostgreSQL plain range reads,
   :mod:`cas.headend.emmfast`; elsewhere the card states and
   :func:`~cas.headend.emmgen.build_batch`;
3. writes them to ``<out-dir>/item-NNNNN.sections`` (a partial file, fsync, atomic rename);
4. books the rights version sent to the cards whose rights changed since their last EMM (no
   sequence number per card) and marks the item ``done``;
5. commits.

A worker killed anywhere before 5 has committed nothing: its connection drops, PostgreSQL
rolls the transaction back and releases the row lock, and another worker (which keeps polling
while ``todo`` items remain) claims the item and rebuilds it with the SAME sequence numbers
(the epoch), replacing any file the dead worker left.  So every card's EMM is in exactly one
item file, and the epoch's numbers are used by nothing else.  When every item is
done, :func:`finish_refresh` joins the item files in item order into the output and marks
the run finished; finishing a finished run changes nothing.

SQLite has one writer at a time and no row locks: the multi-process mode is refused there
(one line); one process (``--workers 1``) runs the same plan in-process.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cas.crypto import OperatorKeys
from cas.errors import UsageError
from cas.headend.emmgen import EmmSettings, build_batch
from cas.headend.emmrun import card_targets
from cas.wiretime import wire_end_s

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from cas.store.engine import Store

PREFIX = "emm.refresh."
_RUN_NAME = re.compile(r"[A-Za-z0-9-]{1,32}\Z")
_U24_MAX = 0xFF_FFFF
#: Pause (seconds, from $CAS_EMM_REFRESH_PAUSE_S) after an item's file is in place and before
#: its transaction commits: lets a test kill a worker at the worst moment.  Zero unless set.
_PAUSE_S = float(os.environ.get("CAS_EMM_REFRESH_PAUSE_S", "0") or 0)
_POLL_S = 0.2


class RefreshRefused(UsageError):
    """The store cannot run this refresh mode (SQLite and several processes)."""


@dataclass(slots=True, kw_only=True)
class RefreshPlan:
    run: str
    at_s: int
    validity_s: int
    shared_min: int
    out_dir: str
    items: int
    #: the sequence epoch: every card's first refresh EMM carries ``unique_base``, every
    #: group's first shared one ``shared_base`` (cas.store.emmseq); 0 in a plan made before
    #: epochs, which is not resumed
    unique_base: int = 0
    shared_base: int = 0
    finished: bool = False
    output: str = ""

    def to_json(self) -> str:
        return json.dumps({f: getattr(self, f) for f in self.__dataclass_fields__},
                          sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RefreshPlan:
        data = json.loads(text)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    @property
    def settings(self) -> EmmSettings:
        return EmmSettings(validity_s=self.validity_s, shared_min_members=self.shared_min)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerReport:
    items: int
    cards: int
    unique_emms: int
    shared_emms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshReport:
    run: str
    items: int
    cards: int
    unique_emms: int
    shared_emms: int
    bytes: int
    output: str
    already_finished: bool

    def to_json(self) -> dict[str, object]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


def check_run_name(run: str) -> str:
    if not _RUN_NAME.match(run):
        raise UsageError("a refresh run name is 1-32 letters, digits or '-'").with_id(
            "headend.refresh_run_name_letters")
    return run


def require_multi_process(store: Store) -> None:
    """One line for SQLite: several processes need PostgreSQL's row locks."""
    if store.dialect != "postgresql":
        raise RefreshRefused("a refresh over several processes needs PostgreSQL (SKIP LOCKED "
                             "work items); on SQLite run 'cas emm refresh --workers 1'").with_id(
            "headend.refresh_over_several_processes")


def _plan_key(run: str) -> str:
    return PREFIX + run


def _item_key(run: str, n: int) -> str:
    return f"{PREFIX}{run}.{n:05d}"


def _item_file(out_dir: str, n: int) -> Path:
    return Path(out_dir) / f"item-{n:05d}.sections"


def cut_items(group_counts: list[tuple[int, int]], chunk: int) -> list[tuple[int, int]]:
    """Inclusive shared-address ranges of about ``chunk`` cards each, tiling 0..2^24-1.

    ``group_counts``: (shared address, cards) in address order.
    """
    bounds: list[tuple[int, int]] = []
    lo = 0
    size = 0
    for address, count in group_counts:
        size += count
        if size >= chunk:
            bounds.append((lo, address))
            lo = address + 1
            size = 0
    if lo <= _U24_MAX:
        if size or not bounds:
            bounds.append((lo, _U24_MAX))
        else:
            last_lo, _ = bounds.pop()
            bounds.append((last_lo, _U24_MAX))
    return bounds


def start_refresh(store: Store, *, run: str, at: datetime, out_dir: str,
                  settings: EmmSettings = EmmSettings(), chunk: int = 20_000) -> RefreshPlan:
    """Make the plan of ``run`` (or return the existing one: joining is idempotent)."""
    from sqlalchemy import func, select, text

    from cas.headend.emmfast import SHARED_STRIDE, UNIQUE_STRIDE
    from cas.store.emmseq import SHARED, UNIQUE, reserve_epoch
    from cas.store.models import Card
    from cas.store.repo import get_setting, set_setting

    check_run_name(run)
    wire_end_s(at, settings.validity_s, "EMM expiry (--at or the clock, + --validity-s)")
    with store.transaction() as s:
        if store.dialect == "postgresql":
            # Two coordinators starting the same run at once: one makes the plan.
            s.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                      {"k": _plan_key(run)})
        raw = get_setting(s, _plan_key(run))
        if raw is not None:
            return RefreshPlan.from_json(raw)
        try:
            os.makedirs(out_dir, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot make the refresh directory {out_dir}: "
                             f"{exc.strerror or exc}").with_id(
                "headend.cannot_make_refresh_directory", out_dir=out_dir,
                value=exc.strerror or exc) from exc
        counts = [(int(a), int(c)) for a, c in s.execute(
            select(Card.shared_address, func.count()).group_by(Card.shared_address)
            .order_by(Card.shared_address))]
        items = cut_items(counts, max(chunk, 1))
        # The epoch: numbers above every one handed out so far, reserved for this run (the
        # floor rises above them, so no other EMM can take them).
        unique_base = reserve_epoch(s, UNIQUE, UNIQUE_STRIDE)
        shared_base = reserve_epoch(s, SHARED, SHARED_STRIDE)
        plan = RefreshPlan(run=run, at_s=int(at.timestamp()), validity_s=settings.validity_s,
                           shared_min=settings.shared_min_members,
                           out_dir=os.path.abspath(out_dir), items=len(items),
                           unique_base=unique_base, shared_base=shared_base)
        set_setting(s, _plan_key(run), plan.to_json())
        for n, (lo, hi) in enumerate(items):
            set_setting(s, _item_key(run, n), json.dumps({"lo": lo, "hi": hi, "state": "todo"},
                                                         sort_keys=True))
    return plan


def load_plan(store: Store, run: str) -> RefreshPlan:
    from cas.store.repo import get_setting

    check_run_name(run)
    with store.reader() as s:
        raw = get_setting(s, _plan_key(run))
    if raw is None:
        raise UsageError(f"no EMM refresh run {run!r}: start it with 'cas emm refresh'").with_id(
            "headend.no_emm_refresh_run", run=f"{run!r}")
    return RefreshPlan.from_json(raw)


def _claim(s: Session, run: str, skip_locked: bool) -> tuple[str, dict[str, Any]] | None:
    from sqlalchemy import text

    sql = ("SELECT key, value FROM settings WHERE key LIKE :p AND value LIKE :todo "
           "ORDER BY key LIMIT 1")
    if skip_locked:
        sql += " FOR UPDATE SKIP LOCKED"
    row = s.execute(text(sql), {"p": _plan_key(run) + ".%",
                                "todo": '%"state": "todo"%'}).first()
    if row is None:
        return None
    return str(row[0]), json.loads(row[1])


def _todo_left(store: Store, run: str) -> int:
    from sqlalchemy import text

    with store.reader() as s:
        return int(s.execute(text("SELECT count(*) FROM settings WHERE key LIKE :p "
                                  "AND value LIKE :todo"),
                             {"p": _plan_key(run) + ".%",
                              "todo": '%"state": "todo"%'}).scalar_one())


def refresh_worker(store: Store, keys: OperatorKeys, run: str, *,
                   progress: Callable[[int], None] | None = None,
                   wait: bool = True) -> WorkerReport:
    """Take items of ``run`` until none is left.  ``wait``: while items are still held by
    other workers, keep polling (a killed worker's item comes free and is finished here)."""
    plan = load_plan(store, run)
    if plan.finished:
        return WorkerReport(items=0, cards=0, unique_emms=0, shared_emms=0)
    if plan.unique_base < 1 or plan.shared_base < 1:
        raise UsageError(f"EMM refresh {run!r} was planned without a sequence epoch (an "
                         "older version): start it again under a new --run name").with_id(
            "headend.refresh_without_epoch", run=f"{run!r}")
    skip_locked = store.dialect == "postgresql"
    items = cards = unique = shared = 0
    while True:
        with store.transaction() as s:
            claimed = _claim(s, run, skip_locked)
            if claimed is not None:
                key, item = claimed
                n = int(key.rsplit(".", 1)[1])
                done = _do_item(s, keys, plan, n, item)
                item.update(done, state="done")
                s.execute(_update_setting(), {"k": key, "v": json.dumps(item, sort_keys=True)})
        if claimed is None:
            if not wait or _todo_left(store, run) == 0:
                break
            time.sleep(_POLL_S)
            continue
        items += 1
        cards += done["cards"]
        unique += done["unique_emms"]
        shared += done["shared_emms"]
        if progress is not None:
            progress(done["cards"])
    return WorkerReport(items=items, cards=cards, unique_emms=unique, shared_emms=shared)


def _update_setting() -> Any:
    from sqlalchemy import text

    return text("UPDATE settings SET value = :v WHERE key = :k")


def _do_item(s: Session, keys: OperatorKeys, plan: RefreshPlan, n: int,
             item: dict[str, Any]) -> dict[str, int]:
    """Build, write and book item ``n`` inside the claiming transaction ``s``."""


    lo, hi = int(item["lo"]), int(item["hi"])
    if s.get_bind().dialect.name == "postgresql":
        import gc

        from cas.headend.emmfast import book_item, build_item

        # An item allocates ~10 objects per card and frees them by reference counting; the
        # cyclic collector would only rescan them (measured: 40 % of the worker's CPU).
        gc.disable()
        try:
            emms = build_item(s, keys, lo=lo, hi=hi, at_s=plan.at_s, settings=plan.settings,
                              unique_base=plan.unique_base, shared_base=plan.shared_base)
        finally:
            gc.enable()
        _write_atomic(_item_file(plan.out_dir, n), emms.data)
        if _PAUSE_S:
            time.sleep(_PAUSE_S)
        book_item(s, emms)
        return {"cards": emms.cards, "unique_emms": emms.unique_emms,
                "shared_emms": emms.shared_emms, "bytes": len(emms.data)}
    return _do_item_reference(s, keys, plan, n, lo, hi)


def _do_item_reference(s: Session, keys: OperatorKeys, plan: RefreshPlan, n: int, lo: int,
                       hi: int) -> dict[str, int]:
    """An item through the reference generator (card states folded in Python): SQLite, where
    a refresh runs in one process.  Numbered from the run's epoch like the fast path."""
    from cas.billing.state import iter_card_states
    from cas.headend.emmfast import UNIQUE_STRIDE
    from cas.store.emmseq import UNIQUE

    at = datetime.fromtimestamp(plan.at_s, tz=UTC)
    states = list(iter_card_states(s, at, shared_range=(lo, hi)))
    data = b""
    rows: list[tuple[str, int, int, int | None]] = []
    unique_count = shared_count = 0
    if states:
        targets = card_targets(s, keys, states)
        res = build_batch(keys, targets, at_s=plan.at_s, unique_seq=lambda _a: plan.unique_base,
                          shared_seq=lambda _g: plan.shared_base, settings=plan.settings)
        sections, capped = _cap_unique(res.sections, plan.unique_base, UNIQUE_STRIDE)
        data = b"".join(sections)
        unique_count = res.unique_count - (len(res.sections) - len(sections))
        shared_count = res.shared_count
        sent = _sent_versions(s, [st.serial for st in states])
        rows = [(UNIQUE, st.serial, 1, st.rights_version) for st in states
                if st.rights_version > sent.get(st.serial, 0) and st.serial not in capped]
    _write_atomic(_item_file(plan.out_dir, n), data)
    if _PAUSE_S:
        time.sleep(_PAUSE_S)
    _book_sent(s, rows)
    return {"cards": len(states), "unique_emms": unique_count, "shared_emms": shared_count,
            "bytes": len(data)}


def _cap_unique(sections: list[bytes], base: int, stride: int) -> tuple[list[bytes], set[int]]:
    """``sections`` without the unique EMMs numbered beyond the epoch's stride, and the cards
    that lost some (the fast path cuts the same lists: cas.headend.emmfast)."""
    from cas.formats.emm import EmmAddressType

    tid = int(EmmAddressType.UNIQUE)
    keep: list[bytes] = []
    capped: set[int] = set()
    for sec in sections:
        if sec[0] == tid and (int.from_bytes(sec[7:11], "big") - base) % (1 << 32) >= stride:
            capped.add(int.from_bytes(sec[3:7], "big"))
            continue
        keep.append(sec)
    return keep, capped


def _sent_versions(s: Session, serials: list[int]) -> dict[int, int]:
    from sqlalchemy import select

    from cas.store.models import EmmSequence

    return {int(a): int(v) for a, v in s.execute(
        select(EmmSequence.address, EmmSequence.sent_rights_version).where(
            EmmSequence.address_kind == "unique", EmmSequence.address >= min(serials),
            EmmSequence.address <= max(serials)))}


def _write_atomic(path: Path, data: bytes) -> None:
    part = path.with_name(path.name + f".part-{os.getpid()}")
    with open(part, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(part, path)


def _book_sent(s: Session, rows: list[tuple[str, int, int, int | None]]) -> None:
    """Record the rights version sent to the cards whose rights changed (the reference
    path); their sequence rows keep their numbers (the epoch numbers the refresh)."""
    if not rows:
        return
    from sqlalchemy import func
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    from cas.store.models import EmmSequence

    dialect = s.get_bind().dialect.name
    stmt = (pg_insert if dialect == "postgresql" else sqlite_insert)(EmmSequence)
    greatest = func.greatest if dialect == "postgresql" else func.max
    s.execute(stmt.on_conflict_do_update(
        index_elements=[EmmSequence.address_kind, EmmSequence.address],
        set_={"sent_rights_version": greatest(EmmSequence.sent_rights_version,
                                              stmt.excluded.sent_rights_version)}),
        [{"address_kind": k, "address": a, "next_seq": x, "sent_rights_version": v}
         for k, a, x, v in rows])


def finish_refresh(store: Store, run: str, out: str) -> RefreshReport:
    """Join the item files into ``out`` once every item is done; a finished run is left as
    it is (``already_finished``)."""
    from sqlalchemy import text

    from cas.outpath import check_output_file
    from cas.store.repo import get_setting, set_setting

    plan = load_plan(store, run)
    with store.transaction() as s:
        if store.dialect == "postgresql":
            s.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                      {"k": _plan_key(run)})
        raw = get_setting(s, _plan_key(run))
        assert raw is not None
        plan = RefreshPlan.from_json(raw)
        if plan.finished:
            totals = json.loads(get_setting(s, _plan_key(run) + ".totals") or "{}")
            return RefreshReport(run=run, items=plan.items, output=plan.output,
                                 already_finished=True, **totals)
        items = [json.loads(v) for (v,) in s.execute(
            text("SELECT value FROM settings WHERE key LIKE :p ORDER BY key"),
            {"p": _plan_key(run) + ".%"})]
        left = sum(1 for i in items if i["state"] != "done")
        if left:
            raise UsageError(f"EMM refresh {run!r}: {left} of {plan.items} items not done "
                             f"yet (start 'cas emm worker --run {run}')").with_id(
                "headend.emm_refresh_items_not", run=f"{run!r}", left=left, items=plan.items,
                run2=run)
        check_output_file(out, "EMM output")
        part = out + ".emm-partial"
        with open(part, "wb") as fh:
            for n in range(plan.items):
                with open(_item_file(plan.out_dir, n), "rb") as src:
                    fh.write(src.read())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(part, out)
        totals = {k: sum(int(i[k]) for i in items)
                  for k in ("cards", "unique_emms", "shared_emms", "bytes")}
        plan.finished = True
        plan.output = out
        set_setting(s, _plan_key(run), plan.to_json())
        set_setting(s, _plan_key(run) + ".totals", json.dumps(totals, sort_keys=True))
        s.execute(text("DELETE FROM settings WHERE key LIKE :p AND key <> :t"),
                  {"p": _plan_key(run) + ".%", "t": _plan_key(run) + ".totals"})
    for n in range(plan.items):
        _item_file(plan.out_dir, n).unlink(missing_ok=True)
    return RefreshReport(run=run, items=plan.items, output=out, already_finished=False,
                         **totals)


def _child_worker(url: str, keys: OperatorKeys, run: str) -> None:
    """A forked worker: its own connection; an error is one line (its items stay ``todo``
    and the other workers finish them)."""
    import sys

    from cas.errors import CasError
    from cas.store.engine import Store

    try:
        child = Store.open(url, migrate=False, create=False)
        try:
            refresh_worker(child, keys, run)
        finally:
            child.dispose()
    except CasError as exc:
        print(f"EMM refresh worker {os.getpid()}: {exc}", file=sys.stderr)
        sys.exit(1)


def emm_refresh(store: Store, keys: OperatorKeys, *, run: str, at: datetime, out: str,
                workers: int = 1, out_dir: str | None = None,
                settings: EmmSettings = EmmSettings(), chunk: int = 20_000,
                progress: Callable[[int], None] | None = None) -> RefreshReport:
    """Plan (or join) ``run``, work on it with ``workers`` processes (this one and
    ``workers - 1`` forked ones, each with its own connection), then write ``out``."""
    import multiprocessing

    from cas.outpath import check_output_file

    if workers > 1:
        require_multi_process(store)
    check_output_file(out, "EMM output")
    plan = start_refresh(store, run=run, at=at, out_dir=out_dir or out + ".items",
                         settings=settings, chunk=chunk)
    if not plan.finished:
        url = store.engine.url.render_as_string(hide_password=False)
        ctx = multiprocessing.get_context("fork")
        store.engine.dispose()  # the children must not share this process's connections
        children = [ctx.Process(target=_child_worker, args=(url, keys, run), daemon=True)
                    for _ in range(workers - 1)]
        for child in children:
            child.start()
        try:
            refresh_worker(store, keys, run, progress=progress)
        finally:
            for child in children:
                child.join()
    return finish_refresh(store, run, out)
