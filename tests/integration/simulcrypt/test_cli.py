"""`cas ecmg` / `cas emmg` / `cas mux` / `cas scs` end to end: servers as real processes on
127.0.0.1, clients through click's CliRunner."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from cas.access import AccessCriteria
from cas.cli.main import cli
from cas.crypto import OperatorKeys
from cas.formats import ts
from cas.headend.simulcrypt import access_criteria as ac

AC_HEX = ac.encode_full(AccessCriteria(channel_id=3001, package_ids=(1, 2))).hex()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def _serve(args: list[str], port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-c", "from cas.cli.main import main; main()", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    _wait_listening(port, proc)
    return proc


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    keys = OperatorKeys.generate(os.urandom)
    keys.save(tmp_path / "keys.toml")
    yield {**os.environ, "CAS_DATA_DIR": str(tmp_path), "PYTHONPATH": os.getcwd()}


def test_access_criteria_command() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["ecmg", "access-criteria", "--reference", "--service-id",
                                 "3001"])
    assert result.exit_code == 0 and result.output.strip() == "020bb9"
    result = runner.invoke(cli, ["--json", "ecmg", "access-criteria", "--service-id", "3001",
                                 "--lineup", "atvplus.toml"])
    assert result.exit_code == 0, result.output
    raw = bytes.fromhex(json.loads(result.output)["access_criteria"])
    assert ac.decode(raw).channel_id == 3001
    result = runner.invoke(cli, ["ecmg", "access-criteria", "--service-id", "3001"])
    assert result.exit_code == 2 and "--lineup" in result.output


def test_ecmg_serve_and_scs_test(env: dict[str, str], tmp_path: Path) -> None:
    port = _free_port()
    proc = _serve(["ecmg", "serve", "--port", str(port), "--keys", str(tmp_path / "keys.toml"),
                   "--lineup", "atvplus.toml", "--duration-s", "8"], port, env)
    try:
        runner = CliRunner()
        result = runner.invoke(cli, [
            "--json", "scs", "test", "--ecmg", f"127.0.0.1:{port}", "--streams", "2",
            "--periods", "3", "--access-criteria", AC_HEX,
            "--keys", str(tmp_path / "keys.toml")])
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        assert len(report["ecms"]) == 6
        assert all(row["cws_match"] for row in report["ecms"])
        assert [row["table_id"] for row in report["ecms"][::2]] == ["0x80", "0x81", "0x80"]
        # the lineup reference form, CISSA-sized CWs, protocol version 3
        result = runner.invoke(cli, [
            "--json", "scs", "test", "--ecmg", f"127.0.0.1:{port}", "--channel-id", "2",
            "--service-id", "3001", "--cw-length", "16", "--protocol-version", "3",
            "--keys", str(tmp_path / "keys.toml")])
        assert result.exit_code == 0, result.output
        assert all(row["cws_match"] for row in json.loads(result.output)["ecms"])
        # a refused request is one line and the protocol exit code
        result = runner.invoke(cli, ["scs", "test", "--ecmg", f"127.0.0.1:{port}",
                                     "--access-criteria", "07"])
        assert result.exit_code == 9
        assert "inv_param_value" in result.output
    finally:
        proc.terminate()
        proc.wait(10)


def test_nothing_listening_is_a_protocol_error() -> None:
    result = CliRunner().invoke(cli, ["scs", "test", "--ecmg", f"127.0.0.1:{_free_port()}",
                                      "--service-id", "1", "--timeout-s", "1"])
    assert result.exit_code == 9
    assert "Traceback" not in result.output


def test_mux_serve_and_emmg_run(env: dict[str, str], tmp_path: Path) -> None:
    sections = [bytes((0x82, 0x70, 20)) + i.to_bytes(4, "big") + bytes(16) for i in range(200)]
    source = tmp_path / "emm.sections"
    source.write_bytes(b"".join(sections))
    out = tmp_path / "mux.ts"
    port = _free_port()
    proc = _serve(["--json", "mux", "serve", "--port", str(port), "--output", str(out),
                   "--pid", "0x0C05", "--duration-s", "6"], port, env)
    try:
        result = CliRunner().invoke(cli, [
            "--json", "emmg", "run", "--mux", f"127.0.0.1:{port}", "--client-id", "0xDEAD0001",
            "--data-id", "3", "--bandwidth", "1000", "--input", str(source), "--rounds", "2"])
        assert result.exit_code == 0, result.output
        stats = json.loads(result.output[result.output.index("{"):])
        assert stats["acked"] == 400 and stats["datagrams_sent"] == 400
    finally:
        stdout, _ = proc.communicate(timeout=15)
    summary = json.loads(stdout[stdout.index(b"{"):])
    assert summary["datagrams"] == 400
    data = out.read_bytes()
    got = ts.SectionReassembler(0x0C05, check_crc=False).feed_many(
        data[i:i + 188] for i in range(0, len(data), 188))
    assert got == sections * 2
