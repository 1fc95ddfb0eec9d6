"""The EMMG: feeds EMM sections to a mux over EMMG/PDG⇔MUX (ETSI TS 103 197 §6).

Per connection: channel_setup → channel_status; stream_setup → stream_status;
stream_BW_request → stream_BW_allocation; then data_provision at the allocated bandwidth,
over the TCP connection or, with ``udp``, as UDP datagrams to the mux (one message per
datagram, §6.1).  When the source is exhausted and everything is confirmed:
stream_close_request → stream_close_response, channel_close.

If the mux goes away, the EMMG reconnects (backing off up to ``max_reconnect_delay_s``) and
resumes from the last confirmed position of its :class:`~.outbox.Outbox` — see that module for
the delivery semantics (no loss; duplicates only in the unconfirmed window).  Every failed
attempt is logged (WARNING); after ``max_connect_attempts`` failures in a row (a connection
that got through setup starts the count again) the run ends with a :class:`ProtocolError`
saying why.  When the source itself fails (an unreadable or wrong-format input), the stream
and the channel are closed properly before that error is raised.

UDP (``udp``): data_provision goes as UDP datagrams, control stays on TCP.  Nothing confirms a
UDP datagram, and it travels apart from the TCP connection, so it may arrive after a TCP
message sent later.  The EMMG therefore waits ``udp_end_wait_s`` after its last datagram
before stream_close_request (as other EMMGs do), and reports UDP datagrams as
``udp_unconfirmed`` — handed to the network, never as confirmed by the mux.

Pacing: a token bucket at the allocated bit rate, counting datagram bytes (sections, or 188
per TS packet), so the average rate never exceeds the allocation.  A later
stream_BW_allocation from the mux changes the rate on the fly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cas
from cas.errors import CasError, FormatError, ProtocolError, RemoteProtocolError
from cas.formats import ts
from cas.formats.sections import iter_sections
from cas.formats.simulcrypt import EmmgMuxError

from .connection import Connection, ConnectionClosed, Role
from .emmgmux import (
    ChannelClose,
    ChannelError,
    ChannelSetup,
    ChannelStatus,
    ChannelTest,
    DataProvision,
    DataType,
    StreamBwAllocation,
    StreamBwRequest,
    StreamCloseRequest,
    StreamCloseResponse,
    StreamError,
    StreamSetup,
    StreamStatus,
    StreamTest,
)
from .endpoint import ClientEndpoint, open_connection
from .events import Event, PeerProtocolError
from .outbox import Outbox

log = logging.getLogger("cas.simulcrypt.emmg")


class MuxRefused(RemoteProtocolError):
    """The mux answered with channel_error / stream_error during setup."""

    def __init__(self, event: ChannelError | StreamError) -> None:
        self.event = event
        self.error_statuses = tuple(int(s) for s in event.error_status)
        names = ", ".join(_status_name(s) for s in self.error_statuses)
        super().__init__(f"mux refused: {names}", error_status=self.error_statuses[0])


def _status_name(status: int) -> str:
    try:
        return f"0x{status:04X} {EmmgMuxError(status).name.lower()}"
    except ValueError:
        return f"0x{status:04X}"


class _Disconnected(Exception):
    """The connection to the mux ended; reconnect."""


def _why(exc: BaseException) -> str:
    """A one-line reason for a failed connection."""
    if isinstance(exc, TimeoutError):
        return str(exc) or "timed out"
    if isinstance(exc, OSError) and (exc.errno or exc.strerror):
        text = os.strerror(exc.errno) if exc.errno else str(exc.strerror)
        return text[:1].lower() + text[1:]
    return str(exc) or type(exc).__name__


class _UdpProtocol(asyncio.DatagramProtocol):
    """Counts the errors the UDP socket reports (ICMP port unreachable, ...)."""

    def __init__(self, stats: EmmgStats) -> None:
        self.stats = stats

    def error_received(self, exc: Exception) -> None:
        self.stats.udp_errors += 1
        if self.stats.udp_errors == 1:
            log.warning("UDP data_provision: %s (EMMs sent over UDP may be lost)", _why(exc))


@dataclass(frozen=True, slots=True, kw_only=True)
class EmmgConfig:
    """Where and what the EMMG sends."""

    host: str
    port: int
    client_id: int = cas.DEFAULT_CA_SYSTEM_ID << 16
    """client_id: the CA_system_id in the top 16 bits (tsemmg convention)."""
    data_channel_id: int = 1
    data_stream_id: int = 1
    data_id: int = 1
    data_type: int = DataType.EMM
    bandwidth_kbps: int = 100
    section_tspkt_flag: int = 0
    """0: datagrams are sections; 1: 188-byte TS packets."""
    udp: bool = False
    udp_port: int | None = None
    """The mux's UDP port for data_provision (default: the TCP port)."""
    version: int = 2
    v1_data_id: bool = False
    """Send data_id in protocol version 1 too (V1 has none; some muxes, e.g. TSDuck's, expect
    it in every version)."""
    max_datagrams_per_message: int = 32
    max_message_bytes: int = 4096
    """data_provision size cap (UDP: one message per datagram, keep below the MTU-ish)."""
    confirm_every: int = 16
    """Send a stream_test (a confirmation point) after this many data_provisions..."""
    confirm_interval_s: float = 0.2
    """...or after this long, whichever comes first."""
    max_unconfirmed: int = 256
    """Stop sending when this many data_provisions wait for confirmation."""
    timeout_s: float = 5.0
    reconnect_delay_s: float = 0.1
    max_reconnect_delay_s: float = 5.0
    max_connect_attempts: int | None = 10
    """Give up after this many failed connections in a row (None: never)."""
    close_when_done: bool = True
    udp_end_wait_s: float = 0.5
    """UDP: wait this long after the last datagram before closing the stream, so that the
    datagrams still on their way reach the mux before stream_close_request does."""

    def __post_init__(self) -> None:
        if not 0 < self.bandwidth_kbps <= 0xFFFF:
            raise ValueError("bandwidth is 1..65535 kbit/s")
        if self.section_tspkt_flag not in (0, 1):
            raise ValueError("section_TSpkt_flag is 0 or 1")
        if self.max_connect_attempts is not None and self.max_connect_attempts < 1:
            raise ValueError("max_connect_attempts is at least 1 (None: never give up)")
        if self.udp_end_wait_s < 0:
            raise ValueError("udp_end_wait_s cannot be negative")

    @property
    def wire_data_id(self) -> int | None:
        """The data_id our messages carry (None in V1 unless :attr:`v1_data_id`)."""
        return self.data_id if self.version >= 2 or self.v1_data_id else None


