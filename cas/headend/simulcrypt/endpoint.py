"""The asyncio edge of SimulCrypt: one base for our two servers and one for our two clients.

The protocol lives in :class:`~.connection.Connection` (bytes in, events out) and the
decisions in the sessions (:class:`~.session.ServerSession`, the clients' ``_dispatch``);
this module is only the sockets around them, written once:

* :class:`ServerEndpoint` — listen, one task per TCP connection (each isolated: a failure in
  one never touches another), idle timeout, close.  :class:`~.ecmg.EcmgServer` and
  :class:`~.mux.MuxServer` say which session to open per connection and how to end it.
* :class:`ClientEndpoint` — connect, the reader task that turns bytes into events (answering
  a malformed message with the error the connection builds, echoing the peer's
  channel_test / stream_test with our last status), close.  :class:`~.scs.ScsClient` and the
  EMMG's connection (:mod:`.emmg`) say what to do with each event.

What the servers do with a connection (issue 12, item 7):

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
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from typing import ClassVar, Generic, Protocol, Self, SupportsIndex, TypeVar

from cas.errors import LocalProtocolError
from cas.formats.simulcrypt import ErrorKind, InterfaceSpec

from .connection import NEED_DATA, Connection, ConnectionClosed
from .events import Event, PeerProtocolError

READ_SIZE = 65536
"""Bytes asked of the socket per read."""

DEFAULT_IDLE_TIMEOUT_S = 60.0
"""Idle timeout of the ECMG's and the mux's connections (:func:`serve_connection`)."""


# --- sockets -------------------------------------------------------------------------------------
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


async def open_connection(host: str, port: int, *,
                          timeout_s: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect within ``timeout_s`` (TimeoutError, OSError as asyncio raises them), no Nagle."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    set_nodelay(writer)
    return reader, writer


def set_nodelay(writer: asyncio.StreamWriter) -> None:
    """Small request/response messages: do not let Nagle hold them back."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def peer_name(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if peer else "?"


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close a connection and wait for it, whatever state it is in."""
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


# --- servers -------------------------------------------------------------------------------------
class SessionDriver(Protocol):
    """The sans-I/O side of one server connection (:class:`~.session.ServerSession`)."""

    peer: str

    @property
    def closed(self) -> bool: ...

    def receive(self, data: bytes, *, received_at: float | None = None) -> bytes:
        """Bytes from the client (``b""`` at end of stream) in, the bytes to answer out;
        ``received_at``: when they were read (``time.perf_counter``)."""

    def probe(self) -> bytes | None:
        """A channel_test to send when the connection is idle (None: no open channel)."""


async def serve_connection(session: SessionDriver, reader: asyncio.StreamReader,
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
                data = await asyncio.wait_for(reader.read(READ_SIZE), idle_timeout_s)
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


S = TypeVar("S", bound=SessionDriver)


class ServerEndpoint(ABC, Generic[S]):
    """An asyncio TCP server of sessions: ``async with Server(...) as server: server.port``.

    Subclasses name themselves (``NAME``, ``SPEC``, ``log``), open a session per connection
    (:meth:`_open_session`) and release it when the connection ends (:meth:`_end_session`);
    :meth:`_listening` and :meth:`_listening_note` let them add to what is listened on.
    """

    NAME: ClassVar[str]
    SPEC: ClassVar[InterfaceSpec]
    log: ClassVar[logging.Logger]

    def __init__(self, *, host: str, port: int) -> None:
        self.host = host
        self.requested_port = port
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    @abstractmethod
    def idle_timeout_s(self) -> float | None:
        """How long a connection may stay silent (:func:`serve_connection`)."""

    @abstractmethod
    def _open_session(self, peer: str) -> S:
        """The session for a new connection from ``peer``."""

    @abstractmethod
    def _end_session(self, session: S) -> None:
        """Release what ``session`` held (its connection has ended)."""

    async def _listening(self) -> None:
        """Called once the TCP socket listens, before the start is logged."""

    def _listening_note(self) -> str:
        """Appended to the "listening on" log line."""
        return ""

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise LocalProtocolError(f"the {self.NAME} is not listening",
                                     error_status=self.SPEC.status(ErrorKind.UNKNOWN_ERROR)).with_id(
                "headend.not_listening", name=self.NAME)
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> Self:
        self._server = await start_server(self._serve, self.host, self.requested_port)
        await self._listening()
        self.log.info("%s listening on %s:%d%s", self.NAME, self.host, self.port,
                      self._listening_note())
        return self

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def close(self) -> None:
        """Stop listening and end every connection (their tasks finish on their own)."""
        if self._server is not None:
            self._server.close()
        await close_connections(self._writers, self._tasks)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        session = self._open_session(peer_name(writer))
        try:
            await serve_connection(session, reader, writer, idle_timeout_s=self.idle_timeout_s,
                                   log=self.log)
        finally:
            self._end_session(session)
            self._writers.discard(writer)
            self._tasks.discard(task)
            await close_writer(writer)


# --- clients -------------------------------------------------------------------------------------
class ClientEndpoint(ABC):
    """One client connection: the reader task turning bytes into events, and the close.

    Subclasses handle each event in :meth:`_dispatch` and say which status answers the peer's
    tests (:meth:`_status_for_test`); :meth:`_connection_lost` runs once reading has ended,
    however it ended.  ``PEER`` names the other side in logs ("ECMG", "mux").
    """

    PEER: ClassVar[str]
    log: ClassVar[logging.Logger]

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 conn: Connection) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = conn
        self.reader_task: asyncio.Task[None] | None = None

    @abstractmethod
    def _dispatch(self, event: Event) -> None:
        """An event from the peer that is not a test we answer."""

    def _status_for_test(self, event: Event) -> Event | None:
        """Our last status that answers ``event`` when it is the peer's channel_test or
        stream_test (TS 103 197 §4.4: the answer echoes the status); None otherwise."""
        return None

    @abstractmethod
    def _connection_lost(self) -> None:
        """Reading has ended (end of stream, an error, or :meth:`_close_transport`)."""

    def _start_reading(self) -> None:
        self.reader_task = asyncio.create_task(self._read_loop())

    def _answer_test(self, event: Event) -> bool:
        """Answer the peer's channel_test / stream_test with our last status, if we have one."""
        status = self._status_for_test(event)
        if status is None:
            return False
        self._write(self.conn.send(status))
        return True

    def _write(self, data: bytes) -> None:
        self.writer.write(data)

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self.reader.read(READ_SIZE)
                self.conn.receive_data(data)
                if self._drain_events() or not data:
                    break
        except (ConnectionError, OSError) as exc:
            self.log.info("%s connection lost: %s", self.PEER, exc)
        finally:
            self._connection_lost()

    def _drain_events(self) -> bool:
        """Handle every complete event; True once the connection is over."""
        while True:
            try:
                event = self.conn.next_event()
            except PeerProtocolError as exc:
                self.log.warning("%s sent a bad message: %s", self.PEER, exc)
                with contextlib.suppress(Exception):
                    self._write(self.conn.send(self.conn.error_event(exc)))
                continue
            if event is NEED_DATA:
                return False
            if isinstance(event, ConnectionClosed):
                return True
            assert isinstance(event, Event)
            if not self._answer_test(event):
                self._dispatch(event)

    async def _close_transport(self) -> None:
        """Close the connection and stop reading (no goodbye message)."""
        await close_writer(self.writer)
        if self.reader_task is not None:
            self.reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.reader_task
