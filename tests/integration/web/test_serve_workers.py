"""``cas serve all --workers 2`` as real processes on 127.0.0.1, on a SQLite file and on
PostgreSQL: the two workers share one rate limit and one idempotency key, because both live
in the store.  Every request goes on a new connection, so the kernel spreads them over the
workers; the answers' ``X-Worker-Pid`` shows that both were reached."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from cas.store.engine import Store
from cas.store.models import LedgerEntry, Payment
from cas.web.workers import WORKER_HEADER
from tests.fixtures.net import free_tcp_port
from tests.fixtures.postgres import PostgresServer
from tests.integration.web.seed import SeededStore, seed_operator
from tests.integration.web.test_cli_serve import _main_env, _serve, _stop

pytestmark = pytest.mark.slow

LOOKUP_LIMIT = 20  # WebSettings.lookup_per_ip, the default `cas serve` runs with


@dataclass
class Served:
    base: str
    url: str
    seeded: SeededStore


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def two_workers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'cas.sqlite'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database("cas_workers")
    store = Store.open(url)
    seeded = seed_operator(store, "mts")
    store.dispose()
    port = free_tcp_port()
    proc: subprocess.Popen[bytes] = _serve(
        ["--data-dir", str(tmp_path / "data"), "serve", "all", "--host", "127.0.0.1",
         "--db-url", url, "--workers", "2"], port, _main_env(CAS_WEB_SECRET="cd" * 32))
    try:
        yield Served(base=f"http://127.0.0.1:{port}", url=url, seeded=seeded)
    finally:
        _stop(proc)


def _fresh_connections(base: str) -> httpx.Client:
    """A client that opens a new connection for every request (none kept alive)."""
    return httpx.Client(base_url=base, timeout=30,
                        limits=httpx.Limits(max_keepalive_connections=0))


def test_two_workers_share_one_rate_limit(two_workers: Served) -> None:
    with _fresh_connections(two_workers.base) as client:
        page = client.get("/mts/lookup")
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        answers = [client.post("/mts/lookup",
                               data={"chip_id": "00000001", "card": "1", "csrf_token": token})
                   for _ in range(LOOKUP_LIMIT + 5)]
    codes = [a.status_code for a in answers]
    workers = {a.headers[WORKER_HEADER] for a in answers[:LOOKUP_LIMIT]}
    assert len(workers) == 2, f"the first {LOOKUP_LIMIT} lookups all reached one worker"
    # One count for both workers: with a count per process, 2 x 20 would pass.
    assert codes[:LOOKUP_LIMIT] == [200] * LOOKUP_LIMIT
    assert set(codes[LOOKUP_LIMIT:]) == {429}
    assert {a.headers[WORKER_HEADER] for a in answers[LOOKUP_LIMIT:]} <= workers


def _counts(url: str) -> tuple[int, int]:
    store = Store.open(url, create=False)
    try:
        with store.reader() as s:
            payments = s.execute(select(func.count()).select_from(Payment)).scalar_one()
            ledger = s.execute(select(func.count()).select_from(LedgerEntry)
                               .where(LedgerEntry.kind == "payment")).scalar_one()
    finally:
        store.dispose()
    return int(payments), int(ledger)


def test_a_retried_payment_sent_to_both_workers_books_once(two_workers: Served) -> None:
    m1 = two_workers.seeded.accounts["m1"]
    payments0, ledger0 = _counts(two_workers.url)
    headers = {"X-API-Key": two_workers.seeded.api_key}
    body = {"by": "card", "ref": str(m1.card), "amount_minor": 5000}
    balances = []
    both_workers_rounds = 0
    with _fresh_connections(two_workers.base) as client:
        def send(key: str) -> httpx.Response:
            return client.post("/api/v1/payments", json=body,
                               headers={**headers, "Idempotency-Key": key})

        rounds = 0
        while both_workers_rounds < 2 and rounds < 12:
            rounds += 1
            key = f"retry-{rounds}"
            # The same request, six times at once on six connections: the retries race the
            # first one in the other worker, and come again after it committed.
            with ThreadPoolExecutor(max_workers=6) as pool:
                answers = list(pool.map(send, [key] * 6))
            answers.append(send(key))
            assert {a.status_code for a in answers} == {201}, [a.text for a in answers]
            assert len({a.json()["payment_id"] for a in answers}) == 1
            assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 6
            balances.append(answers[0].json()["balance_minor"])
            if len({a.headers[WORKER_HEADER] for a in answers}) == 2:
                both_workers_rounds += 1
    assert both_workers_rounds == 2, "the retries never reached the other worker"
    payments, ledger = _counts(two_workers.url)
    # One payment and one ledger row per key, whichever worker answered.
    assert (payments - payments0, ledger - ledger0) == (rounds, rounds)
    assert [b - balances[0] for b in balances] == [5000 * i for i in range(rounds)]
