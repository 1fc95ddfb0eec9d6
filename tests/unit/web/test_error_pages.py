"""The portal's 404 and 500 pages are friendly and in the visitor's language; an API path
keeps its JSON error."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cas.billing.setup import use_profile
from cas.store.engine import Store
from cas.web.app import create_app
from cas.web.settings import WebSettings, tenant_of

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    store = Store.open(f"sqlite:///{tmp_path / 'x.sqlite'}")
    with store.transaction() as s:
        use_profile(s, "tvplus", clock_start=datetime(2026, 3, 2, tzinfo=UTC))
    app = create_app([tenant_of(store)], WebSettings(secret_key=b"k" * 32,
                                                     secure_cookies=False))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("internal detail that must not show")

    try:
        yield TestClient(app, raise_server_exceptions=False)
    finally:
        store.dispose()


@pytest.mark.parametrize(("lang", "title", "home"), [
    ("en", "This page does not exist", "Back to the start page"),
    ("ru", "Такой страницы нет", "На главную"),
])
def test_not_found_page(client: TestClient, lang: str, title: str, home: str) -> None:
    answer = client.get(f"/no/such/page?lang={lang}")
    assert answer.status_code == 404
    assert f"<h1>{title}</h1>" in answer.text and home in answer.text
    assert f'<html lang="{lang}">' in answer.text


@pytest.mark.parametrize(("lang", "title"), [
    ("en", "Something went wrong on our side"),
    ("ru", "Что-то пошло не так на нашей стороне"),
])
def test_internal_error_page(client: TestClient, lang: str, title: str) -> None:
    answer = client.get("/boom", headers={"Accept-Language": lang})
    assert answer.status_code == 500
    assert f"<h1>{title}</h1>" in answer.text
    assert "internal detail" not in answer.text and "Traceback" not in answer.text
    # the request id the page gives is the one in the header, for the operator's support
    assert answer.headers["X-Request-Id"] in answer.text


def test_api_paths_keep_json_errors(client: TestClient) -> None:
    answer = client.get("/api/v1/no-such-thing")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "NOT_FOUND"


def test_api_docs_page_uses_only_our_assets(client: TestClient) -> None:
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    assert "https://" not in page.text and "http://" not in page.text
    assert "<script>" not in page.text  # no inline script: the start-up script is a file
    assert client.get("/api/v1/docs/assets/swagger-ui-bundle.js").status_code == 200
    assert "openapi.json" in client.get("/api/v1/docs/init.js").text
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
