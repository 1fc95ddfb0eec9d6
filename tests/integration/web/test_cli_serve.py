"""``cas serve apikey create|list|revoke`` through click's CliRunner, and ``cas serve all`` as a
real process on 127.0.0.1 — on the data dir's SQLite store and on PostgreSQL via --db-url."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from cas.cli.main import cli
from cas.store.engine import Store
from tests.fixtures.net import free_tcp_port
from tests.integration.web.seed import seed_operator

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]


def _seed_data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    store = Store.open(f"sqlite:///{data / 'cas.sqlite'}")
    seed_operator(store, "atvplus")
    store.dispose()
    return data


def test_apikey_create_list_revoke(tmp_path: Path) -> None:
    data = _seed_data_dir(tmp_path)
    runner = CliRunner()
    made = runner.invoke(cli, ["--json", "--data-dir", str(data), "serve", "apikey", "create",
                               "--operator", "atvplus", "--label", "billing"])
    assert made.exit_code == 0, made.output
    key = json.loads(made.output)
    assert key["api_key"].startswith(f"cas.atvplus.{key['key_id']}.")
    human = runner.invoke(cli, ["--data-dir", str(data), "serve", "apikey", "create",
                                "--operator", "atvplus"])
    assert human.exit_code == 0 and "shown only now" in human.output
    listed = runner.invoke(cli, ["--json", "--data-dir", str(data), "serve", "apikey", "list"])
    rows = json.loads(listed.output)
    assert key["key_id"] in [r["key_id"] for r in rows]
    assert key["api_key"].split(".")[3] not in listed.output  # never the secret
    wrong = runner.invoke(cli, ["--data-dir", str(data), "serve", "apikey", "create",
                                "--operator", "mts"])
    assert wrong.exit_code == 2 and "runs operator 'atvplus'" in wrong.output
    revoked = runner.invoke(cli, ["--data-dir", str(data), "serve", "apikey", "revoke",
                                  key["key_id"]])
    assert revoked.exit_code == 0
    again = runner.invoke(cli, ["--data-dir", str(data), "serve", "apikey", "revoke",
                                key["key_id"]])
    assert again.exit_code != 0 and "already revoked" in again.output
    rows = json.loads(runner.invoke(cli, ["--json", "--data-dir", str(data), "serve", "apikey",
                                          "list"]).output)
    assert next(r for r in rows if r["key_id"] == key["key_id"])["revoked_at_s"] is not None


def _serve(args: list[str], port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    cas = str(Path(sys.executable).parent / "cas")  # the installed console script
    proc = subprocess.Popen([cas, *args, "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"cas serve exited early: {out[-2000:]}", pytrace=False)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail("cas serve did not listen on 127.0.0.1", pytrace=False)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _check_running(port: int, key: str) -> None:
    base = f"http://127.0.0.1:{port}"
    op = httpx.get(f"{base}/api/v1/operator", headers={"X-API-Key": key}, timeout=10)
    assert op.status_code == 200 and op.json()["key"] == "atvplus"
    assert httpx.get(f"{base}/api/v1/openapi.json", timeout=10).json()["openapi"].startswith("3.")
    login = httpx.get(f"{base}/atvplus/login", timeout=10)
    assert login.status_code == 200 and "csrf_token" in login.text


def _main_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAS_")}
    env.update(extra)
    return env


def test_serve_all_on_the_data_dir_sqlite_store(tmp_path: Path) -> None:
    data = _seed_data_dir(tmp_path)
    store = Store.open(f"sqlite:///{data / 'cas.sqlite'}")
    with store.reader() as s:
        from cas.web.models import WebApiKey

        assert s.query(WebApiKey).count() == 1
    store.dispose()
    made = CliRunner().invoke(cli, ["--json", "--data-dir", str(data), "serve", "apikey",
                                    "create", "--operator", "atvplus"])
    key = json.loads(made.output)["api_key"]
    port = free_tcp_port()
    proc = _serve(["--data-dir", str(data), "serve", "all", "--host", "127.0.0.1"], port,
                  _main_env())
    try:
        _check_running(port, key)
    finally:
        _stop(proc)
    assert (data / "web-secret").stat().st_mode & 0o777 == 0o600


@pytest.mark.postgres
def test_serve_api_and_portal_on_postgresql(tmp_path: Path, postgres_server: Any) -> None:
    url = postgres_server.create_database("cas_serve")
    store = Store.open(url)
    seeded = seed_operator(store, "atvplus")
    store.dispose()
    port = free_tcp_port()
    env = _main_env(CAS_WEB_SECRET="ab" * 32)
    proc = _serve(["--data-dir", str(tmp_path / "d"), "serve", "api", "--db-url", url], port,
                  env)
    try:
        base = f"http://127.0.0.1:{port}"
        op = httpx.get(f"{base}/api/v1/operator", headers={"X-API-Key": seeded.api_key},
                       timeout=10)
        assert op.status_code == 200 and op.json()["key"] == "atvplus"
        # `serve api` has no portal.
        assert httpx.get(f"{base}/atvplus/login", timeout=10).status_code == 404
    finally:
        _stop(proc)
    port = free_tcp_port()
    proc = _serve(["--data-dir", str(tmp_path / "d"), "serve", "portal", "--db-url", url],
                  port, env)
    try:
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/atvplus/login", timeout=10).status_code == 200
        assert httpx.get(f"{base}/api/v1/operator", timeout=10).status_code == 404
    finally:
        _stop(proc)