@dataclass(slots=True)
class EmmgStats:
    connections: int = 0
    messages_sent: int = 0
    datagrams_sent: int = 0
    bytes_sent: int = 0
    resent: int = 0
    confirmed: int = 0
    """Datagrams the mux confirmed (TCP: its stream_status after a batch)."""
    udp_unconfirmed: int = 0
    """Datagrams sent over UDP: handed to the network, which confirms nothing."""
    udp_errors: int = 0
    """Errors the UDP socket reported (e.g. nothing listening on the mux's UDP port)."""
    allocated_kbps: int | None = None
    elapsed_s: float = 0.0

    def as_dict(self) -> dict[str, int | float | None]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


class TokenBucket:
    """Bytes at ``rate_bps`` bits per second, with a small burst allowance."""

    def __init__(self, rate_bps: int, *, burst_s: float = 0.05,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.rate_bps = rate_bps
        self.burst_s = burst_s
        self._tokens = 0.0
        self._last = clock()

    def set_rate(self, rate_bps: int) -> None:
        self._refill()
        self.rate_bps = rate_bps

    def _refill(self) -> None:
        now = self._clock()
        cap = self.rate_bps / 8 * self.burst_s
        self._tokens = min(self._tokens + (now - self._last) * self.rate_bps / 8, max(cap, 0))
        self._last = now

    def delay_for(self, size: int) -> float:
        """Seconds to wait before ``size`` bytes may go (0 if now); takes them if 0."""
        self._refill()
        if self.rate_bps <= 0:
            return 0.05
        if self._tokens >= size or self._tokens >= self.rate_bps / 8 * self.burst_s:
            self._tokens -= size
            return 0.0
        return (size - self._tokens) * 8 / self.rate_bps


class EmmgClient:
    """Runs an EMMG against one mux until the outbox is done (reconnecting as needed)."""

    def __init__(self, config: EmmgConfig, outbox: Outbox) -> None:
        self.config = config
        self.outbox = outbox
        self.stats = EmmgStats()
        self._stop = asyncio.Event()
        self._established = False    # the current connection got through setup
        self._close_on_stop = False

    def stop(self, *, close_stream: bool = False) -> None:
        """Ask :meth:`run` to end after the current step; with ``close_stream`` an
        established connection then closes its stream and channel (stream_close_request,
        channel_close) as at the end of its input, otherwise it is left as it is."""
        self._close_on_stop = close_stream
        self._stop.set()

    async def run(self) -> EmmgStats:
        c = self.config
        started = time.monotonic()
        delay = c.reconnect_delay_s
        failures = 0
        try:
            while not self._stop.is_set():
                self._established = False
                try:
                    finished = await self._session()
                    failures = 0
                    delay = c.reconnect_delay_s
                    if finished:
                        break
                except (_Disconnected, OSError, TimeoutError) as exc:
                    if self._established:       # it worked until now: a fresh count
                        failures, delay = 0, c.reconnect_delay_s
                    failures += 1
                    resent = self.outbox.rewind()
                    self.stats.resent += resent
                    why = _why(exc)
                    limit = c.max_connect_attempts
                    if limit is not None and failures >= limit:
                        raise ProtocolError(
                            f"mux {c.host}:{c.port} unreachable after {failures} attempts: "
                            f"{why}", error_status=EmmgMuxError.UNKNOWN_ERROR).with_id(
                            "headend.mux_unreachable_after_attempts", host=c.host, port=c.port,
                            failures=failures, why=why) from exc
                    log.warning("mux %s:%d: %s (attempt %d of %s); retrying in %.1f s%s",
                                c.host, c.port, why, failures, limit or "unlimited", delay,
                                f", {resent} unconfirmed EMMs will be resent" if resent else "")
                except MuxRefused as exc:
                    if EmmgMuxError.CHANNEL_ID_IN_USE not in exc.error_statuses and \
                            EmmgMuxError.STREAM_ID_IN_USE not in exc.error_statuses and \
                            EmmgMuxError.DATA_ID_IN_USE not in exc.error_statuses:
                        raise
                    # The mux has not noticed our previous connection is gone yet.
                    failures += 1
                    self.outbox.rewind()
                    limit = c.max_connect_attempts
                    if limit is not None and failures >= limit:
                        raise
                    log.warning("%s (attempt %d of %s); retrying in %.1f s", exc, failures,
                                limit or "unlimited", delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                delay = min(delay * 2, c.max_reconnect_delay_s)
        finally:
            self.stats.elapsed_s = time.monotonic() - started
        return self.stats

    # --- one connection ------------------------------------------------------------------------
    async def _session(self) -> bool:
        """One connection; True when the outbox is done and the stream closed cleanly."""
        c = self.config
        reader, writer = await open_connection(c.host, c.port, timeout_s=c.timeout_s)
        self.stats.connections += 1
        session = _Session(self, reader, writer)
        try:
            return await session.run()
        finally:
            await session.shutdown()


class _Session(ClientEndpoint):
    """One connection to the mux: setup, the send loop, the close."""

    PEER = "mux"
    log = log

    def __init__(self, client: EmmgClient, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer, Connection(Role.EMMG, version=client.config.version))
        self.client = client
        self.c = client.config
        self.outbox = client.outbox
        self.stats = client.stats
        self.barriers: deque[int] = deque()   # outbox positions awaiting stream_status
        self.channel_status: ChannelStatus | None = None
        self.stream_status: StreamStatus | None = None
        self.bucket = TokenBucket(self.c.bandwidth_kbps * 1000)
        self.udp: asyncio.DatagramTransport | None = None
        self.lost = asyncio.Event()
        self.progress = asyncio.Event()
        self.pending_reply: asyncio.Future[Event] | None = None

    # --- sequence ------------------------------------------------------------------------------
    async def run(self) -> bool:
        c = self.c
        cid, chid, sid = c.client_id, c.data_channel_id, c.data_stream_id
        status = await self._setup_request(
            ChannelSetup(client_id=cid, data_channel_id=chid,
                         section_tspkt_flag=c.section_tspkt_flag), ChannelStatus)
        assert isinstance(status, ChannelStatus)
        self.channel_status = status
        data_id = c.wire_data_id
        stream = await self._setup_request(
            StreamSetup(client_id=cid, data_channel_id=chid, data_stream_id=sid, data_id=data_id,
                        data_type=c.data_type), StreamStatus)
        assert isinstance(stream, StreamStatus)
        self.stream_status = stream
        allocation = await self._setup_request(
            StreamBwRequest(client_id=cid, data_channel_id=chid, data_stream_id=sid,
                            bandwidth_kbps=c.bandwidth_kbps), StreamBwAllocation)
        assert isinstance(allocation, StreamBwAllocation)
        self._allocate(allocation)
        if c.udp:
            loop = asyncio.get_running_loop()
            self.udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self.stats), remote_addr=(c.host, c.udp_port or c.port))
        else:
            # A first confirmation point before any data: tells a mux like ours that this
            # stream confirms its batches (see .outbox).
            await self._setup_request(self._stream_test(), StreamStatus)
        self.client._established = True
        self._start_reading()
        try:
            await self._send_loop()
        except CasError as exc:
            # The source failed (e.g. a sections file where TS packets were asked for):
            # leave the mux clean, then report the error.
            log.warning("stopping: %s; closing the stream and the channel", exc)
            with contextlib.suppress(CasError, _Disconnected, OSError, TimeoutError):
                await self._close_stream_and_channel()
            raise
        if self.client._stop.is_set():
            if self.client._close_on_stop:
                with contextlib.suppress(CasError, _Disconnected, OSError, TimeoutError):
                    await self._udp_end_wait()
                    await self._close_stream_and_channel()
            return False
        if not c.close_when_done:
            return False
        await self._udp_end_wait()
        await self._close_stream_and_channel()
        return True

    async def _udp_end_wait(self) -> None:
        """UDP: let the datagrams on their way reach the mux before the TCP close does."""
        if self.udp is None:
            return
        # asyncio's UDP transports queue what the socket would not take at once (typeshed
        # does not declare the buffer size on DatagramTransport)
        buffered: Callable[[], int] = getattr(self.udp, "get_write_buffer_size", lambda: 0)
        deadline = time.monotonic() + self.c.timeout_s
        while buffered() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.c.udp_end_wait_s:
            await asyncio.sleep(self.c.udp_end_wait_s)

    async def _close_stream_and_channel(self) -> None:
        c = self.c
        cid, chid, sid = c.client_id, c.data_channel_id, c.data_stream_id
        await self._request_after_setup(
            StreamCloseRequest(client_id=cid, data_channel_id=chid, data_stream_id=sid),
            StreamCloseResponse)
        self._write(self.conn.send(ChannelClose(client_id=cid, data_channel_id=chid)))
        await self.writer.drain()

    def _stream_test(self) -> StreamTest:
        return StreamTest(client_id=self.c.client_id, data_channel_id=self.c.data_channel_id,
                          data_stream_id=self.c.data_stream_id)

    async def _send_loop(self) -> None:
        c = self.c
        outbox = self.outbox
        since_barrier = 0
        last_barrier = last_progress = time.monotonic()
        confirmed = outbox.acked
        while not self.client._stop.is_set():
            if self.lost.is_set():
                raise _Disconnected("mux closed the connection")
            now = time.monotonic()
            if outbox.acked != confirmed:
                confirmed, last_progress = outbox.acked, now
            elif self.barriers and now - last_progress > c.timeout_s:
                raise _Disconnected(f"no confirmation from the mux in {c.timeout_s}s")
            more = outbox.has_unsent()
            blocked = not c.udp and outbox.unconfirmed >= c.max_unconfirmed
            if not c.udp and since_barrier and (
                    since_barrier >= c.confirm_every or not more or blocked
                    or now - last_barrier >= c.confirm_interval_s):
                self._write(self.conn.send(self._stream_test()))
                self.barriers.append(outbox.sent)
                since_barrier = 0
                last_barrier = now
            if outbox.done:
                break
            if not more or blocked:
                await self._wait_progress(0.05)
                continue
            batch = outbox.take(c.max_datagrams_per_message, c.max_message_bytes)
            size = sum(len(d) for d in batch)
            delay = self.bucket.delay_for(size)
            if delay <= 0:
                # A sender slower than its allocation never waits for tokens, and a UDP send
                # (or a drain below the high-water mark) never yields: let the loop breathe.
                await asyncio.sleep(0)
            while delay > 0:
                await asyncio.sleep(delay)
                if self.lost.is_set():
                    raise _Disconnected("mux closed the connection")
                delay = self.bucket.delay_for(size)
            event = DataProvision(
                client_id=c.client_id, data_channel_id=c.data_channel_id,
                data_stream_id=c.data_stream_id,
                data_id=c.wire_data_id, datagrams=tuple(batch))
            data = self.conn.send(event)
            if self.udp is not None:
                if self.udp.is_closing():
                    raise _Disconnected("UDP socket closed")
                self.udp.sendto(data)
                # UDP is best effort: the outbox moves on (nothing will be resent), but the
                # datagrams count as sent unconfirmed, never as confirmed.
                outbox.ack(outbox.sent)
                self.stats.udp_unconfirmed += len(batch)
            else:
                self._write(data)
                await self.writer.drain()
                since_barrier += 1
            self.stats.messages_sent += 1
            self.stats.datagrams_sent += len(batch)
            self.stats.bytes_sent += size

    async def _wait_progress(self, timeout: float) -> None:
        self.progress.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.progress.wait(), timeout)

    def _allocate(self, allocation: StreamBwAllocation) -> None:
        kbps = allocation.bandwidth_kbps if allocation.bandwidth_kbps is not None \
            else self.c.bandwidth_kbps
        self.stats.allocated_kbps = kbps
        self.bucket.set_rate(kbps * 1000)
        if kbps != self.c.bandwidth_kbps:
            log.info("mux allocated %d kbit/s (asked %d)", kbps, self.c.bandwidth_kbps)

    def _write(self, data: bytes) -> None:
        if self.writer.is_closing():
            raise _Disconnected("connection closing")
        self.writer.write(data)

    # --- request/response during setup (before the reader task runs) --------------------------
    async def _setup_request(self, event: Event, kind: type[Event]) -> Event:
        self._write(self.conn.send(event))
        await self.writer.drain()
        deadline = time.monotonic() + self.c.timeout_s
        while True:
            try:
                answer = self.conn.next_event()
            except PeerProtocolError as exc:
                self._write(self.conn.send(self.conn.error_event(exc)))
                continue
            if isinstance(answer, kind):
                return answer
            if isinstance(answer, ChannelError | StreamError):
                raise MuxRefused(answer)
            if isinstance(answer, ConnectionClosed):
                raise _Disconnected("mux closed the connection during setup")
            if isinstance(answer, Event):
                self._answer_test(answer)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no answer to {event.KIND.value}")
            data = await asyncio.wait_for(self.reader.read(65536), remaining)
            self.conn.receive_data(data)

    async def _request_after_setup(self, event: Event, kind: type[Event]) -> Event:
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self.pending_reply = future
        self._write(self.conn.send(event))
        await self.writer.drain()
        lost: asyncio.Future[Any] = asyncio.ensure_future(self.lost.wait())
        waited: set[asyncio.Future[Any]] = {future, lost}
        try:
            done, _ = await asyncio.wait(waited, timeout=self.c.timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if future in done:
            answer = future.result()
            if isinstance(answer, kind):
                return answer
            if isinstance(answer, ChannelError | StreamError):
                raise MuxRefused(answer)
        raise _Disconnected(f"no {kind.KIND.value} from the mux")

    def _status_for_test(self, event: Event) -> Event | None:
        if isinstance(event, ChannelTest):
            return self.channel_status
        if isinstance(event, StreamTest):
            return self.stream_status
        return None

    # --- incoming after setup ------------------------------------------------------------------
    def _connection_lost(self) -> None:
        self.lost.set()
        self.progress.set()

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, StreamStatus) and self.barriers:
            position = self.barriers.popleft()
            self.stats.confirmed += self.outbox.ack(position)
            self.progress.set()
            return
        if isinstance(event, StreamBwAllocation):
            self._allocate(event)
            if self.pending_reply is None or self.pending_reply.done():
                return
        if isinstance(event, ChannelError | StreamError):
            log.warning("mux reports: %s", ", ".join(_status_name(s) for s in event.error_status))
        if self.pending_reply is not None and not self.pending_reply.done():
            self.pending_reply.set_result(event)

    async def shutdown(self) -> None:
        if self.udp is not None:
            self.udp.close()
        await self._close_transport()


