"""`cas ecmg serve`, `cas mux serve` and `cas emmg run --loop` stopped by SIGTERM / SIGINT:
real processes on 127.0.0.1, a client connected; each exits 0 promptly with one line, the
client sees its connection closed, and nothing on stderr is a traceback."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cas.headend.simulcrypt import ecmgscs as E
from cas.headend.simulcrypt import emmgmux as M
from tests.fixtures.net import free_tcp_port

from .test_cli import _answers, _frame, _serve, env  # noqa: F401  (env: a fixture)

STOP_TIMEOUT_S = 20.0
"""Generous: the process has to stop within this, on a loaded machine."""


def _stop(proc: subprocess.Popen[bytes], sig: signal.Signals) -> tuple[int, str, str]:
    proc.send_signal(sig)
    try:
        stdout, stderr = proc.communicate(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=10)
        pytest.fail(f"still running {STOP_TIMEOUT_S} s after {sig.name}")
    return proc.returncode, stdout.decode(), stderr.decode()


def _closed_by_peer(sock: socket.socket) -> bool:
    sock.settimeout(STOP_TIMEOUT_S)
    try:
        return sock.recv(1000) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_ecmg_serve_stops_on_a_signal_with_a_channel_open(env: dict[str, str],  # noqa: F811
                                                          tmp_path: Path,
                                                          sig: signal.Signals) -> None:
    port = free_tcp_port()
    proc = _serve(["ecmg", "serve", "--port", str(port), "--keys",
                   str(tmp_path / "keys.toml")], port, env)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(_frame(E.ChannelSetup(ecm_channel_id=1, super_cas_id=0xDEAD0000)))
        assert isinstance(_answers(sock, 1)[0], E.ChannelStatus)
        code, stdout, stderr = _stop(proc, sig)
        assert _closed_by_peer(sock)
    assert code == 0, stderr
    assert f"ECMG stopped ({sig.name})" in stderr
    assert "served 2 connection(s)" in stdout               # the listening probe and ours
    assert "Traceback" not in stderr and "Traceback" not in stdout


def test_mux_serve_stops_on_sigterm_with_an_emmg_connected(env: dict[str, str],  # noqa: F811
                                                           tmp_path: Path) -> None:
    port = free_tcp_port()
    proc = _serve(["--json", "mux", "serve", "--port", str(port), "--output",
                   str(tmp_path / "mux.ts")], port, env)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(_frame(M.ChannelSetup(client_id=0xDEAD0001, data_channel_id=1,
                                           section_tspkt_flag=0)))
        sock.settimeout(10)
        assert sock.recv(1000)                               # channel_status
        code, stdout, stderr = _stop(proc, signal.SIGTERM)
        assert _closed_by_peer(sock)
    assert code == 0, stderr
    assert "mux stopped (SIGTERM)" in stderr
    assert '"connections": 2' in stdout    # --json summary: the listening probe and ours
    assert "Traceback" not in stderr


def test_emmg_run_loop_stops_on_sigterm_and_closes_its_stream(env: dict[str, str],  # noqa: F811
                                                               tmp_path: Path) -> None:
    source = tmp_path / "emm.sections"
    source.write_bytes(b"".join(bytes((0x82, 0x70, 20)) + i.to_bytes(4, "big") + bytes(16)
                                for i in range(50)))
    port = free_tcp_port()
    mux = _serve(["mux", "serve", "--port", str(port), "--output", str(tmp_path / "mux.ts"),
                  "-vv"], port, env)
    try:
        emmg = subprocess.Popen(
            [sys.executable, "-c", "from cas.cli.main import main; main()", "--json", "emmg",
             "run", "--mux", f"127.0.0.1:{port}", "--input", str(source), "--loop",
             "--bandwidth", "50"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        time.sleep(3)                                    # connected, sending
        assert emmg.poll() is None
        code, stdout, stderr = _stop(emmg, signal.SIGTERM)
    finally:
        _, _, mux_log = _stop(mux, signal.SIGTERM)
    assert code == 0, stderr
    assert "EMMG stopped (SIGTERM)" in stderr
    assert '"datagrams_sent"' in stdout
    assert "Traceback" not in stderr
    assert "<- stream_close_request" in mux_log and "<- channel_close" in mux_log
