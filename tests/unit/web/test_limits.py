"""``cas.web.limits.BodyLimit`` in front of small ASGI apps: the application never sees more
than the limit plus one chunk, and the answer is 413 whatever the application makes of the
cut-off body."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from cas.web.limits import BodyLimit

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

LIMIT = 1000


class Body(BaseModel):
    text: str


class Recorder:
    """An ASGI app that reads the whole body, then answers 200 with its length."""

    def __init__(self) -> None:
        self.seen = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        more = True
        while more:
            message = await receive()
            self.seen += len(message.get("body", b""))
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(self.seen).encode()})


def _chunks(n: int, size: int = 300) -> Iterator[bytes]:
    for _ in range(n):
        yield b"x" * size


def test_under_and_at_the_limit_pass() -> None:
    app = Recorder()
    with TestClient(BodyLimit(app, limit_bytes=LIMIT)) as client:
        assert client.post("/", content=b"x" * LIMIT).text == str(LIMIT)
        app.seen = 0
        assert client.post("/", content=_chunks(3)).text == "900"


def test_declared_length_above_the_limit_never_reaches_the_app() -> None:
    app = Recorder()
    with TestClient(BodyLimit(app, limit_bytes=LIMIT)) as client:
        resp = client.post("/", content=b"x" * (LIMIT + 1))
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert app.seen == 0


def test_chunked_body_is_cut_at_the_chunk_that_passes_the_limit() -> None:
    app = Recorder()
    with TestClient(BodyLimit(app, limit_bytes=LIMIT)) as client:
        resp = client.post("/", content=_chunks(100))  # 30,000 bytes, no Content-Length
    assert resp.status_code == 413
    assert app.seen < LIMIT  # the chunk crossing the limit was never handed on


def test_a_framework_turning_the_cut_into_400_still_answers_413() -> None:
    api = FastAPI()

    @api.post("/")
    def echo(body: Body) -> dict[str, int]:
        return {"n": len(body.text)}

    with TestClient(BodyLimit(api, limit_bytes=LIMIT)) as client:
        ok = client.post("/", json={"text": "a" * 10})
        assert ok.status_code == 200 and ok.json() == {"n": 10}
        resp = client.post("/", content=(b'{"text": "' + b"a" * 400 + b'"}' if i == 4 else
                                         b" " * 300 for i in range(5)),
                           headers={"Content-Type": "application/json"})
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError):
        BodyLimit(Recorder(), limit_bytes=-1)
