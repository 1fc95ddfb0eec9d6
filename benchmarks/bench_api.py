"""Operator API under load: payments per second and latency (p50/p95/p99) on SQLite and
PostgreSQL.

    .venv/bin/python benchmarks/bench_api.py                       # both databases
    .venv/bin/python benchmarks/bench_api.py --no-pg --requests 500 --workers 8

For each database: a fresh store with the ATV+ profile and ``--accounts`` accounts with a card
each, an API key, and ``cas serve api`` started as its own process on 127.0.0.1 (uvicorn, the
real CLI).  The load generator is an asyncio ``httpx.AsyncClient`` in this process with
``--workers`` concurrent workers (closed loop: each sends its next request when the previous
answer arrived), bounded by ``--requests`` and ``--duration-s``.  Every request is a
``POST /api/v1/payments`` by card number with its own ``Idempotency-Key``, spread over the
accounts round-robin: a full payment (API key check, idempotency look-up, the billing
layer's ``pay`` — duplicate check, account lock, ledger row, settle, rights journal — the
audit row and the idempotency record, one transaction, commit).  A warm-up of
``--warmup`` requests is not counted.  Three scenarios per database: payments with the
workers in a closed loop (the saturated rate), payments paced in an open loop at half that
rate (latency when busy but not overloaded), and ``GET /balance`` closed-loop as a read
baseline.  The server's own CPU time per request is read from ``/proc``.

PostgreSQL: ``--pg-url URL`` (an empty database), or by default a throwaway cluster
(``tests/fixtures/postgres.py``: Debian ``postgresql``, ``initdb`` into a temp dir) on a free
port, removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from cas.billing import accounts as acc_mod  # noqa: E402
from cas.billing.setup import use_profile  # noqa: E402
from cas.store.engine import Store  # noqa: E402
from cas.store.repo import register_card  # noqa: E402
from cas.web.domain import create_api_key  # noqa: E402

T0_S = 1_772_442_000  # 2026-03-02 09:00 UTC: the store's simulation clock


@dataclass
class Seeded:
    url: str
    key: str
    cards: list[int]
    accounts: list[str]


def seed(url: str, n_accounts: int) -> Seeded:
    from datetime import UTC, datetime

    at = datetime.fromtimestamp(T0_S, UTC)
    store = Store.open(url)
    cards: list[int] = []
    numbers: list[str] = []
    try:
        with store.transaction() as s:
            use_profile(s, "atvplus", clock_start=at)
            key = create_api_key(s, operator="atvplus", label="bench", wall_s=int(time.time()))
            for i in range(n_accounts):
                view = acc_mod.create_account(s, surname="Bench", name=f"N{i}", at=at)
                serial = 1_500_000_000 + i
                register_card(s, serial, at=at)
                acc_mod.link_card(s, serial=serial, account_number=view.account_number, at=at)
                cards.append(serial)
                numbers.append(view.account_number)
    finally:
        store.dispose()
    return Seeded(url=url, key=key.full, cards=cards, accounts=numbers)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def server(url: str, data_dir: Path) -> Iterator[tuple[str, int]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAS_")}
    env["CAS_WEB_SECRET"] = os.urandom(32).hex()
    cas = str(Path(sys.executable).parent / "cas")
    proc = subprocess.Popen([cas, "--data-dir", str(data_dir), "serve", "api", "--db-url", url,
                             "--host", "127.0.0.1", "--port", str(port), "--log-level",
                             "warning"], env=env, cwd=ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise SystemExit("cas serve api exited early")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("cas serve api did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _pct(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return float("nan")
    k = min(len(sorted_ms) - 1, max(0, round(q * (len(sorted_ms) - 1))))
    return sorted_ms[k]


async def load(base: str, seeded: Seeded, *, kind: str, workers: int, requests: int,
               duration_s: float, warmup: int, tag: str,
               rate: float | None = None) -> dict[str, float]:
    """Closed loop with ``workers`` clients (saturation), or with ``rate`` an open loop: one
    request every 1/rate s whatever the answers do (at most ``workers`` in flight)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(10**9))
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    headers = {"X-API-Key": seeded.key}
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60,
                                 headers=headers) as client:
        async def one(i: int) -> tuple[int, float]:
            t = time.perf_counter()
            if kind == "payment":
                card = seeded.cards[i % len(seeded.cards)]
                resp = await client.post(
                    "/api/v1/payments", headers={"Idempotency-Key": f"{tag}-{i}"},
                    json={"by": "card", "ref": str(card), "amount_minor": 1000})
            else:
                number = seeded.accounts[i % len(seeded.accounts)]
                resp = await client.get(f"/api/v1/accounts/{number}/balance")
            return resp.status_code, (time.perf_counter() - t) * 1000

        await asyncio.gather(*(one(next(counter)) for _ in range(warmup)))
        stop_at = time.monotonic() + duration_s
        done = 0

        async def worker() -> None:
            nonlocal done
            while done < requests and time.monotonic() < stop_at:
                done += 1
                status, ms = await one(next(counter))
                statuses[status] = statuses.get(status, 0) + 1
                latencies.append(ms)

        async def paced(i: int, sem: asyncio.Semaphore) -> None:
            async with sem:
                status, ms = await one(i)
            statuses[status] = statuses.get(status, 0) + 1
            latencies.append(ms)

        start = time.perf_counter()
        if rate is None:
            await asyncio.gather(*(worker() for _ in range(workers)))
        else:
            sem = asyncio.Semaphore(workers)
            tasks = []
            for n in range(requests):
                due = start + n / rate
                if due - start > duration_s:
                    break
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                tasks.append(asyncio.create_task(paced(next(counter), sem)))
            await asyncio.gather(*tasks)
        wall = time.perf_counter() - start
    ok = statuses.get(201 if kind == "payment" else 200, 0)
    lat = sorted(latencies)
    return {"requests": float(len(lat)), "ok": float(ok), "errors": float(len(lat) - ok),
            "wall_s": wall, "per_s": ok / wall if wall else 0.0,
            "p50_ms": _pct(lat, 0.50), "p95_ms": _pct(lat, 0.95), "p99_ms": _pct(lat, 0.99),
            "max_ms": lat[-1] if lat else float("nan")}


