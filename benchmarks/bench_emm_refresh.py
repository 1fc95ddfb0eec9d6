"""Full EMM refresh through PostgreSQL with 1 and 2 processes, against the bare AES-GCM loop.

What is timed (wall clock, one run each):

* **refresh, P processes**: :func:`cas.headend.emmrefresh.emm_refresh` of the whole synthetic
  base (``cas.billing.synthetic``, groups of 256, 1-3 packages per card, shared EMMs off so
  every card gets one unique EMM): plan, P workers taking SKIP LOCKED work items (read card
  states, sequence numbers, build and seal, write the item file, COPY + upsert the sequence
  numbers, commit), joining the item files into one output.
* **state read alone**: :func:`cas.billing.state.iter_card_states` over the same base in one
  process, nothing else — what the reference path (SQLite) reads and folds in Python.
* **item query alone**: the PostgreSQL fast path's one query per work item
  (:mod:`cas.headend.emmfast`, commands built by the database) over the whole base in items
  of ``--chunk`` cards, rows fetched and dropped — the database's share of a refresh read.
* **bare**: ``AESGCM(cuk).encrypt`` in one loop over the same number of cards with everything
  prepared before the clock starts (``bench_emmgen.bare_loop``): one core's AES-GCM work.

PostgreSQL: ``--pg-url URL``, or by default a throwaway cluster (as ``bench_billing.py``).

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

from cas.billing import state
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

        with store.reader() as s:
            t = time.perf_counter()
            n = sum(1 for _ in state.iter_card_states(s, T0))
            read_s = time.perf_counter() - t
        rows.append(("card states read alone, 1 process",
                     f"{n / read_s:,.0f} cards/s ({read_s:.1f} s)"))
        print(rows[-1], flush=True)

        rows.append(("item query alone (fast path read), 1 process", _item_query_rate(store)))
        print(rows[-1], flush=True)

        for workers in (1, 2):
            out = work / f"refresh-{workers}.sections"
            t = time.perf_counter()
            rep = emm_refresh(store, keys, run=f"bench-{workers}", at=T0, out=str(out),
                              workers=workers, chunk=args.chunk,
                              settings=EmmSettings(shared_min_members=0))
            wall = time.perf_counter() - t
            assert rep.unique_emms == args.cards, rep
            rate = rep.unique_emms / wall
            rows.append((f"refresh, {workers} process{'es' if workers > 1 else ''}",
                         f"{rate:,.0f} EMM/s ({wall:.1f} s, {rep.items} items, "
                         f"{rate / bare:.2f}× bare)"))
            print(rows[-1], flush=True)
            out.unlink()
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


def _item_query_rate(store: Store) -> str:
    """Run the fast path's item query over every card group in items of about 20,000 cards,
    fetching the rows and nothing else."""
    from cas.headend import emmfast

    with store.reader() as s:
        groups = sorted(int(g) for (g,) in s.execute(
            text("SELECT DISTINCT shared_address FROM cards")))
    step = max(1, 20_000 // 256)
    at_s = int(T0.timestamp())
    n = 0
    t = time.perf_counter()
    with store.reader() as s:
        raw = s.connection().connection.dbapi_connection
        with raw.cursor() as cur:
            cur.execute(emmfast._PLANNER_SQL)
            for i in range(0, len(groups), step):
                part = groups[i : i + step]
                cur.execute(emmfast._ITEM_SQL, {"at": at_s, "lo": part[0], "hi": part[-1]},
                            binary=True)
                n += len(cur.fetchall())
    wall = time.perf_counter() - t
    return f"{n / wall:,.0f} cards/s ({wall:.1f} s)"


if __name__ == "__main__":
    main()
