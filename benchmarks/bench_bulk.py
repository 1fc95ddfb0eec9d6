"""Bulk-path benchmark (issue 16): personalise + register N cards, on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/bench_bulk.py                    # 1,000,000 cards, both stores
    .venv/bin/python benchmarks/bench_bulk.py --cards 200000     # a shorter run
    .venv/bin/python benchmarks/bench_bulk.py --no-pg --images 20000

Measured per store:

* **baseline** (same run): a bare ``executemany`` (SQLite) / ``COPY`` (PostgreSQL) of the same
  ``cards`` and ``rights_changes`` rows into the store's own empty tables (with their
  indexes), rolled back: the database's own cost, nothing checked or allocated;
* **register**: :func:`cas.bulk.register.register_cards` alone (slot allocation, the rows, the
  groups, one transaction);
* **command**: the whole ``cas card personalise --count N --no-images`` as an operator runs it
  (a fresh process on the emptied store): registration, personalising in worker processes
  while the rows are written, and the batch file.  Wall time and the CPU time of the command
  and its workers (not the database server's);
* **personalise CPU / card**: the bulk path (:func:`cas.card.personalise_fast.personalise_records`)
  and the per-card reference (``build_card_record(personalise_card(…))``, on 20,000 cards),
  in this process, one core;
* **images** (``--images K``): ``cas card personalise --count K`` with its image files, wall
  time per file.

Each line carries the load average (the machine is shared).  PostgreSQL: ``--pg-url URL`` or a
throwaway cluster (see bench_billing.py); ``--no-pg`` skips.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_billing import throwaway_postgres
from sqlalchemy import text

from cas.bulk.cards import CARD_COLUMNS, NewCard
from cas.bulk.fast import insert_rows
from cas.bulk.register import register_cards
from cas.card.personalise import personalise_card
from cas.card.personalise_fast import Factory, personalise_records
from cas.crypto import OperatorKeys
from cas.formats.records import build_card_record
from cas.store.engine import Store

FIRST = 100_000_000


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def baseline(store: Store, n: int) -> float:
    """A bare COPY/executemany of the same ``cards`` and ``rights_changes`` rows into the
    store's own (empty, indexed) tables, rolled back afterwards: the database's share."""
    rows = [(FIRST + i, 1 + i // 256, i % 256, "active", 0, 255, 1_790_000_000, 1,
             1_790_000_000) for i in range(n)]
    changes = [(FIRST + i, 1_790_000_000, "register") for i in range(n)]
    conn = store.engine.connect()
    try:
        with conn.begin() as tx:
            t0 = time.perf_counter()
            insert_rows(conn, "cards", CARD_COLUMNS, rows)
            insert_rows(conn, "rights_changes", ("card_serial", "at_s", "cause"), changes)
            took = time.perf_counter() - t0
            tx.rollback()
    finally:
        conn.close()
    return took


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def _cpu_children() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _empty(store: Store) -> None:
    with store.engine.begin() as conn:
        for table in ("rights_changes", "cards", "card_groups"):
            conn.execute(text(f"DELETE FROM {table}"))


def _command(url: str, work: Path, n: int, *, images: bool, first: int) -> tuple[float, float]:
    """Wall and CPU seconds of ``cas card personalise --count n`` in a fresh process."""
    data = work / "data"
    data.mkdir(exist_ok=True)
    if not (data / "operator-keys.toml").exists():
        OperatorKeys.generate(now_s=1_790_000_000).save(data / "operator-keys.toml")
    out = work / f"cards-{first}"
    cmd = [str(Path(sys.executable).parent / "cas"), "--data-dir", str(data), "--db-url", url,
           "--quiet", "card", "personalise", "--count", str(n), "--start-serial", str(first),
           "--out", str(out), *([] if images else ["--no-images"])]
    cpu0 = _cpu_children()
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    return wall, _cpu_children() - cpu0


def run(name: str, url: str, n: int, images: int, work: Path) -> dict[str, float]:
    store = Store.open(url)
    keys = OperatorKeys.generate(now_s=1_790_000_000)
    try:
        load0 = _load()
        base = baseline(store, n)
        cards = [NewCard(serial=FIRST + i) for i in range(n)]
        t_reg, slots = _timed(lambda: register_cards(store, cards))
        _empty(store)
        load1 = _load()
        t_cmd, cpu_cmd = _command(url, work, n, images=False, first=FIRST)
        load2 = _load()
        _empty(store)
        sample = slots[:20_000]  # type: ignore[index]
        factory = Factory(now_s=1_790_000_000)
        c0 = time.process_time()
        personalise_records(keys, slots, factory)  # type: ignore[arg-type]
        fast_us = (time.process_time() - c0) / n * 1e6
        c0 = time.process_time()
        for s in sample:
            build_card_record(personalise_card(keys, s, now_s=1_790_000_000))
        ref_us = (time.process_time() - c0) / len(sample) * 1e6
        t_img = 0.0
        if images:
            t_img, _ = _command(url, work, images, images=True, first=FIRST + 2 * n)
            _empty(store)
    finally:
        store.dispose()
    print(f"{name:10} {n:>9,} cards: register {t_reg:6.1f} s (baseline {base:5.1f} s, "
          f"{t_reg / base:4.1f}x) [load {load0}]", flush=True)
    print(f"{name:10} whole command --no-images: {t_cmd:6.1f} s wall, {cpu_cmd:6.1f} s CPU of "
          f"cas and its workers ({cpu_cmd / n * 1e6:5.1f} us/card) [load {load1} -> {load2}]",
          flush=True)
    print(f"{name:10} personalise CPU, one core: bulk path {fast_us:5.1f} us/card, per-card "
          f"path {ref_us:5.1f} us/card ({ref_us / fast_us:3.1f}x)", flush=True)
    if images:
        print(f"{name:10} with image files, {images:,} cards: {t_img:6.1f} s "
              f"({t_img / images * 1e3:4.2f} ms/card)", flush=True)
    return {"register": t_reg, "baseline": base, "command": t_cmd, "command_cpu": cpu_cmd,
            "personalise_us": fast_us, "reference_us": ref_us, "images": t_img}


def main() -> None:
    # SIGTERM ends the run through the finally blocks (the throwaway cluster is stopped).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cards", type=int, default=1_000_000)
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--pg-url")
    ap.add_argument("--images", type=int, default=0,
                    help="also time the command with image files on this many cards")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cas-bench-bulk-"))
    try:
        if not args.no_sqlite:
            run("sqlite", f"sqlite:///{work / 'cas.sqlite'}", args.cards, args.images,
                work)
        if not args.no_pg:
            if args.pg_url:
                run("postgresql", args.pg_url, args.cards, args.images, work)
            else:
                with throwaway_postgres() as url:
                    run("postgresql", url, args.cards, args.images, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
