"""The balance read's fast lane (``cas.web.fastlane``): for every request, the app with the
lane answers exactly what the plain FastAPI app answers (status, headers but ``Date`` and the
random ``X-Request-Id``, body bytes), and the happy path really is served by the lane."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import cas.web.models  # noqa: F401  (the web tables join the metadata)
from cas.billing import service
from cas.billing.clock import clock_now
from cas.store.engine import Store
from cas.web.app import create_app
from cas.web.domain import create_api_key, revoke_api_key
from cas.web.settings import WebSettings, tenant_of
from tests.integration.web.seed import seed_operator

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.slow

OPERATORS = ("atvplus", "ntvplus")
LANE_LOG = "cas.web.fastlane"


@dataclass
class Pair:
    lane: TestClient
    plain: TestClient
    keys: dict[str, str]
    accounts: dict[str, str]


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def pair(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    if request.param == "sqlite":
        root = tmp_path_factory.mktemp("web-fast-lane")
        urls = [f"sqlite:///{root / (op + '.sqlite')}" for op in OPERATORS]
    else:
        server: Any = request.getfixturevalue("postgres_server")
        urls = [server.create_database("cas_lane") for _ in OPERATORS]
    stores = [Store.open(u) for u in urls]
    seeded = {op: seed_operator(st, op) for op, st in zip(OPERATORS, stores, strict=True)}
    atv, ntv = seeded["atvplus"], seeded["ntvplus"]
    n1 = ntv.accounts["n1"].account_number
    # The suspension's fields set too (NTV Plus: "holiday").
    with ntv.store.transaction() as s:
        service.suspend(s, account_number=n1, at=clock_now(s))
    keys = {"atvplus": atv.api_key, "ntvplus": ntv.api_key}
    with atv.store.transaction() as s:
        revoked = create_api_key(s, operator="atvplus", label="revoked", wall_s=1_700_000_000)
        revoke_api_key(s, key_id=revoked.key_id, wall_s=1_700_000_001)
    keys["revoked"] = revoked.full
    accounts = {"a1": atv.accounts["a1"].account_number, "n1": n1}
    # worker_pid set: X-Worker-Pid is part of what is compared.
    settings = WebSettings(secret_key=os.urandom(32), worker_pid=4242)
    tenants = [tenant_of(st) for st in stores]
    with TestClient(create_app(tenants, settings), raise_server_exceptions=True) as lane, \
            TestClient(create_app(tenants, settings, fast_lane=False),
                       raise_server_exceptions=True) as plain:
        yield Pair(lane=lane, plain=plain, keys=keys, accounts=accounts)
    for st in stores:
        st.dispose()


Headers = dict[str, str] | list[tuple[str, str]]


def _answer(client: TestClient, method: str, path: str,
            headers: Headers) -> tuple[int, list[tuple[str, str]], bytes]:
    resp = client.request(method, path, headers=headers, follow_redirects=False)
    kept = [(k, v) for k, v in resp.headers.multi_items()
            if k.lower() not in ("date", "x-request-id")]
    assert resp.headers.get("x-request-id"), "every answer has its request id"
    return resp.status_code, kept, resp.content


def _cases(pair: Pair) -> dict[str, tuple[str, str, Headers]]:
    key = pair.keys["atvplus"]
    a1 = f"/api/v1/accounts/{pair.accounts['a1']}/balance"
    n1 = f"/api/v1/accounts/{pair.accounts['n1']}/balance"
    return {
        "happy": ("GET", a1, {"X-API-Key": key}),
        "happy, suspended": ("GET", n1, {"X-API-Key": pair.keys["ntvplus"]}),
        "happy, other language": ("GET", a1, {"X-API-Key": key, "Accept-Language": "ru"}),
        "missing key": ("GET", a1, {}),
        "missing key, other language": ("GET", a1, {"Accept-Language": "ru"}),
        "empty key": ("GET", a1, {"X-API-Key": ""}),
        "two keys": ("GET", a1, [("X-API-Key", key), ("X-API-Key", "nope")]),
        "malformed key": ("GET", a1, {"X-API-Key": "nope"}),
        "unknown key id": ("GET", a1, {"X-API-Key": "cas.atvplus.0123456789abcdef." + "0" * 64}),
        "wrong secret": ("GET", a1, {"X-API-Key": key[:-1] + ("0" if key[-1] != "0" else "1")}),
        "revoked key": ("GET", a1, {"X-API-Key": pair.keys["revoked"]}),
        "operator not served": ("GET", a1,
                                {"X-API-Key": "cas.nosuchop.0123456789abcdef." + "0" * 64}),
        "unknown account": ("GET", "/api/v1/accounts/99999999/balance", {"X-API-Key": key}),
        "unknown account, other language": ("GET", "/api/v1/accounts/99999999/balance",
                                            {"X-API-Key": key, "Accept-Language": "ru"}),
        "number too short": ("GET", "/api/v1/accounts/123/balance", {"X-API-Key": key}),
        "not a number": ("GET", "/api/v1/accounts/12a45/balance", {"X-API-Key": key}),
        "trailing slash": ("GET", a1 + "/", {"X-API-Key": key}),
        "query string": ("GET", a1 + "?at_s=5", {"X-API-Key": key}),
        "HEAD": ("HEAD", a1, {"X-API-Key": key}),
        "POST": ("POST", a1, {"X-API-Key": key}),
        "DELETE": ("DELETE", a1, {"X-API-Key": key}),
        "a body announced": ("GET", a1, {"X-API-Key": key, "Content-Length": "0"}),
        "another route": ("GET", f"/api/v1/accounts/{pair.accounts['a1']}", {"X-API-Key": key}),
    }


CASES = ("happy", "happy, suspended", "happy, other language", "missing key",
         "missing key, other language", "empty key", "two keys", "malformed key", "unknown key id",
         "wrong secret", "revoked key", "operator not served",
         "unknown account", "unknown account, other language", "number too short",
         "not a number", "trailing slash", "query string", "HEAD", "POST", "DELETE",
         "a body announced", "another route")


#: Answered 200 by FastAPI, not by the lane (requests it does not recognise as its own).
FASTAPI_OK = ("query string", "a body announced", "another route", "two keys")


@pytest.mark.parametrize("case", CASES)
def test_same_answer_with_and_without_the_lane(pair: Pair, case: str,
                                               caplog: pytest.LogCaptureFixture) -> None:
    method, path, headers = _cases(pair)[case]
    caplog.set_level(logging.DEBUG, logger=LANE_LOG)
    with_lane = _answer(pair.lane, method, path, headers)
    by_lane = [r for r in caplog.records if r.name == LANE_LOG]
    without = _answer(pair.plain, method, path, headers)
    assert with_lane == without
    if case.startswith("happy"):
        assert len(by_lane) == 1, "the lane served it"
        assert ("x-worker-pid", "4242") in with_lane[1]
        assert ("content-type", "application/json") in with_lane[1]
    else:
        assert not by_lane, "FastAPI answered it"
        assert with_lane[0] != 200 or case in FASTAPI_OK


def test_the_happy_path_is_served_by_the_lane(pair: Pair,
                                              caplog: pytest.LogCaptureFixture) -> None:
    key = pair.keys["atvplus"]
    a1 = pair.accounts["a1"]
    caplog.set_level(logging.DEBUG, logger=LANE_LOG)
    resp = pair.lane.get(f"/api/v1/accounts/{a1}/balance", headers={"X-API-Key": key})
    assert resp.status_code == 200 and resp.json()["account_number"] == a1
    served = [r for r in caplog.records if r.name == LANE_LOG]
    assert [r.getMessage() for r in served] == [f"fast lane: balance of account {a1}"]
    caplog.clear()
    # Refusals and the app without the lane never log it.
    pair.lane.get("/api/v1/accounts/99999999/balance", headers={"X-API-Key": key})
    pair.lane.get(f"/api/v1/accounts/{a1}/balance", headers={"X-API-Key": "nope"})
    pair.plain.get(f"/api/v1/accounts/{a1}/balance", headers={"X-API-Key": key})
    assert not [r for r in caplog.records if r.name == LANE_LOG]


def test_the_lane_follows_the_store(pair: Pair) -> None:
    """A balance changed in the store is read fresh (nothing cached by the lane)."""
    key = pair.keys["atvplus"]
    a1 = pair.accounts["a1"]
    path = f"/api/v1/accounts/{a1}/balance"
    before = pair.lane.get(path, headers={"X-API-Key": key}).json()["balance_minor"]
    paid = pair.plain.post("/api/v1/payments",
                           headers={"X-API-Key": key, "Idempotency-Key": os.urandom(8).hex()},
                           json={"by": "account", "ref": a1, "amount_minor": 250})
    assert paid.status_code in (200, 201), paid.text
    after = pair.lane.get(path, headers={"X-API-Key": key})
    assert after.json()["balance_minor"] == before + 250
    assert after.content == pair.plain.get(path, headers={"X-API-Key": key}).content
