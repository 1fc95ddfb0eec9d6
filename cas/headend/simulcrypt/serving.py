"""What the ECMG and the mux servers share: one asyncio task per TCP connection.

:func:`serve_connection` drives one sans-I/O server session (``EcmgSession``, ``MuxSession``)
over a connection: bytes read go to ``session.receive``, its answer is written back.  It also
keeps the server from holding dead connections (issue 12, item 7):

* **Idle timeout.**  A connection that sends nothing for ``idle_timeout_s`` is probed when its
  channel is open: the server sends a channel_test, which any live SimulCrypt client answers
  with channel_status (TS 103 197 §4.4: either side may test the channel).  If nothing arrives
  within a second ``idle_timeout_s`` the connection is closed.  A connection without an open
  channel (never set up, or a half-open socket whose peer vanished) is closed at the first
  timeout.  So a quiet but live SCS (a long crypto-period) keeps its connection, and a dead
  or silent one is gone after at most two timeouts.
* **Arrival times.**  Each connection's reader notes when the oldest bytes still in its
  buffer came off the socket (:class:`StampedReader`), and the session gets that time with
  the bytes, so the ECMG can tell how long a CW_provision waited for its turn — in the loop,
  not only in its own processing — and shed what it can no longer answer in time.
* **Logs.**  Connections at INFO (``-v``), refusals the server decides at WARNING (always),
  every message at DEBUG (``-vv``) — the sessions log messages and refusals, this module the
  connection's life.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol, SupportsIndex


class StampedReader(asyncio.StreamReader):
    """A StreamReader that remembers when the oldest buffered bytes arrived."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fed_at: float | None = None

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:
        if not self._buffer:  # type: ignore[attr-defined]
            self.fed_at = time.perf_counter()
        super().feed_data(data)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def start_server(handler: Handler, host: str, port: int) -> asyncio.Server:
    """``asyncio.start_server`` with a :class:`StampedReader` per connection."""
    loop = asyncio.get_running_loop()

    def factory() -> asyncio.StreamReaderProtocol:
        return asyncio.StreamReaderProtocol(StampedReader(loop=loop), handler, loop=loop)

    return await loop.create_server(factory, host, port)


class ServerSession(Protocol):
    """The sans-I/O side of one server connection."""

    peer: str

    @property
    def closed(self) -> bool: ...

    def receive(self, data: bytes, *, received_at: float | None = None) -> bytes:
        """Bytes from the client (``b""`` at end of stream) in, the bytes to answer out;
        ``received_at``: when they were read (``time.perf_counter``)."""

    def probe(self) -> bytes | None:
        """A channel_test to send when the connection is idle (None: no open channel)."""


async def serve_connection(session: ServerSession, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter, *, idle_timeout_s: float | None,
                           log: logging.Logger) -> None:
    """Serve one connection until the client closes it, the session ends, or it idles out.

    Never raises for a connection's own failures (each connection is isolated); the caller
    releases the session's resources and closes the writer.
    """
    set_nodelay(writer)
    log.info("%s: connected", session.peer)
    why = "closed by the client"
    probing = False
    try:
        while not session.closed:
            try:
                data = await asyncio.wait_for(reader.read(65536), idle_timeout_s)
            except TimeoutError:
                probe = None if probing else session.probe()
                if probe is None:
                    why = (f"no answer to channel_test in {idle_timeout_s:g} s" if probing
                           else f"idle for {idle_timeout_s:g} s")
                    break
                log.info("%s: idle for %g s, sending channel_test", session.peer,
                         idle_timeout_s)
                probing = True
                writer.write(probe)
                await writer.drain()
                continue
            probing = False
            stamp = reader.fed_at if isinstance(reader, StampedReader) else None
            answer = session.receive(data, received_at=stamp or time.perf_counter())
            if answer:
                writer.write(answer)
                await writer.drain()
            if not data:
                break
        else:
            why = "channel closed"
    except (ConnectionError, OSError) as exc:
        why = f"connection lost: {exc}"
    except asyncio.CancelledError:
        why = "closed by the server"
    except Exception:  # isolate: one broken connection never takes the server down
        log.exception("%s: unexpected failure", session.peer)
        why = "unexpected failure"
    log.info("%s: disconnected (%s)", session.peer, why)


async def close_connections(writers: set[asyncio.StreamWriter],
                            tasks: set[asyncio.Task[None]], *, grace_s: float = 2.0) -> None:
    """Close every connection's transport and let its task end; cancel what lingers."""
    for writer in list(writers):
        writer.close()
    pending = [t for t in tasks if not t.done()]
    if pending:
        _, still = await asyncio.wait(pending, timeout=grace_s)
        for task in still:
            task.cancel()
        if still:
            await asyncio.wait(still, timeout=grace_s)


def set_nodelay(writer: asyncio.StreamWriter) -> None:
    """Small request/response messages: do not let Nagle hold them back."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def peer_name(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if peer else "?"
