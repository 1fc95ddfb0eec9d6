"""Several server processes on one port: ``cas serve … --workers N``.

A pre-fork supervisor, kept small on purpose:

1. The parent binds the address once with ``SO_REUSEPORT`` and never listens on that socket:
   it only holds the port (so ``--port 0`` picks one port for every worker).
2. It forks ``N`` workers.  Each binds its own listening socket to the same address with
   ``SO_REUSEPORT``, so the kernel spreads new connections over the workers (by a hash of the
   client's address and port), and runs one uvicorn server on it with its own app and its
   own database connections (the parent closes its pool before forking: a connection is
   never shared between processes).
3. A worker that dies is started again; SIGINT or SIGTERM to the parent stops every worker
   (each finishes the requests it has in hand) and then the parent.

Nothing else is shared between workers: sessions, rate-limit counters and idempotency keys
live in the store (PostgreSQL, or one SQLite file in WAL mode whose writers queue on the
busy timeout), so any worker — on this host or another one against the same PostgreSQL —
answers any request the same way (docs/scale.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from cas.errors import CasError, UsageError

log = logging.getLogger("cas.web.workers")


class ServeError(CasError):
    """A worker process could not be kept running."""


#: Answer header naming the worker process that served a request (``--workers`` ≥ 2).
WORKER_HEADER = "X-Worker-Pid"
#: A worker that dies sooner than this after its start is failing, not crashing once: the
#: supervisor stops instead of forking it again and again.
_MIN_LIFE_S = 2.0
_STOP_GRACE_S = 20.0


def _address(host: str, port: int) -> tuple[socket.AddressFamily, tuple[Any, ...]]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"cannot listen on {host}: {exc.strerror}").with_id(
            "web.cannot_listen", host=host, strerror=exc.strerror) from exc
    family, _type, _proto, _name, sockaddr = infos[0]
    return family, sockaddr


def _reuseport_socket(family: socket.AddressFamily, sockaddr: tuple[Any, ...]) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(sockaddr)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {sockaddr[0]} port {sockaddr[1]}: "
                         f"{exc.strerror or exc}").with_id(
            "web.cannot_listen_port", sockaddr=sockaddr[0], sockaddr2=sockaddr[1],
            value=exc.strerror or exc) from exc
    return sock


def serve_workers(run_worker: Callable[[socket.socket], None], *, host: str, port: int,
                  workers: int, before_fork: Callable[[], None],
                  on_ready: Callable[[int], None] | None = None) -> None:
    """Run ``workers`` processes, each calling ``run_worker(listening_socket)`` (which serves
    until told to stop).  ``before_fork`` closes whatever must not cross a fork (database
    pools); ``on_ready(port)`` is told the bound port once."""
    if workers < 2:
        raise ValueError("serve_workers is for two or more workers")
    if not hasattr(socket, "SO_REUSEPORT") or not hasattr(os, "fork"):
        raise UsageError("--workers needs a system with fork() and SO_REUSEPORT (Linux, BSD)").with_id(
            "web.workers_needs_system_fork")
    family, sockaddr = _address(host, port)
    holder = _reuseport_socket(family, sockaddr)
    sockaddr = holder.getsockname()
    if on_ready is not None:
        on_ready(int(sockaddr[1]))
    before_fork()

    stopping = False

    def on_stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, on_stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    def start(index: int) -> int:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
                holder.close()
                sock = _reuseport_socket(family, sockaddr)
                sock.listen(2048)
                run_worker(sock)
            except KeyboardInterrupt:
                pass  # SIGINT to the whole process group: uvicorn has shut down already
            except BaseException:  # a worker never returns into the parent's code
                log.exception("worker %d failed", index)
                code = 1
            finally:
                os._exit(code)
        return pid

    children: dict[int, tuple[int, float]] = {}
    failed: str | None = None
    try:
        for index in range(workers):
            children[start(index)] = (index, time.monotonic())
        while children and not stopping:
            # Polled, not a blocking wait: the stop signal must be noticed at once.
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                time.sleep(0.2)
                continue
            if pid not in children:
                continue
            index, started = children.pop(pid)
            if stopping:
                break
            code = os.waitstatus_to_exitcode(status)
            if time.monotonic() - started < _MIN_LIFE_S:
                failed = f"worker {index} (pid {pid}) exited at once (status {code})"
                break
            log.warning("worker %d (pid %d) exited (status %d): starting it again", index, pid,
                        code)
            children[start(index)] = (index, time.monotonic())
    finally:
        _stop_all(children)
        holder.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failed is not None:
        raise ServeError(f"{failed}: see its log above").with_id("web.see_log_above", failed=failed)


def _stop_all(children: dict[int, tuple[int, float]]) -> None:
    """SIGTERM to every worker (uvicorn finishes the requests in hand), SIGKILL after a grace
    period."""
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE_S
    while children and time.monotonic() < deadline:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)
            continue
        children.pop(pid, None)
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
