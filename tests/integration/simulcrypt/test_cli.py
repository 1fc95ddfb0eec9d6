"""`cas ecmg` / `cas emmg` / `cas mux` / `cas scs` end to end: servers as real processes on
127.0.0.1, clients through click's CliRunner."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cas.access import AccessCriteria
from cas.cli.main import cli
from cas.crypto import OperatorKeys
from cas.formats import ts
from cas.headend.simulcrypt import access_criteria as ac
from tests.fixtures.net import free_tcp_port

AC_HEX = ac.encode_full(AccessCriteria(channel_id=3001, package_ids=(1, 2))).hex()


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


def _ctrl_c_reaches_it() -> None:
    """Ctrl-C as in a terminal: a test run started in the background (``cmd &`` in a
    non-interactive shell) inherits SIGINT ignored, and the server would never see it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _serve(args: list[str], port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-c", "from cas.cli.main import main; main()", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        preexec_fn=_ctrl_c_reaches_it)
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
    port = free_tcp_port()
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
    result = CliRunner().invoke(cli, ["scs", "test", "--ecmg", f"127.0.0.1:{free_tcp_port()}",
                                      "--service-id", "1", "--timeout-s", "1"])
    assert result.exit_code == 9
    assert "Traceback" not in result.output


def test_mux_serve_and_emmg_run(env: dict[str, str], tmp_path: Path) -> None:
    sections = [bytes((0x82, 0x70, 20)) + i.to_bytes(4, "big") + bytes(16) for i in range(200)]
    source = tmp_path / "emm.sections"
    source.write_bytes(b"".join(sections))
    out = tmp_path / "mux.ts"
    port = free_tcp_port()
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


# --- logs, idle connections, the EMMG's failures (issue 12, items 7 and 14) -------------------------
def _frame(event: Any, version: int = 2) -> bytes:
    from cas.formats.simulcrypt import build_message

    return build_message(event.to_message(version))


def _answers(sock: socket.socket, count: int) -> list[Any]:
    """The next ``count`` ECMG answers on a blocking socket."""
    from cas.formats.simulcrypt import ECMG_SCS, parse_message
    from cas.headend.simulcrypt import ecmgscs as E
    from cas.headend.simulcrypt.events import decode_event

    from .conftest import FrameReader

    frames = FrameReader(sock)
    deadline = time.monotonic() + 10
    out = []
    for _ in range(count):
        data = frames.next(deadline)
        assert data is not None, "the ECMG closed the connection"
        out.append(decode_event(parse_message(data), E.EVENTS, ECMG_SCS))
    return out


@pytest.mark.parametrize("verbose", [0, 1, 2])
def test_ecmg_serve_logs_what_it_promises(env: dict[str, str], tmp_path: Path,
                                          verbose: int) -> None:
    """Refusals the ECMG decides are always logged; -v adds connections, -vv messages.
    An idle connection is probed with channel_test and closed (--idle-timeout-s)."""
    from cas.headend.simulcrypt import ecmgscs as E
    from cas.headend.simulcrypt.events import CpCw

    port = free_tcp_port()
    args = ["ecmg", "serve", "--port", str(port), "--keys", str(tmp_path / "keys.toml"),
            "--idle-timeout-s", "0.5", "--duration-s", "30"] + (["-" + "v" * verbose]
                                                              if verbose else [])
    proc = _serve(args, port, env)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(_frame(E.ChannelSetup(ecm_channel_id=1, super_cas_id=0x12340000)))
            sock.sendall(_frame(E.ChannelSetup(ecm_channel_id=1, super_cas_id=0xDEAD0000)))
            sock.sendall(_frame(E.StreamSetup(ecm_channel_id=1, ecm_stream_id=1, ecm_id=1,
                                              nominal_cp_duration_100ms=100)))
            sock.sendall(_frame(E.CwProvision(
                ecm_channel_id=1, ecm_stream_id=1, cp_number=5,
                cp_cw_combinations=(CpCw(cp_number=5, cw=bytes(8)),),
                access_criteria=bytes.fromhex(AC_HEX))))
            refused, status, stream, not_enough = _answers(sock, 4)
            assert isinstance(refused, E.ChannelError) and refused.error_status == (0x0005,)
            assert isinstance(status, E.ChannelStatus) and isinstance(stream, E.StreamStatus)
            assert isinstance(not_enough, E.StreamError)
            assert not_enough.error_status == (0x000B,)
            # then silence: the ECMG probes, gets nothing back, and closes the connection
            assert isinstance(_answers(sock, 1)[0], E.ChannelTest)
            sock.settimeout(10)
            assert sock.recv(100) == b""
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr_bytes = proc.communicate(timeout=20)
    stderr = stderr_bytes.decode()
    assert "channel_setup refused: channel_error" in stderr
    assert "0x0005 inv_super_cas_id" in stderr
    assert "CW_provision refused: stream_error" in stderr and "not_enough_cw" in stderr
    assert ("connected" in stderr) is (verbose >= 1)
    assert ("disconnected (no answer to channel_test in 0.5 s)" in stderr) is (verbose >= 1)
    assert ("<- channel_setup channel=1 super_cas_id=0xDEAD0000" in stderr) is (verbose >= 2)
    assert ("-> channel_test channel=1" in stderr) is (verbose >= 2)
    assert "Traceback" not in stderr
    assert bytes(8).hex() not in stderr.replace(" ", "")   # never a CW


def test_mux_serve_logs_connections_and_refusals(env: dict[str, str], tmp_path: Path) -> None:
    from cas.headend.simulcrypt import emmgmux as M

    port = free_tcp_port()
    proc = _serve(["mux", "serve", "--port", str(port), "--output", str(tmp_path / "mux.ts"),
                   "--client-id", "0xDEAD0001", "--idle-timeout-s", "0.3", "--duration-s", "30",
                   "-v"], port, env)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(_frame(M.ChannelSetup(client_id=0x12340001, data_channel_id=1,
                                               section_tspkt_flag=0)))
            sock.settimeout(10)
            assert sock.recv(1000)                         # the channel_error
            assert sock.recv(1000) == b""                  # then closed: idle, no channel
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr_bytes = proc.communicate(timeout=20)
    stderr = stderr_bytes.decode()
    assert "channel_setup refused: channel_error" in stderr and "inv_client_id" in stderr
    assert "connected" in stderr and "disconnected (idle for 0.3 s)" in stderr


def test_emmg_run_without_a_mux_retries_then_says_why(env: dict[str, str],
                                                      tmp_path: Path) -> None:
    source = tmp_path / "emm.sections"
    source.write_bytes(bytes((0x82, 0x70, 4)) + bytes(4))
    port = free_tcp_port()
    done = subprocess.run(
        [sys.executable, "-c", "from cas.cli.main import main; main()", "emmg", "run", "--mux",
         f"127.0.0.1:{port}", "--input", str(source), "--connect-attempts", "3"],
        capture_output=True, env=env, timeout=60)
    stderr = done.stderr.decode()
    assert done.returncode == 9, stderr
    assert stderr.count("connection refused (attempt") == 2
    assert "(attempt 1 of 3)" in stderr and "(attempt 2 of 3)" in stderr
    assert f"mux 127.0.0.1:{port} unreachable after 3 attempts: connection refused" in stderr
    assert "Traceback" not in stderr


def test_emmg_run_closes_stream_and_channel_when_its_input_is_wrong(
        env: dict[str, str], tmp_path: Path) -> None:
    """--ts-packets with a sections file: the EMMG closes what it set up, then fails."""
    source = tmp_path / "emm.sections"
    source.write_bytes(b"".join(bytes((0x82, 0x70, 20)) + bytes(20) for _ in range(3)))
    port = free_tcp_port()
    proc = _serve(["mux", "serve", "--port", str(port), "--output", str(tmp_path / "mux.ts"),
                   "--duration-s", "30", "-vv"], port, env)
    try:
        done = subprocess.run(
            [sys.executable, "-c", "from cas.cli.main import main; main()", "emmg", "run",
             "--mux", f"127.0.0.1:{port}", "--input", str(source), "--ts-packets"],
            capture_output=True, env=env, timeout=60)
    finally:
        proc.send_signal(signal.SIGINT)
        _, mux_stderr = proc.communicate(timeout=20)
    stderr = done.stderr.decode()
    assert done.returncode == 3, stderr
    assert "TS packets requested but the file holds sections" in stderr
    assert "Traceback" not in stderr
    log = mux_stderr.decode()
    assert "<- stream_close_request" in log and "<- channel_close" in log


def test_emmg_run_over_udp_delivers_all_and_confirms_none(env: dict[str, str],
                                                          tmp_path: Path) -> None:
    """Issue 12, item 18: 100 of 100 EMMs over UDP between two processes, and the EMMG
    reports them as sent unconfirmed, not as acknowledged."""
    sections = [bytes((0x82, 0x70, 20)) + i.to_bytes(4, "big") + bytes(16) for i in range(100)]
    source = tmp_path / "emm.sections"
    source.write_bytes(b"".join(sections))
    out = tmp_path / "mux.ts"
    port = free_tcp_port()
    proc = _serve(["--json", "mux", "serve", "--port", str(port), "--output", str(out),
                   "--duration-s", "30"], port, env)
    try:
        result = CliRunner().invoke(cli, [
            "--json", "emmg", "run", "--mux", f"127.0.0.1:{port}", "--input", str(source),
            "--udp", "--bandwidth", "2000"])
        assert result.exit_code == 0, result.output
        stats = json.loads(result.output[result.output.index("{"):])
        assert stats["datagrams_sent"] == 100 and stats["udp_unconfirmed"] == 100
        assert stats["acked"] == 0 and stats["confirmed"] == 0
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=20)
    summary = json.loads(stdout[stdout.index(b"{"):])
    assert summary["udp_datagrams"] == 100
    data = out.read_bytes()
    got = ts.SectionReassembler(0x0C00, check_crc=False).feed_many(
        data[i:i + 188] for i in range(0, len(data), 188))
    assert got == sections
