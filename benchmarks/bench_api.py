"""Operator API under load: payments/s and balance reads/s, and p99 latency at half the
saturated rate, on PostgreSQL and SQLite, with same-run baselines.

    .venv/bin/python benchmarks/bench_api.py                      # both databases, 2 workers
    .venv/bin/python benchmarks/bench_api.py --no-pg --duration-s 5 --server-workers 1
    .venv/bin/python benchmarks/bench_api.py --only balance --no-baseline   # reads only

For each database: a fresh store with the ATV+ profile and ``--accounts`` accounts with a card
each, an API key, and ``cas serve api --workers N`` (the real CLI, ``--server-workers``) on
127.0.0.1.  The load generator runs in its own process: asyncio with raw keep-alive HTTP/1.1
connections (no client library on the hot path), ``--clients`` connections.

Scenarios per database, each for ``--duration-s`` after a warm-up:

* ``payment``: ``POST /api/v1/payments`` by card number, each with its own
  ``Idempotency-Key``, round-robin over the accounts, in a closed loop (the saturated rate);
* ``payment-half``: the same, paced in an open loop at half the saturated rate (the latency a
  billing system sees when the API is busy but not overloaded);
* ``balance`` / ``balance-half``: ``GET /api/v1/accounts/{n}/balance``, the same two ways.

Baselines in the same run and on the same server: on PostgreSQL ``pgbench`` TPC-B (the
default script) and select-only (``-S``) with as many clients, on a scale-1 database of their
own; on SQLite, bare ``sqlite3`` transactions of the same shape as a payment's writes
(``BEGIN IMMEDIATE``, an UPDATE, two INSERTs, COMMIT) and primary-key selects, on a file in
WAL mode.  The load average is printed with every line: the machine is shared.  Each line
also gives the CPU per request of the server (parent and workers) and, on the throwaway
PostgreSQL cluster, of PostgreSQL (postmaster and backends).

PostgreSQL: ``--pg-url URL`` (an empty database; pgbench needs ``--pg-bindir`` and a server
it may create a database on), or by default a throwaway cluster (``tests/fixtures/postgres.py``)
on a free port, removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import sqlite3
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


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children: those still running, and
    those that ended and were waited for (PostgreSQL backends come and go as the server's
    pool opens and closes overflow connections)."""
    total = 0.0
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        this = int(Path(stat).parent.name)
        if this == pid:
            total += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        elif int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


@contextmanager
def server(url: str, data_dir: Path, workers: int) -> Iterator[tuple[int, int]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAS_")}
    env["CAS_WEB_SECRET"] = os.urandom(32).hex()
    cas = str(Path(sys.executable).parent / "cas")
    proc = subprocess.Popen([cas, "--data-dir", str(data_dir), "serve", "api", "--db-url", url,
                             "--host", "127.0.0.1", "--port", str(port), "--log-level",
                             "warning", "--workers", str(workers)],
                            env=env, cwd=ROOT, start_new_session=True)
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
        time.sleep(1.0 if workers > 1 else 0.0)  # every worker listening
        yield port, proc.pid
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- the load generator (its own process) -----------------------------------------------------
@dataclass
class LoadSpec:
    port: int
    key: str
    kind: str  # "payment" | "balance"
    cards: list[int]
    accounts: list[str]
    clients: int
    duration_s: float
    warmup_s: float
    tag: str
    rate: float | None = None  # None: closed loop; else requests/s, open loop


class _Conn:
    """One keep-alive HTTP/1.1 connection: a request out, one answer in (Content-Length)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def call(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await self.reader.readexactly(length) if length else b""
        return status, body


def _request(spec: LoadSpec, i: int) -> bytes:
    if spec.kind == "payment":
        body = json.dumps({"by": "card", "ref": str(spec.cards[i % len(spec.cards)]),
                           "amount_minor": 1000}).encode()
        return (b"POST /api/v1/payments HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: "
                + spec.key.encode() + b"\r\nIdempotency-Key: " + f"{spec.tag}-{i}".encode()
                + b"\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode() + b"\r\n\r\n" + body)
    number = spec.accounts[i % len(spec.accounts)]
    return (f"GET /api/v1/accounts/{number}/balance HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"X-API-Key: {spec.key}\r\n\r\n").encode()


async def _load(spec: LoadSpec) -> dict[str, float]:
    ok_status = 201 if spec.kind == "payment" else 200
    conns = [_Conn(*await asyncio.open_connection("127.0.0.1", spec.port))
             for _ in range(spec.clients)]
    idle: asyncio.Queue[_Conn] = asyncio.Queue()
    for c in conns:
        idle.put_nowait(c)
    counter = iter(range(10**9))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    measuring = False

    async def one() -> None:
        conn = await idle.get()
        t = time.perf_counter()
        try:
            status, _body = await conn.call(_request(spec, next(counter)))
        finally:
            idle.put_nowait(conn)
        if measuring:
            latencies.append((time.perf_counter() - t) * 1000)
            statuses[status] = statuses.get(status, 0) + 1

    async def closed_loop(until: float) -> None:
        async def worker() -> None:
            while time.perf_counter() < until:
                await one()
        await asyncio.gather(*(worker() for _ in range(spec.clients)))

    async def open_loop(until: float, rate: float) -> None:
        # One request every 1/rate s whatever the answers do; the latency includes any wait
        # for a free connection (queueing in the client counts against the server).
        tasks = []
        start = time.perf_counter()
        n = 0
        while True:
            due = start + n / rate
            if due >= until:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
            n += 1
        await asyncio.gather(*tasks)

    run = (lambda until: closed_loop(until)) if spec.rate is None else (
        lambda until: open_loop(until, spec.rate or 1.0))
    await run(time.perf_counter() + spec.warmup_s)
    measuring = True
    start = time.perf_counter()
    await run(start + spec.duration_s)
    wall = time.perf_counter() - start
    for c in conns:
        c.writer.close()
    ok = statuses.get(ok_status, 0)
    lat = sorted(latencies)
    return {"requests": float(len(lat)), "ok": float(ok), "errors": float(len(lat) - ok),
            "wall_s": wall, "per_s": ok / wall if wall else 0.0,
            "p50_ms": _pct(lat, 0.50), "p95_ms": _pct(lat, 0.95), "p99_ms": _pct(lat, 0.99),
            "max_ms": lat[-1] if lat else float("nan")}


def _load_in_process(spec: LoadSpec) -> dict[str, float]:
    return asyncio.run(_load(spec))


def run_load(spec: LoadSpec) -> dict[str, float]:
    """The load generator in a process of its own (spawned: nothing of ours shared)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_load_in_process, (spec,))


