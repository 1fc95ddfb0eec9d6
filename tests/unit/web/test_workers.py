"""The pre-fork supervisor (``cas.web.workers``) with real processes and sockets on 127.0.0.1:
connections spread over the workers, a killed worker is started again, SIGTERM stops them
all, and a worker that cannot start stops the supervisor with one line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

#: A supervisor whose workers answer each connection with their pid (or fail at once).
SUPERVISOR = textwrap.dedent("""
    import os, socket, sys
    from cas.errors import CasError
    from cas.web.workers import serve_workers

    def run_worker(sock: socket.socket) -> None:
        if sys.argv[1] == "fail":
            raise RuntimeError("cannot start")
        while True:
            conn, _ = sock.accept()
            conn.sendall(str(os.getpid()).encode())
            conn.close()

    try:
        serve_workers(run_worker, host="127.0.0.1", port=0, workers=2,
                      before_fork=lambda: None,
                      on_ready=lambda port: print(port, flush=True))
    except CasError as exc:
        print(f"error: {exc}", flush=True)
        sys.exit(exc.exit_code)
""")


def _start(mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", SUPERVISOR, mode], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _pid_of_a_worker(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        return int(sock.recv(64))


def _pids(port: int, n: int) -> set[int]:
    return {_pid_of_a_worker(port) for _ in range(n)}


@pytest.fixture
def supervisor() -> Iterator[tuple[subprocess.Popen[str], int]]:
    proc = _start("serve")
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _children(pid: int) -> set[int]:
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.add(int(stat.parent.name))
    return out


def _wait_for(check: object, what: str) -> None:
    deadline = time.monotonic() + 30
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within 30 s", pytrace=False)
        time.sleep(0.1)


def test_connections_reach_both_workers(supervisor: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = supervisor
    _wait_for(lambda: len(_children(proc.pid)) == 2, "two workers")
    # New connections are spread by a hash of the client port: 40 all on one worker would
    # mean the workers do not share the port.
    assert _pids(port, 40) == _children(proc.pid)


def test_a_killed_worker_is_started_again_and_sigterm_stops_all(
        supervisor: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = supervisor
    _wait_for(lambda: len(_children(proc.pid)) == 2, "two workers")
    first = _children(proc.pid)
    time.sleep(2.5)  # past the supervisor's "exited at once" window
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    _wait_for(lambda: len(_children(proc.pid) - first) == 1
              and victim not in _children(proc.pid), "a new worker")
    now = _children(proc.pid)
    assert victim not in _pids(port, 40)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in now)  # reaped, none left


def test_a_worker_that_cannot_start_stops_the_supervisor() -> None:
    proc = _start("fail")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert out.splitlines()[-1].startswith("error: worker ")
    assert "exited at once" in out
