"""Subscriber-store benchmarks: payments per second, and entitlement state for a big base.

    .venv/bin/python benchmarks/bench_billing.py                 # SQLite + PostgreSQL, 1M cards
    .venv/bin/python benchmarks/bench_billing.py --cards 100000 --payments 1000 --quick

* **payments/s**: ``cas.billing.service.pay`` (ATV+ profile), one payment per transaction
  (resolve the card, duplicate check, lock the account, atomic balance update, ledger row,
  settle, commit), sequentially; on PostgreSQL also from 8 threads on 8 different accounts.
* **entitlement state**: ``cas.billing.state.iter_card_states`` over the whole synthetic base
  (``cas.billing.synthetic.populate``), i.e. every card's ``CardRights`` at T.  The baseline is
  the same SQL query fetched as plain rows with nothing built — the cost of the database
  alone, in the same run.

PostgreSQL: ``--pg-url URL``, or by default a throwaway cluster (Debian ``postgresql``,
``initdb`` into a temp dir, run as the ``postgres`` user when root) on a free port, removed
at the end.  ``--no-pg`` skips it.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cas.billing import accounts, service, state
from cas.billing.setup import use_profile
from cas.billing.synthetic import populate
from cas.store.engine import Store
from cas.store.repo import register_card

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    bindirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not bindirs:
        raise SystemExit("PostgreSQL binaries not found: apt-get install postgresql (or --no-pg)")
    bindir = bindirs[-1]
    root = Path(tempfile.mkdtemp(prefix="cas-bench-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(root, entry.pw_uid, entry.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    run = lambda *a: subprocess.run([*prefix, *a], check=True, capture_output=True, cwd=root)  # noqa: E731
    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
            "--no-locale", "-E", "UTF8", "--no-sync")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
            f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} "
            "-c max_connections=100 -c shared_buffers=256MB -c work_mem=64MB", "start")
        run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
            "bench")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/bench"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                       capture_output=True, check=False, cwd=root)
        shutil.rmtree(root, ignore_errors=True)


def bench_payments(url: str, n: int, threads: int) -> dict[str, float]:
    store = Store.open(url)
    try:
        with store.transaction() as s:
            use_profile(s, "atvplus", clock_start=T0)
            numbers = [accounts.create_account(s, surname="Bench", name=f"P{i}", at=T0)
                       .account_number for i in range(max(threads, 1))]
            for i, number in enumerate(numbers):
                register_card(s, 1_000_000 + i, at=T0)
                accounts.link_card(s, serial=1_000_000 + i, account_number=number, at=T0)
        out: dict[str, float] = {}

        def worker(k: int, count: int, tag: str) -> None:
            for j in range(count):
                with store.transaction() as s:
                    service.pay(s, by="card", ref=str(1_000_000 + k), amount_minor=1000,
                                payment_id=f"{tag}-{k}-{j}", at=T0)

        t = time.perf_counter()
        worker(0, n, "seq")
        out["sequential"] = n / (time.perf_counter() - t)
        if threads > 1:
            per = max(n // threads, 1)
            pool = [threading.Thread(target=worker, args=(k, per, "par")) for k in range(threads)]
            t = time.perf_counter()
            for th in pool:
                th.start()
            for th in pool:
                th.join()
            out[f"{threads} threads"] = per * threads / (time.perf_counter() - t)
        with store.reader() as s:  # sanity: the ledger adds up
            st = service.statement(s, account_number=numbers[0])
            assert st.closing_balance_minor == service.balance(
                s, account_number=numbers[0]).balance_minor
        return out
    finally:
        store.dispose()


def bench_state(url: str, cards: int) -> dict[str, float]:
    store = Store.open(url)
    try:
        with store.transaction() as s:
            use_profile(s, "tvplus", clock_start=T0)
        t = time.perf_counter()
        with store.transaction() as s:
            base = populate(s, cards=cards, at=T0)
        populate_s = time.perf_counter() - t
        if store.dialect == "postgresql":
            with store.engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE")
                conn.commit()
        at = T0
        # Baseline: the same query through the same streamed DBAPI cursor, rows dropped.
        with store.reader() as s:
            t = time.perf_counter()
            rows = 0
            for _row in state._rows(s, state._statement(None), 20_000):
                rows += 1
            raw_s = time.perf_counter() - t
        with store.reader() as s:
            t = time.perf_counter()
            n = 0
            active = 0
            for st in state.iter_card_states(s, at):
                n += 1
                active += st.rights.status == 1
            ours_s = time.perf_counter() - t
        assert n == base.cards, (n, base.cards)
        return {"cards": n, "rows": rows, "accounts": base.accounts, "populate_s": populate_s,
                "raw_s": raw_s, "ours_s": ours_s, "active": active}
    finally:
        store.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cards", type=int, default=1_000_000)
    ap.add_argument("--payments", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--pg-url")
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--quick", action="store_true", help="100,000 cards, 500 payments")
    args = ap.parse_args()
    if args.quick:
        args.cards, args.payments = 100_000, 500
    work = Path(tempfile.mkdtemp(prefix="cas-bench-"))
    results: list[tuple[str, str, str]] = []
    try:
        targets: list[tuple[str, str]] = [("SQLite", f"sqlite:///{work}/pay.sqlite")]
        pg_ctx = None
        if not args.no_pg:
            if args.pg_url:
                targets.append(("PostgreSQL", args.pg_url))
            else:
                pg_ctx = throwaway_postgres()
                targets.append(("PostgreSQL", pg_ctx.__enter__()))
        try:
            for name, url in targets:
                pay = bench_payments(url, args.payments,
                                     args.threads if name == "PostgreSQL" else 1)
                for k, v in pay.items():
                    results.append((name, f"payments/s ({k})", f"{v:,.0f}"))
                    print(f"{name}: payments/s {k}: {v:,.0f}", flush=True)
                state_url = (f"sqlite:///{work}/state.sqlite" if name == "SQLite"
                             else _fresh_pg(url))
                r = bench_state(state_url, args.cards)
                print(f"{name}: {r}", flush=True)
                results.append((name, f"populate {r['cards']:,} cards (bulk insert, setup)",
                                f"{r['populate_s']:.1f} s"))
                results.append((name, f"query rows only ({r['rows']:,} rows, baseline)",
                                f"{r['raw_s']:.1f} s"))
                results.append((name, f"iter_card_states, {r['cards']:,} cards",
                                f"{r['ours_s']:.1f} s ({r['cards'] / r['ours_s']:,.0f} cards/s, "
                                f"{r['ours_s'] / r['raw_s']:.2f}× baseline)"))
        finally:
            if pg_ctx is not None:
                pg_ctx.__exit__(None, None, None)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| database | measurement | result |\n|---|---|---:|")
    for row in results:
        print(f"| {row[0]} | {row[1]} | {row[2]} |")


def _fresh_pg(url: str) -> str:
    """A second database next to ``url`` for the state benchmark."""
    import psycopg

    base, _, _db = url.rpartition("/")
    name = f"state_{int(time.time())}"
    dsn = base.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{base}/{name}"


if __name__ == "__main__":
    main()
