"""The operator API against real stores: three operators (ATV+, MTS, TV+), each in its own
store, served by one app in-process (httpx via Starlette's TestClient), on SQLite and on
PostgreSQL (``tests/fixtures/postgres.py``)."""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select

import cas.web.models  # noqa: F401  (the web tables join the metadata)
from cas.billing import accounts as acc_mod
from cas.billing import service
from cas.billing.clock import clock_now
from cas.store.engine import Store
from cas.store.models import Base
from cas.store.repo import register_card
from cas.web.app import create_app
from cas.web.settings import RateLimit, WebSettings, tenant_of
from tests.integration.web.portal_client import PortalEnv, make_portal_env
from tests.integration.web.seed import SeedAccount, SeededStore, seed_operator

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

API_OPERATORS = ("atvplus", "mts", "tvplus")
_serials = itertools.count(3_900_000_000)


@dataclass
class WebEnv:
    dialect: str
    client: TestClient
    seeded: dict[str, SeededStore]
    settings: WebSettings

    def headers(self, op: str = "atvplus", **extra: str) -> dict[str, str]:
        return {"X-API-Key": self.seeded[op].api_key, **extra}

    def store(self, op: str = "atvplus") -> Store:
        return self.seeded[op].store

    def counts(self) -> dict[str, int]:
        """Rows per table in every store: a refused request must leave these unchanged."""
        out: dict[str, int] = {}
        for op, seeded in self.seeded.items():
            with seeded.store.reader() as s:
                for table in Base.metadata.sorted_tables:
                    out[f"{op}.{table.name}"] = int(
                        s.execute(select(func.count()).select_from(table)).scalar_one())
        return out

    def new_account(self, op: str = "atvplus", *, balance_minor: int = 0,
                    package: str | None = None, phone: str | None = None) -> SeedAccount:
        """A fresh account with one card (tests that write use their own accounts)."""
        serial = next(_serials)
        with self.store(op).transaction() as s:
            at = clock_now(s)
            view = acc_mod.create_account(s, surname="Test", name="Account", at=at,
                                          phone=phone or f"+7900{serial % 10_000_000:07d}")
            register_card(s, serial, at=at)
            acc_mod.link_card(s, serial=serial, account_number=view.account_number, at=at)
            if balance_minor:
                service.adjust_balance(s, account_number=view.account_number,
                                       amount_minor=balance_minor, reason="test", at=at)
            if package is not None:
                service.subscribe(s, account_number=view.account_number, package=package,
                                  at=at)
        return SeedAccount(operator=op, account_number=view.account_number,
                           phone=view.phone or "", password=None, card=serial)


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def web_env(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebEnv]:
    if request.param == "sqlite":
        root = tmp_path_factory.mktemp("web-api")
        urls = [f"sqlite:///{root / (op + '.sqlite')}" for op in API_OPERATORS]
    else:
        server: Any = request.getfixturevalue("postgres_server")
        urls = [server.create_database("cas_web") for _ in API_OPERATORS]
    stores = [Store.open(u) for u in urls]
    seeded = {op: seed_operator(st, op) for op, st in zip(API_OPERATORS, stores, strict=True)}
    settings = WebSettings(secret_key=os.urandom(32))
    app = create_app([tenant_of(st) for st in stores], settings)
    with TestClient(app, raise_server_exceptions=True) as client:
        yield WebEnv(dialect=request.param, client=client, seeded=seeded, settings=settings)
    for st in stores:
        st.dispose()


@contextmanager
def nothing_written(env: WebEnv) -> Iterator[None]:
    before = env.counts()
    yield
    after = env.counts()
    changed = {k: (before[k], after[k]) for k in before if before[k] != after.get(k)}
    assert not changed, f"a refused request wrote rows: {changed}"


def assert_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert body["error"]["message"]
    return dict(body["error"])


# --- the portal without a browser -------------------------------------------------------------
PORTAL_OPERATORS = ("atvplus", "mts", "uzonline")
PORTAL_LIMITS = {
    "login_per_account": RateLimit(limit=5, window_s=900),
    "login_per_ip": RateLimit(limit=12, window_s=900),
    "sms_per_account": RateLimit(limit=3, window_s=900),
    "sms_per_ip": RateLimit(limit=8, window_s=900),
    "lookup_per_ip": RateLimit(limit=6, window_s=900),
}


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def portal_env_module(request: pytest.FixtureRequest,
                      tmp_path_factory: pytest.TempPathFactory) -> Iterator[PortalEnv]:
    if request.param == "sqlite":
        root = tmp_path_factory.mktemp("web-portal")
        urls = [f"sqlite:///{root / (op + '.sqlite')}" for op in PORTAL_OPERATORS]
    else:
        server: Any = request.getfixturevalue("postgres_server")
        urls = [server.create_database("cas_portal") for _ in PORTAL_OPERATORS]
    env, close = make_portal_env(request.param, urls, PORTAL_OPERATORS, limits=PORTAL_LIMITS)
    try:
        yield env
    finally:
        close()


@pytest.fixture
def portal_env(portal_env_module: PortalEnv) -> PortalEnv:
    """The module's portal with every rate-limit window and session over (+1 hour)."""
    portal_env_module.clock.advance(3600)
    return portal_env_module