def run_backend(name: str, url: str, args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    seeded = seed(url, args.accounts)
    out: dict[str, object] = {"database": name, "workers": args.workers}
    with server(url, workdir / f"data-{name}") as (base, pid):
        saturated: dict[str, float] = {}
        for kind in ("payment", "payment-paced", "balance"):
            cpu0 = cpu_s(pid)
            rate = None
            if kind == "payment-paced":
                # Half the rate the server sustained: the latency a billing system sees when
                # the API is busy but not overloaded.
                rate = args.rate or max(1.0, round(saturated["per_s"] / 2))
            res = asyncio.run(load(base, seeded, kind=kind.split("-")[0],
                                   workers=args.workers * (4 if rate else 1),
                                   requests=args.requests, duration_s=args.duration_s,
                                   warmup=args.warmup, tag=f"{name}-{kind}", rate=rate))
            if kind == "payment":
                saturated = res
            if rate is not None:
                res["offered_per_s"] = rate
            # Server CPU per request (warm-up included): what one request costs the server,
            # whatever else the machine is doing.
            res["server_cpu_ms"] = (cpu_s(pid) - cpu0) * 1000 / max(
                res["requests"] + args.warmup, 1)
            out[kind] = res
            print(f"{name:10s} {kind:13s} {res['ok']:.0f}/{res['requests']:.0f} ok in "
                  f"{res['wall_s']:.1f} s: {res['per_s']:.0f}/s  p50 {res['p50_ms']:.1f} ms  "
                  f"p95 {res['p95_ms']:.1f} ms  p99 {res['p99_ms']:.1f} ms  "
                  f"max {res['max_ms']:.1f} ms  server CPU {res['server_cpu_ms']:.1f} ms/req",
                  flush=True)
    return out


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    from tests.fixtures.postgres import PostgresServer, _find_bindir, _free_port

    root = Path(tempfile.mkdtemp(prefix="cas-bench-pg-"))
    as_user = None
    if os.geteuid() == 0:
        import pwd

        entry = pwd.getpwnam("postgres")
        os.chown(root, entry.pw_uid, entry.pw_gid)
        as_user = "postgres"
    pg = PostgresServer(_find_bindir(), root, _free_port(), as_user)
    pg.start()
    try:
        yield pg.create_database("cas_bench")
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=16, help="concurrent clients")
    ap.add_argument("--requests", type=int, default=3000, help="measured requests per scenario")
    ap.add_argument("--duration-s", type=float, default=30.0, help="time bound per scenario")
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--accounts", type=int, default=200)
    ap.add_argument("--rate", type=float, help="paced payments/s (default: half the "
                    "saturated rate)")
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--pg-url")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    results = []
    work = Path(tempfile.mkdtemp(prefix="cas-bench-api-"))
    try:
        if not args.no_sqlite:
            results.append(run_backend("sqlite", f"sqlite:///{work / 'cas.sqlite'}", args, work))
        if not args.no_pg:
            if args.pg_url:
                results.append(run_backend("postgresql", args.pg_url, args, work))
            else:
                with throwaway_postgres() as url:
                    results.append(run_backend("postgresql", url, args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