def _pct(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return float("nan")
    k = min(len(sorted_ms) - 1, max(0, round(q * (len(sorted_ms) - 1))))
    return sorted_ms[k]


# --- baselines --------------------------------------------------------------------------------
def pgbench(bindir: Path, dsn_args: list[str], dbname: str, *, clients: int, duration_s: float,
            select_only: bool, as_user: str | None) -> float:
    """pgbench's tps (without initial connection time) on ``dbname``."""
    cmd = [str(bindir / "pgbench"), *dsn_args, "-n", "-c", str(clients), "-j", "2", "-T",
           str(max(1, round(duration_s))), *(["-S"] if select_only else []), dbname]
    if as_user:
        cmd = ["runuser", "-u", as_user, "--", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    if m is None:
        raise SystemExit(f"pgbench printed no tps: {out[-500:]}")
    return float(m.group(1))


def sqlite_baseline(path: Path, duration_s: float) -> dict[str, float]:
    """Bare sqlite3 on a WAL file, one thread: payment-shaped write transactions/s and
    primary-key selects/s."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE acc (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")
    db.execute("CREATE TABLE pay (id INTEGER PRIMARY KEY, ref TEXT UNIQUE, acc INTEGER, "
               "amount INTEGER)")
    db.execute("CREATE TABLE led (id INTEGER PRIMARY KEY, acc INTEGER, amount INTEGER, "
               "after INTEGER)")
    db.executemany("INSERT INTO acc VALUES (?, 0)", [(i,) for i in range(200)])
    out: dict[str, float] = {}
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < duration_s:
        acc = n % 200
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO pay (ref, acc, amount) VALUES (?, ?, 1000)", (f"p{n}", acc))
        after = db.execute("UPDATE acc SET balance = balance + 1000 WHERE id = ? "
                           "RETURNING balance", (acc,)).fetchone()[0]
        db.execute("INSERT INTO led (acc, amount, after) VALUES (?, 1000, ?)", (acc, after))
        db.execute("COMMIT")
        n += 1
    out["write_tx_per_s"] = n / (time.perf_counter() - start)
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < duration_s:
        db.execute("BEGIN")
        db.execute("SELECT balance FROM acc WHERE id = ?", (n % 200,)).fetchone()
        db.execute("COMMIT")
        n += 1
    out["select_tx_per_s"] = n / (time.perf_counter() - start)
    db.close()
    return out


# --- one database -----------------------------------------------------------------------------
def run_backend(name: str, url: str, args: argparse.Namespace, workdir: Path,
                db_pid: int | None = None) -> dict[str, object]:
    """``db_pid``: the PostgreSQL postmaster, whose CPU (with its backends) is counted per
    request beside the server's."""
    seeded = seed(url, args.accounts)
    out: dict[str, object] = {"database": name, "server_workers": args.server_workers,
                              "clients": args.clients}
    with server(url, workdir / f"data-{name}", args.server_workers) as (port, pid):
        for kind in args.kinds:
            saturated: dict[str, float] = {}
            for paced in (False, True):
                rate = max(1.0, round(saturated["per_s"] / 2)) if paced else None
                cpu0 = cpu_s(pid)
                db0 = cpu_s(db_pid) if db_pid is not None else 0.0
                spec = LoadSpec(port=port, key=seeded.key, kind=kind, cards=seeded.cards,
                                accounts=seeded.accounts, clients=args.clients * (4 if paced else 1),
                                duration_s=args.duration_s, warmup_s=args.warmup_s,
                                tag=f"{name}-{kind}-{paced}-{os.urandom(4).hex()}", rate=rate)
                res = run_load(spec)
                res["server_cpu_ms"] = (cpu_s(pid) - cpu0) * 1000 / max(res["requests"], 1)
                if db_pid is not None:
                    res["db_cpu_ms"] = (cpu_s(db_pid) - db0) * 1000 / max(res["requests"], 1)
                res["load_average"] = load_average()  # type: ignore[assignment]
                if rate is not None:
                    res["offered_per_s"] = rate
                else:
                    saturated = res
                label = f"{kind}-half" if paced else kind
                out[label] = res
                print(f"{name:10s} {label:13s} {res['ok']:.0f}/{res['requests']:.0f} ok: "
                      f"{res['per_s']:7.0f}/s  p50 {res['p50_ms']:6.1f} ms  "
                      f"p99 {res['p99_ms']:6.1f} ms  max {res['max_ms']:6.1f} ms  "
                      f"server CPU {res['server_cpu_ms']:.2f} ms/req  "
                      + (f"PostgreSQL CPU {res['db_cpu_ms']:.2f} ms/req  " if db_pid else "") +
                      f"load {res['load_average']}", flush=True)
    return out


@dataclass
class Pg:
    url: str
    bindir: Path
    dsn_args: list[str]
    as_user: str | None
    create_db: str  # a database name pgbench may initialise
    postmaster_pid: int | None = None


@contextmanager
def throwaway_postgres() -> Iterator[Pg]:
    from tests.fixtures.net import free_tcp_port
    from tests.fixtures.postgres import PostgresServer, _find_bindir

    root = Path(tempfile.mkdtemp(prefix="cas-bench-pg-"))
    as_user = None
    if os.geteuid() == 0:
        import pwd

        entry = pwd.getpwnam("postgres")
        os.chown(root, entry.pw_uid, entry.pw_gid)
        as_user = "postgres"
    pg = PostgresServer(_find_bindir(), root, free_tcp_port(), as_user)
    pg.start()
    try:
        url = pg.create_database("cas_bench")
        bench_db = pg.create_database("pgbench")
        yield Pg(url=url, bindir=pg.bindir,
                 dsn_args=["-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres"],
                 as_user=as_user, create_db=bench_db.rsplit("/", 1)[1],
                 postmaster_pid=_postmaster_pid(pg.datadir))
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def _postmaster_pid(datadir: Path) -> int | None:
    try:
        return int((datadir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def pg_baseline(pg: Pg, args: argparse.Namespace) -> dict[str, float]:
    init = [str(pg.bindir / "pgbench"), *pg.dsn_args, "-i", "-q", "-s", "1", pg.create_db]
    subprocess.run(["runuser", "-u", pg.as_user, "--", *init] if pg.as_user else init,
                   capture_output=True, check=True)
    out = {}
    for select_only in (False, True):
        tps = pgbench(pg.bindir, pg.dsn_args, pg.create_db, clients=args.clients,
                      duration_s=args.duration_s, select_only=select_only,
                      as_user=pg.as_user)
        label = "pgbench_select_only_tps" if select_only else "pgbench_tpcb_tps"
        out[label] = tps
        print(f"postgresql {label}: {tps:.0f}  load {load_average()}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--server-workers", type=int, default=2, help="cas serve --workers")
    ap.add_argument("--clients", type=int, default=16, help="connections, closed loop "
                    "(4x as many paced)")
    ap.add_argument("--duration-s", type=float, default=15.0, help="measured time per scenario")
    ap.add_argument("--warmup-s", type=float, default=2.0)
    ap.add_argument("--accounts", type=int, default=200)
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--only", dest="kinds", action="append", choices=("payment", "balance"),
                    help="run only these scenarios (repeatable; default: both)")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip pgbench and bare sqlite3 (the same-run baselines)")
    args = ap.parse_args()
    args.kinds = tuple(args.kinds or ("payment", "balance"))
    results: list[dict[str, object]] = []
    work = Path(tempfile.mkdtemp(prefix="cas-bench-api-"))
    print(f"load average at start: {load_average()}  cores: {os.cpu_count()}", flush=True)
    try:
        if not args.no_pg:
            with throwaway_postgres() as pg:
                base = {} if args.no_baseline else pg_baseline(pg, args)
                res = run_backend("postgresql", pg.url, args, work, db_pid=pg.postmaster_pid)
                res["baseline"] = base
                results.append(res)
        if not args.no_sqlite:
            res = run_backend("sqlite", f"sqlite:///{work / 'cas.sqlite'}", args, work)
            if not args.no_baseline:
                base_sqlite = sqlite_baseline(work / "bare.sqlite", args.duration_s)
                print(f"sqlite     bare sqlite3: {base_sqlite['write_tx_per_s']:.0f} "
                      f"payment-shaped write tx/s, {base_sqlite['select_tx_per_s']:.0f} pk "
                      f"selects/s  load {load_average()}", flush=True)
                res["baseline"] = base_sqlite
            results.append(res)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
