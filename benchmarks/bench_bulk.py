"""Bulk-path benchmark (issue 16): personalise + register N cards, on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/bench_bulk.py                    # 1,000,000 cards, both stores
    .venv/bin/python benchmarks/bench_bulk.py --cards 200000     # a shorter run
    .venv/bin/python benchmarks/bench_bulk.py --no-pg --no-images

Each phase of ``cas card personalise --count N`` is timed on its own, as the command runs it:

* **register**: :func:`cas.bulk.register.register_cards` — slot allocation, the ``cards`` and
  ``rights_changes`` rows, the groups, one transaction (COPY on PostgreSQL, executemany on
  SQLite);
* **personalise**: :func:`cas.card.personalise.personalise_card` for every card (key
  derivation, wrapping, the record);
* **images**: :func:`cas.bulk.register.write_images_fast` — one EEPROM image per card, one
  flush at the end (``--no-images`` skips it);
* **batch**: the personalisation batch file.

The same-run baseline is a bare ``executemany`` (SQLite) / ``COPY`` (PostgreSQL) of the same
``cards`` and ``rights_changes`` rows into the store's own empty tables (with their indexes),
rolled back: the database's own cost, nothing checked or allocated.
PostgreSQL: ``--pg-url URL`` or a throwaway cluster (see bench_billing.py); ``--no-pg`` skips.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_billing import throwaway_postgres

from cas.bulk.cards import CARD_COLUMNS, NewCard
from cas.bulk.fast import insert_rows
from cas.bulk.register import register_cards, write_images_fast
from cas.card.personalise import personalise_card, write_batch
from cas.crypto import OperatorKeys
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


def run(name: str, url: str, n: int, images: bool, work: Path) -> dict[str, float]:
    store = Store.open(url)
    keys = OperatorKeys.generate(now_s=1_790_000_000)
    try:
        base = baseline(store, n)
        cards = [NewCard(serial=FIRST + i) for i in range(n)]
        t_reg, slots = _timed(lambda: register_cards(store, cards))
        t_pers, records = _timed(lambda: [personalise_card(keys, s, now_s=1_790_000_000)
                                          for s in slots])  # type: ignore[attr-defined]
        out = work / name
        t_img = 0.0
        if images:
            t_img, _ = _timed(lambda: write_images_fast(records, out))  # type: ignore[arg-type]
        t_batch, _ = _timed(lambda: write_batch(records, out / "batch.casb",  # type: ignore[arg-type]
                                                now_s=1_790_000_000))
    finally:
        store.dispose()
    total = t_reg + t_pers + t_img + t_batch
    print(f"{name:10} {n:>9,} cards: register {t_reg:7.1f} s (baseline {base:6.1f} s, "
          f"{t_reg / base:4.1f}x)  personalise {t_pers:7.1f} s  images {t_img:7.1f} s  "
          f"batch {t_batch:5.1f} s  total {total:7.1f} s", flush=True)
    return {"register": t_reg, "baseline": base, "personalise": t_pers, "images": t_img,
            "batch": t_batch, "total": total}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cards", type=int, default=1_000_000)
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--pg-url")
    ap.add_argument("--no-images", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cas-bench-bulk-"))
    try:
        if not args.no_sqlite:
            run("sqlite", f"sqlite:///{work / 'cas.sqlite'}", args.cards, not args.no_images,
                work)
        if not args.no_pg:
            if args.pg_url:
                run("postgresql", args.pg_url, args.cards, not args.no_images, work)
            else:
                with throwaway_postgres() as url:
                    run("postgresql", url, args.cards, not args.no_images, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
