"""A small form-filling helper over Starlette's TestClient for portal tests without a browser
(the browser tests are in ``test_portal_browser.py``)."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cas.store.engine import Store
from cas.web.app import create_app
from cas.web.settings import RateLimit, WebSettings, tenant_of
from tests.integration.web.seed import SeededStore, seed_operator

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


class FakeClock:
    """Wall clock for sessions and rate limits that a test moves by hand."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class PortalEnv:
    dialect: str
    app: Any
    seeded: dict[str, SeededStore]
    clock: FakeClock
    settings: WebSettings
    clients: list[TestClient] = field(default_factory=list)

    def client(self, **kwargs: Any) -> Portal:
        tc = TestClient(self.app, raise_server_exceptions=True, **kwargs)
        self.clients.append(tc)
        return Portal(tc)

    def store(self, op: str) -> Store:
        return self.seeded[op].store


class Portal:
    """One browser-like client: keeps cookies, finds the CSRF token on pages."""

    def __init__(self, tc: TestClient) -> None:
        self.tc = tc
        self.last: Any = None

    def get(self, path: str, **kw: Any) -> Any:
        self.last = self.tc.get(path, **kw)
        return self.last

    def csrf(self, path: str) -> str:
        page = self.get(path)
        m = _CSRF.search(page.text)
        assert m is not None, f"no CSRF token on {path}"
        return m.group(1)

    def post(self, path: str, data: dict[str, str], *, token_from: str | None = None,
             token: str | None = None, follow: bool = True) -> Any:
        form = dict(data)
        if token is not None:
            form["csrf_token"] = token
        elif token_from is not None:
            form["csrf_token"] = self.csrf(token_from)
        self.last = self.tc.post(path, data=form, follow_redirects=follow)
        return self.last

    def login(self, op: str, identifier: str, password: str) -> Any:
        return self.post(f"/{op}/login", {"identifier": identifier, "password": password},
                         token_from=f"/{op}/login")


def make_portal_env(dialect: str, urls: Sequence[str], operators: Sequence[str], *,
                    secure_cookies: bool = False,
                    limits: dict[str, RateLimit] | None = None) -> tuple[PortalEnv, Callable[[],
                                                                                         None]]:
    stores = [Store.open(u) for u in urls]
    seeded = {op: seed_operator(st, op) for op, st in zip(operators, stores, strict=True)}
    clock = FakeClock()
    settings = WebSettings(secret_key=os.urandom(32), secure_cookies=secure_cookies,
                           wall_clock=clock, **(limits or {}))
    app = create_app([tenant_of(st) for st in stores], settings)
    env = PortalEnv(dialect=dialect, app=app, seeded=seeded, clock=clock, settings=settings)

    def close() -> None:
        for c in env.clients:
            c.close()
        for st in stores:
            st.dispose()

    return env, close


def iter_routes(app: Any) -> Iterator[tuple[str, str]]:
    """(method, path) of every route, also inside included routers."""
    for route in app.routes:
        router = getattr(route, "original_router", None)
        if router is not None:
            yield from iter_routes(router)
            continue
        for method in sorted(getattr(route, "methods", None) or ()):
            yield method, getattr(route, "path", "")


def iter_post_routes(app: Any) -> Iterator[str]:
    for method, path in iter_routes(app):
        if method == "POST" and path.startswith("/{op}"):
            yield path