# --- sources -----------------------------------------------------------------------------------
def iter_datagrams_file(path: Path, *, section_tspkt_flag: int = 0,
                        pid: int | None = None) -> Iterator[bytes]:
    """Datagrams from a file: a file of back-to-back sections, or a TS file.

    A TS file (sync bytes every 188) gives its packets as they are when ``section_tspkt_flag``
    is 1, or the sections reassembled from ``pid`` (default: the first PID that carries a
    section) when it is 0.  A sections file is only allowed with ``section_tspkt_flag`` 0.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FormatError(f"cannot read {path}: {exc.strerror}", path=str(path)).with_id(
            "headend.cannot_read", field=str(path), path=path, strerror=exc.strerror) from exc
    is_ts = len(data) >= ts.PACKET_SIZE and len(data) % ts.PACKET_SIZE == 0 and all(
        data[i] == 0x47 for i in range(0, min(len(data), 50 * ts.PACKET_SIZE), ts.PACKET_SIZE))
    if not is_ts:
        if section_tspkt_flag:
            raise FormatError("TS packets requested but the file holds sections",
                              path=str(path)).with_id(
                "headend.ts_packets_requested_but", field=str(path))
        yield from iter_sections(data)
        return
    packets = [data[i:i + ts.PACKET_SIZE] for i in range(0, len(data), ts.PACKET_SIZE)]
    if section_tspkt_flag:
        yield from (p for p in packets if pid is None or ts.pid_of(p) == pid)
        return
    if pid is None:
        pid = next((ts.pid_of(p) for p in packets if ts.pusi_of(p) and not ts.is_null(p)),
                   None)
        if pid is None:
            return
    reassembler = ts.SectionReassembler(pid, check_crc=False)
    for p in packets:
        if ts.pid_of(p) == pid:
            yield from reassembler.feed(p)


def carousel(path: Path, *, section_tspkt_flag: int = 0, pid: int | None = None,
             rounds: int | None = None) -> Iterator[bytes]:
    """The file's datagrams over and over (``rounds`` times, or forever)."""
    done = 0
    while rounds is None or done < rounds:
        produced = False
        for datagram in iter_datagrams_file(path, section_tspkt_flag=section_tspkt_flag,
                                            pid=pid):
            produced = True
            yield datagram
        if not produced:
            return
        done += 1
