"""Payment-to-OPEN on the live head-end: from the API request to the box's OPEN event.

What is measured (``benchmarks/live.md``): the real processes of a lab, on 127.0.0.1 —
``cas serve all`` (operator API, uvicorn), ``cas headend run`` (live playout over UDP, EMM
carousel polling the store's rights journal) and ``stb scan udp://…`` (the box, its card
in process) — and one subscriber whose channel is LOCKED by a financial block before each
payment (the store's clock is run 31 days on with no money: the renewal blocks the
account; then the bench waits two crypto-periods, so that the ECMs on air carry the new
date, as they would where the clock runs normally).  For each payment:

    t0 = wall clock just before ``POST /api/v1/payments`` (real HTTP)
    t1 = the ``time`` of the box's ``OPEN`` event line for the channel (the box's clock)

and the latency is ``t1 - t0``: the API's transaction, the carousel's next poll (``[emm]
poll_interval_s``, default 0.5 s), the EMM sealed, stored and aired in the next EMM slot,
the box's EMM filter, the card applying it, the box re-sending the current ECM, the card's
CWs, the verdict.  Same machine, so the two clocks are one.

Run: ``.venv/bin/python benchmarks/bench_live_e2e.py`` (``--payments 50``; ``--postgres``
for a throw-away PostgreSQL server or ``--db-url URL``; ``--poll-interval-s``,
``--crypto-period-s``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from cas.billing.clock import advance_clock  # noqa: E402
from tests.integration.live.boxproc import StbProcess, port_of  # noqa: E402
from tests.integration.live.world import (  # noqa: E402
    CHANNEL,
    PACKAGE,
    PRICE_MINOR,
    build_world,
    headend_config,
    start_headend,
    start_web,
)

GOAL_P99_S = 2.0
TIMEOUT_S = 120.0


def _event_s(event: dict[str, object]) -> float:
    return datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00")).timestamp()


def _pct(values: list[float], p: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--payments", type=int, default=50)
    ap.add_argument("--db-url", help="PostgreSQL (an empty database); default SQLite")
    ap.add_argument("--postgres", action="store_true",
                    help="start a throw-away PostgreSQL server for the run")
    ap.add_argument("--poll-interval-s", type=float, default=0.5)
    ap.add_argument("--crypto-period-s", type=float, default=10.0)
    ap.add_argument("--keep", action="store_true", help="keep the lab directory")
    args = ap.parse_args()
    if args.postgres:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from bench_api import throwaway_postgres

        with throwaway_postgres() as pg:
            url = pg.url
            args.db_url = url
            run(args)
    else:
        run(args)


def run(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-live-e2e-"))
    world = build_world(root, db_url=args.db_url)
    box = StbProcess.start("scan", "udp://127.0.0.1:0", world.box, cwd=root)
    port = port_of(box.started())
    config = headend_config(world, port, crypto_period_s=args.crypto_period_s,
                            poll_interval_s=args.poll_interval_s)
    headend = start_headend(world, config)
    web, base = start_web(world)
    latencies: list[float] = []
    requests: list[float] = []
    try:
        last = box.channel_event(CHANNEL, reason="NOT_SUBSCRIBED", timeout_s=TIMEOUT_S)
        client = httpx.Client(base_url=base, timeout=30,
                              headers={"X-API-Key": world.api_key})
        for i in range(args.payments):
            if i:
                with world.store.transaction() as s:
                    advance_clock(s, days=31)
                last = box.channel_event(CHANNEL, reason="FINANCIAL_BLOCK", after=last,
                                         timeout_s=TIMEOUT_S)
                # The jump is a simulation artefact: let the ECMs on air catch up with the
                # new date (two crypto-periods), as they would where time runs normally.
                time.sleep(2 * args.crypto_period_s + 1.0)
            body: dict[str, object] = {"by": "card", "ref": str(world.serial),
                                       "amount_minor": PRICE_MINOR}
            if i == 0:
                body["package"] = PACKAGE
            t0 = time.time()
            r = client.post("/api/v1/payments", json=body,
                            headers={"Idempotency-Key": f"bench-{i}"})
            requests.append(time.time() - t0)
            if r.status_code != 201:
                raise SystemExit(f"payment {i}: {r.status_code} {r.text}")
            last = box.channel_event(CHANNEL, state="OPEN", after=last, timeout_s=TIMEOUT_S)
            latencies.append(_event_s(last) - t0)
            print(f"  payment {i + 1:3d}: {latencies[-1] * 1000:7.0f} ms", file=sys.stderr)
        client.close()
    finally:
        web.stop(signal.SIGINT)
        headend.stop()
        report = box.stop(signal.SIGINT) if box.proc.poll() is None else None
        box.kill()
        world.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    p50, p99 = _pct(latencies, 50), _pct(latencies, 99)
    dialect = "PostgreSQL" if args.db_url else "SQLite"
    print(f"payment-to-OPEN, {len(latencies)} payments, {dialect}, poll {args.poll_interval_s} s")
    print("| store | payments | p50 | p99 | max | API request p50 | goal p99 < 2 s |")
    print("|---|---:|---:|---:|---:|---:|---|")
    print(f"| {dialect} | {len(latencies)} | {p50 * 1000:.0f} ms | {p99 * 1000:.0f} ms | "
          f"{max(latencies) * 1000:.0f} ms | {statistics.median(requests) * 1000:.0f} ms | "
          f"{'✔' if p99 < GOAL_P99_S else '✘'} |")
    print(json.dumps({"store": dialect, "payments": len(latencies), "p50_s": round(p50, 3),
                      "p99_s": round(p99, 3), "max_s": round(max(latencies), 3),
                      "cc_errors": report["stream"]["ts_cc_errors"] if report else None}))


if __name__ == "__main__":
    main()
