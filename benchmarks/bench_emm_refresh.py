"""Full EMM refresh through PostgreSQL with 1 and 2 processes, against the bare AES-GCM loop.

What is timed (wall clock and CPU, one run each):

* **refresh, P processes**: :func:`cas.headend.emmrefresh.emm_refresh` of the whole synthetic
  base (``cas.billing.synthetic``, groups of 256, 1-3 packages per card, shared EMMs off so
  every card gets one unique EMM): plan (the sequence epoch), P workers taking SKIP LOCKED
  work items (one binary COPY of the item's cards, one query for their accounts, seal,
  write and fsync the item file, book the sent rights version of the cards whose rights
  changed, commit), joining the item files into one output.  Each P runs twice:
  **first** after the cards' sent versions were wiped (every card pending, as after a bulk
  registration: the item books one row per card) and **steady** right after (no card
  changed: nothing is written per card).
* **CPU per EMM**: this process and its forked workers (``getrusage``) plus every process
  of the PostgreSQL cluster (the postmaster's own and reaped children's CPU, and the live
  backends', from ``/proc/<pid>/stat``), divided by the EMMs.  With 2 cores, 2 / (CPU per
  EMM) is the rate the machine could give if nothing else ran.
* **item read alone**: the fast path's reads over the whole base in items of ``--chunk``
  cards (the COPY of the cards and the accounts query), rows fetched and dropped: the
  database's share of a refresh.
* **bare**: ``AESGCM(cuk).encrypt`` in one loop over the same number of cards with everything
  prepared before the clock starts (``bench_emmgen.bare_loop``): one core's AES-GCM work.
  Run at the start and at the end: the machine is shared.

PostgreSQL: ``--pg-url URL`` (CPU of the database then not counted), or by default a
throwaway cluster (as ``bench_billing.py``).

Run:  .venv/bin/python benchmarks/bench_emm_refresh.py [--cards 1000000] [--chunk 20000]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench_billing import throwaway_postgres
from bench_emmgen import bare_loop, make_cards
from sqlalchemy import text

from cas.billing.setup import use_profile
from cas.billing.synthetic import populate
from cas.crypto import OperatorKeys
from cas.headend.emmgen import EmmSettings
from cas.headend.emmrefresh import emm_refresh
from cas.store.engine import Store

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cards", type=int, default=1_000_000)
    ap.add_argument("--chunk", type=int, default=20_000)
    ap.add_argument("--pg-url")
    args = ap.parse_args()
    load0 = os.getloadavg()
    keys = OperatorKeys.generate(os.urandom)
    work = Path(tempfile.mkdtemp(prefix="cas-bench-refresh-"))
    ctx = None
    url = args.pg_url
    if url is None:
        ctx = throwaway_postgres()
        url = ctx.__enter__()
    rows: list[tuple[str, str]] = []
    try:
        store = Store.open(url)
        t = time.perf_counter()
        with store.transaction() as s:
            use_profile(s, "tvplus", clock_start=T0)
            populate(s, cards=args.cards, at=T0)
        with store.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
        print(f"populate {args.cards:,} cards: {time.perf_counter() - t:.1f} s", flush=True)

        bare_s = bare_loop(make_cards(args.cards), keys)
        bare = args.cards / bare_s
        rows.append(("bare AES-GCM loop, one core (baseline)", f"{bare:,.0f} EMM/s"))
        print(rows[-1], flush=True)

        pg_root = _postmaster(store) if ctx is not None else None
        rows.append(("item read alone (COPY of the cards + accounts query), 1 process",
                     _item_read_rate(store, args.chunk)))
        print(rows[-1], flush=True)

        for workers in (1, 2):
            for phase in ("first", "steady"):
                if phase == "first":
                    _wipe_sent(store)
                out = work / f"refresh-{workers}.sections"
                cpu0 = _cpu(pg_root)
                load_before = os.getloadavg()[0]
                t = time.perf_counter()
                rep = emm_refresh(store, keys, run=f"bench-{workers}-{phase}", at=T0,
                                  out=str(out), workers=workers, chunk=args.chunk,
                                  settings=EmmSettings(shared_min_members=0))
                wall = time.perf_counter() - t
                cpu1 = _cpu(pg_root)
                assert rep.unique_emms == args.cards, rep
                rate = rep.unique_emms / wall
                py_us = (cpu1[0] - cpu0[0]) / rep.unique_emms * 1e6
                pg_us = (cpu1[1] - cpu0[1]) / rep.unique_emms * 1e6
                rows.append((f"refresh, {workers} process{'es' if workers > 1 else ''}, "
                             f"{phase} (load {load_before:.1f} → {os.getloadavg()[0]:.1f})",
                             f"{rate:,.0f} EMM/s ({wall:.1f} s, {rep.items} items, "
                             f"{rate / bare:.2f}× bare); CPU per EMM {py_us:.2f} µs Python + "
                             f"{pg_us:.2f} µs PostgreSQL = {py_us + pg_us:.2f} µs "
                             f"(2 cores: {2e6 / (py_us + pg_us):,.0f} EMM/s)"))
                print(rows[-1], flush=True)
                out.unlink()
        bare_s = bare_loop(make_cards(args.cards), keys)
        rows.append(("bare AES-GCM loop, one core, at the end", f"{args.cards / bare_s:,.0f} "
                     f"EMM/s ({bare_s / args.cards * 1e6:.2f} µs per EMM)"))
        print(rows[-1], flush=True)
        store.dispose()
    finally:
        if ctx is not None:
            ctx.__exit__(None, None, None)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.cards:,} cards, {platform.python_version()}, load at start "
          f"{load0[0]:.1f}, at the end {os.getloadavg()[0]:.1f} (1-minute averages)")
    print("| measurement | result |\n|---|---:|")
    for name, value in rows:
        print(f"| {name} | {value} |")


def _item_read_rate(store: Store, chunk: int) -> str:
    """The fast path's reads (cards COPY, accounts query) over every card group in items of
    about ``chunk`` cards, rows fetched and nothing else."""
    from cas.headend import emmfast

    with store.reader() as s:
        groups = sorted(int(g) for (g,) in s.execute(
            text("SELECT DISTINCT shared_address FROM cards")))
    step = max(1, chunk // 256)
    at_s = int(T0.timestamp())
    n = 0
    t = time.perf_counter()
    with store.reader() as s:
        for i in range(0, len(groups), step):
            part = groups[i : i + step]
            cards = emmfast.read_cards(s, part[0], part[-1])
            emmfast.read_accounts(s, sorted({r[3] for r in cards if r[3] is not None}), at_s)
            n += len(cards)
    wall = time.perf_counter() - t
    return f"{n / wall:,.0f} cards/s ({wall:.1f} s)"


def _wipe_sent(store: Store) -> None:
    """Forget every card's sent rights version (as after a bulk registration)."""
    with store.engine.connect() as conn:
        conn.exec_driver_sql("DELETE FROM emm_sequences WHERE address_kind = 'unique'")
        conn.commit()
    with store.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            "VACUUM ANALYZE emm_sequences")


def _postmaster(store: Store) -> int:
    with store.engine.connect() as conn:
        backend = int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
    return _stat(backend)[0]


def _stat(pid: int) -> tuple[int, float, float]:
    """(ppid, own CPU s, reaped children's CPU s) of ``pid`` from /proc."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick,
            (int(fields[13]) + int(fields[14])) / tick)


def _cpu(pg_root: int | None) -> tuple[float, float]:
    """(CPU s of this process and its reaped workers, CPU s of the PostgreSQL cluster)."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    py = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    if pg_root is None:
        return py, 0.0
    _, own, reaped = _stat(pg_root)
    pg = own + reaped
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid, cpu, _ = _stat(int(entry))
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pg_root:
            pg += cpu
    return py, pg


if __name__ == "__main__":
    main()
