"""``cas serve all`` (one process) stopped by SIGTERM / SIGINT with a client connected: exit
0 with one line, the client's connection closed, no traceback.  uvicorn re-raises the signal
after its graceful stop, which used to end the process with -15 on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cas.store.engine import Store
from tests.fixtures.net import free_tcp_port
from tests.integration.web.seed import seed_operator

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]
STOP_TIMEOUT_S = 20.0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_on_a_signal_with_a_client_connected(tmp_path: Path,
                                                         sig: signal.Signals) -> None:
    data = tmp_path / "data"
    data.mkdir()
    store = Store.open(f"sqlite:///{data / 'cas.sqlite'}")
    seed_operator(store, "atvplus")
    store.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAS_")}
    port = free_tcp_port()
    cas = str(Path(sys.executable).parent / "cas")
    proc = subprocess.Popen([cas, "--data-dir", str(data), "serve", "all", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=0.2)
                break
            except OSError:
                assert time.monotonic() < deadline, "cas serve did not listen"
                time.sleep(0.1)
        with sock:
            proc.send_signal(sig)
            _, stderr_bytes = proc.communicate(timeout=STOP_TIMEOUT_S)
            sock.settimeout(STOP_TIMEOUT_S)
            assert sock.recv(100) == b""                     # closed by the server
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    stderr = stderr_bytes.decode()
    assert proc.returncode == 0, stderr[-2000:]
    assert f"stopped ({sig.name})" in stderr
    assert "Traceback" not in stderr
