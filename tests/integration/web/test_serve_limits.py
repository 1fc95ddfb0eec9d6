"""``cas serve`` as a real process on 127.0.0.1: the request-body limit (413 before the body is
read whole, also for a chunked body that never ends) and the client address behind proxies
(``X-Forwarded-For`` believed only from ``--trusted-proxies``)."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cas.store.engine import Store
from tests.fixtures.net import free_tcp_port
from tests.integration.web.seed import SeededStore, seed_operator
from tests.integration.web.test_cli_serve import _main_env, _serve, _stop

pytestmark = pytest.mark.slow


class Served:
    def __init__(self, port: int, seeded: SeededStore) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.seeded = seeded


def _seed(tmp_path: Path, operator: str) -> tuple[Path, SeededStore]:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    store = Store.open(f"sqlite:///{data / 'cas.sqlite'}")
    seeded = seed_operator(store, operator)
    store.dispose()
    return data, seeded


def _start(tmp_path: Path, operator: str, *extra: str,
           env: dict[str, str] | None = None) -> Iterator[Served]:
    data, seeded = _seed(tmp_path, operator)
    port = free_tcp_port()
    proc: subprocess.Popen[bytes] = _serve(
        ["--data-dir", str(data), "serve", "all", "--host", "127.0.0.1", *extra], port,
        _main_env(**(env or {})))
    try:
        yield Served(port, seeded)
    finally:
        _stop(proc)


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Served]:
    yield from _start(tmp_path, "atvplus", "--max-body-bytes", "65536")


# --- the body limit ---------------------------------------------------------------------------
def _read_answer(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _length(data: bytes) -> int:
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    for line in head.split("\r\n"):
        if line.startswith("content-length:"):
            return int(line.split(":", 1)[1])
    return 0


def _status_and_body(answer: bytes) -> tuple[int, dict[str, Any], str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body), head.decode("latin-1").lower()


def test_declared_length_above_the_limit_is_413_before_the_body(limited: Served) -> None:
    with socket.create_connection(("127.0.0.1", limited.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/accounts HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"X-API-Key: " + limited.seeded.api_key.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 150000000\r\n\r\n{")
        # Not one more byte of the 150 MB is sent: the answer must come anyway.
        status, body, head = _status_and_body(_read_answer(sock))
    assert status == 413
    assert body["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert "65536" in body["error"]["message"]
    assert "x-request-id:" in head


def test_chunked_body_without_end_is_cut_at_the_limit(limited: Served) -> None:
    chunk = b"x" * 16384
    with socket.create_connection(("127.0.0.1", limited.port), timeout=30) as sock:
        sock.sendall(
            b"POST /api/v1/accounts HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"X-API-Key: " + limited.seeded.api_key.encode() + b"\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        # A body that never ends (no final 0-chunk): send a little past the limit, then
        # nothing more.  Only a server that counts the body as it arrives can answer now;
        # one that waits for the end of the body never does (the read times out).
        for _ in range(65536 // len(chunk) + 2):
            sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        status, body, _head = _status_and_body(_read_answer(sock))
    assert status == 413 and body["error"]["code"] == "PAYLOAD_TOO_LARGE"


def test_bodies_under_the_limit_are_served(limited: Served) -> None:
    h = {"X-API-Key": limited.seeded.api_key}
    made = httpx.post(f"{limited.base}/api/v1/accounts", headers=h, timeout=10,
                      json={"surname": "Ivanov", "name": "Ivan", "patronymic": "I" * 100})
    assert made.status_code == 201, made.text

    def chunks() -> Iterator[bytes]:
        yield b'{"surname": "Petrov", '
        yield b'"name": "Pyotr"}'

    streamed = httpx.post(f"{limited.base}/api/v1/accounts", timeout=10,
                          headers={**h, "Content-Type": "application/json"}, content=chunks())
    assert streamed.status_code == 201, streamed.text
    big = httpx.post(f"{limited.base}/api/v1/accounts", headers=h, timeout=10,
                     json={"surname": "x" * 70000, "name": "y"})
    assert big.status_code == 413 and big.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    form = httpx.post(f"{limited.base}/atvplus/lookup", timeout=10,
                      data={"chip_id": "1", "card": "1" * 70000})
    assert form.status_code == 413


def test_the_default_limit_is_one_mebibyte(tmp_path: Path) -> None:
    for served in _start(tmp_path, "atvplus"):
        h = {"X-API-Key": served.seeded.api_key, "Content-Type": "application/json"}
        body = json.dumps({"surname": "x", "name": "y", "patronymic": "p" * (1 << 20)})
        resp = httpx.post(f"{served.base}/api/v1/accounts", headers=h, content=body,
                          timeout=10)
        assert resp.status_code == 413
        assert "1048576" in resp.json()["error"]["message"]


# --- the client address behind proxies ---------------------------------------------------------
LOOKUP_LIMIT = 20  # WebSettings.lookup_per_ip, the default `cas serve` runs with


def _lookups(served: Served, forwarded: list[str]) -> list[int]:
    """One failed Chip ID + card lookup per X-Forwarded-For value; the status codes."""
    with httpx.Client(base_url=served.base, timeout=10) as client:
        page = client.get("/mts/lookup")
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        return [client.post("/mts/lookup", headers={"X-Forwarded-For": addr},
                            data={"chip_id": "00000001", "card": "1", "csrf_token": token}
                            ).status_code for addr in forwarded]


def test_rotating_x_forwarded_for_does_not_escape_the_limit(tmp_path: Path) -> None:
    # Was: uvicorn believed X-Forwarded-For from 127.0.0.1 (its default), so 40 of 40
    # lookups with rotating addresses got 200.
    for served in _start(tmp_path, "mts"):
        codes = _lookups(served, [f"203.0.113.{i}" for i in range(LOOKUP_LIMIT + 5)])
        assert codes[:LOOKUP_LIMIT] == [200] * LOOKUP_LIMIT
        assert set(codes[LOOKUP_LIMIT:]) == {429}


def test_a_trusted_proxy_names_the_client(tmp_path: Path) -> None:
    for served in _start(tmp_path, "mts", env={"CAS_TRUSTED_PROXIES": "127.0.0.1/32, ::1"}):
        # Behind the trusted proxy every address is its own client ...
        codes = _lookups(served, [f"203.0.113.{i}" for i in range(LOOKUP_LIMIT + 5)])
        assert set(codes) == {200}
        # ... and one client is counted wherever its requests come from (a hop added by a
        # trusted proxy in front of this one is skipped).
        codes = _lookups(served, ["198.51.100.7"] * (LOOKUP_LIMIT - 3)
                         + ["198.51.100.7, 127.0.0.1"] * 5)
        assert codes[:LOOKUP_LIMIT] == [200] * LOOKUP_LIMIT
        assert set(codes[LOOKUP_LIMIT:]) == {429}


def test_a_bad_trusted_proxy_is_a_usage_error(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cas.cli.main import cli

    data, _ = _seed(tmp_path, "mts")
    result = CliRunner().invoke(cli, ["--data-dir", str(data), "serve", "api",
                                      "--trusted-proxies", "proxy.example"])
    assert result.exit_code == 2
    assert "trusted proxy 'proxy.example'" in result.output
