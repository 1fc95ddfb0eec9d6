"""A minimal MUX: accepts EMMGs (ETSI TS 103 197 §6) and writes what they send into a TS.

Enough of a mux to test an EMMG against — ours or another vendor's:

* channel_setup / stream_setup / stream_BW_request are answered (the allocation is the
  request, capped at ``MuxConfig.max_bandwidth_kbps``); channel_test / stream_test too;
* data_provision over the TCP connection or as UDP datagrams on the same port number;
* datagrams go to a :class:`DatagramSink`: :class:`TsFileSink` packetises sections onto a PID
  with :class:`cas.formats.ts.Packetizer` (TS-packet datagrams are written as they are), and
  :class:`MemorySink` keeps them for tests.

When a stream's datagrams reach the sink (the "commit"): a stream that has sent a stream_test
is in *confirming* mode — its TCP datagrams are held until the next stream_test (or
stream_close_request / channel_close), written, and only then answered with stream_status; if
the connection breaks first, the held datagrams are dropped, because the EMMG will send them
again (see :mod:`.outbox`).  A stream that never sends stream_test is written as it arrives,
and UDP datagrams always are.

UDP datagrams travel apart from the TCP connection, so the last ones may arrive just after the
stream_close_request (or channel_close) that the EMMG sent after them.  A closed stream's
data_id therefore keeps taking UDP datagrams for ``MuxConfig.udp_close_linger_s``, so that
nothing sent before the close is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from cas.errors import FormatError
from cas.formats import ts
from cas.formats.sections import section_total_length
from cas.formats.simulcrypt import EMMG_MUX, SimulcryptFormatError, parse_message
from cas.formats.simulcrypt import EmmgMuxError as Err
from cas.formats.simulcrypt import EmmgMuxParam as Param

from .connection import Role
from .emmgmux import (
    EVENTS,
    ChannelClose,
    ChannelError,
    ChannelSetup,
    ChannelStatus,
    ChannelTest,
    DataProvision,
    StreamBwAllocation,
    StreamBwRequest,
    StreamCloseRequest,
    StreamCloseResponse,
    StreamError,
    StreamSetup,
    StreamStatus,
    StreamTest,
)
from .endpoint import DEFAULT_IDLE_TIMEOUT_S, ServerEndpoint
from .events import Event, PeerProtocolError, decode_event, error_information_for
from .session import ServerSession

log = logging.getLogger("cas.simulcrypt.mux")

DEFAULT_EMM_PID = 0x0C00


class DatagramSink(Protocol):
    """Where committed datagrams go."""

    def write(self, *, client_id: int, data_id: int | None, datagrams: Sequence[bytes],
              ts_packets: bool) -> None: ...


@dataclass(slots=True)
class MemorySink:
    """Keeps every committed datagram, in order (tests)."""

    datagrams: list[bytes] = field(default_factory=list)
    by_stream: dict[tuple[int, int | None], list[bytes]] = field(default_factory=dict)

    def write(self, *, client_id: int, data_id: int | None, datagrams: Sequence[bytes],
              ts_packets: bool) -> None:
        self.datagrams.extend(datagrams)
        self.by_stream.setdefault((client_id, data_id), []).extend(datagrams)


class TsFileSink:
    """Writes datagrams into a TS file: sections packetised on ``pid`` (per-data_id PIDs with
    ``pids``), TS packets as they are.  Continuity counters run on per PID across
    reconnections; the file is flushed after every commit."""

    def __init__(self, out: BinaryIO, *, pid: int = DEFAULT_EMM_PID,
                 pids: dict[int, int] | None = None) -> None:
        self._out = out
        self.pid = pid
        self.pids = dict(pids or {})
        self._packetizers: dict[int, ts.Packetizer] = {}
        self.packets = 0
        self.sections = 0

    @classmethod
    def open(cls, path: Path, *, append: bool = True, pid: int = DEFAULT_EMM_PID) -> TsFileSink:
        return cls(path.open("ab" if append else "wb"), pid=pid)

    def write(self, *, client_id: int, data_id: int | None, datagrams: Sequence[bytes],
              ts_packets: bool) -> None:
        if ts_packets:
            data = b"".join(datagrams)
            self.packets += len(data) // ts.PACKET_SIZE
        else:
            pid = self.pids.get(data_id if data_id is not None else -1, self.pid)
            packetizer = self._packetizers.get(pid)
            if packetizer is None:
                packetizer = self._packetizers[pid] = ts.Packetizer(pid)
            packets = packetizer.packetize_many(datagrams)
            self.packets += len(packets)
            self.sections += len(datagrams)
            data = b"".join(packets)
        self._out.write(data)
        self._out.flush()

    def close(self) -> None:
        self._out.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class MuxConfig:
    max_bandwidth_kbps: int = 2000
    """Allocation cap per stream."""
    client_ids: frozenset[int] | None = None
    """Accepted client_ids (None: any)."""
    max_channels: int = 0
    max_streams_per_channel: int = 0
    idle_timeout_s: float | None = DEFAULT_IDLE_TIMEOUT_S
    """Probe a silent connection with channel_test, close it if still silent (:mod:`.endpoint`)."""
    max_message_length: int = 0xFFFF
    udp: bool = True
    udp_close_linger_s: float = 1.0
    """UDP datagrams for a stream closed less than this long ago are still written."""


@dataclass(frozen=True, slots=True)
class _Closed:
    """A stream closed a moment ago: where its late UDP datagrams still go."""

    until: float
    ts_packets: bool


class MuxRegistry:
    """Mux-wide bookkeeping (single event loop: no locks)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.channels: set[tuple[int, int]] = set()        # (client_id, data_channel_id)
        self.data_ids: dict[tuple[int, int], tuple[MuxSession, int]] = {}  # -> session, stream
        self.closed_data_ids: dict[tuple[int, int], _Closed] = {}   # (client_id, data_id)
        self.datagrams = 0
        self.udp_datagrams = 0
        self.udp_dropped = 0
        self.udp_after_close = 0
        self.errors_sent = 0
        self.stream_closes = 0
        """stream_close_requests answered (clean ends)."""
        self.channel_closes = 0
        """channel_closes received (clean ends)."""

    def linger(self, key: tuple[int, int], seconds: float, *, ts_packets: bool) -> None:
        now = self.clock()
        for old in [k for k, v in self.closed_data_ids.items() if v.until <= now]:
            del self.closed_data_ids[old]
        if seconds > 0:
            self.closed_data_ids[key] = _Closed(until=now + seconds, ts_packets=ts_packets)

    def lingering(self, key: tuple[int, int]) -> _Closed | None:
        closed = self.closed_data_ids.get(key)
        return closed if closed is not None and closed.until > self.clock() else None


@dataclass(slots=True)
class _MuxStream:
    data_id: int | None
    data_type: int
    allocated_kbps: int = 0
    confirming: bool = False
    held: list[bytes] = field(default_factory=list)


class MuxSession(ServerSession):
    """The mux side of one EMMG connection, without I/O (the loop is
    :class:`~.session.ServerSession`'s; ``received_at`` is not used here)."""

    log = log

    def __init__(self, config: MuxConfig, sink: DatagramSink, registry: MuxRegistry, *,
                 peer: str = "?") -> None:
        super().__init__(Role.MUX, max_message_length=config.max_message_length, peer=peer)
        self.config = config
        self.sink = sink
        self.registry = registry
        self.streams: dict[int, _MuxStream] = {}
        self._channel: tuple[int, int] | None = None

    @property
    def ts_packets(self) -> bool:
        return bool(self.conn.section_tspkt_flag)

    # --- what the session loop asks ------------------------------------------------------------
    def _sent(self, event: Event, *, refusal: bool) -> None:
        if refusal:
            self.registry.errors_sent += 1

    def _channel_test(self) -> Event:
        return ChannelTest(client_id=self.conn.client_id or 0,
                           data_channel_id=self.conn.channel_id or 0)

    def _failure_answer(self, error_status: int) -> Event:
        return ChannelError(client_id=self.conn.client_id or 0,
                            data_channel_id=self.conn.channel_id or 0,
                            error_status=(error_status,))

    def _peer_closed(self) -> None:
        self.close(commit=False)

    def close(self, *, commit: bool) -> None:
        """End the session; held datagrams are written only when ``commit``."""
        if self.closed:
            return
        self.closed = True
        for sid in list(self.streams):
            self._drop_stream(sid, commit=commit)
        if self._channel is not None:
            self.registry.channels.discard(self._channel)
            self._channel = None

    def _drop_stream(self, sid: int, *, commit: bool) -> None:
        stream = self.streams.pop(sid, None)
        if stream is None:
            return
        if commit:
            self._commit(stream)
        elif stream.held:
            log.info("%s: dropping %d unconfirmed datagrams of stream %d", self.peer,
                     len(stream.held), sid)
        client_id = self.conn.client_id
        if stream.data_id is not None and client_id is not None:
            key = (client_id, stream.data_id)
            self.registry.data_ids.pop(key, None)
            if commit:   # a clean close: datagrams already on their way over UDP still count
                self.registry.linger(key, self.config.udp_close_linger_s,
                                     ts_packets=self.ts_packets)

    def _commit(self, stream: _MuxStream) -> None:
        if stream.held:
            self.write(stream, stream.held)
            stream.held = []

    def write(self, stream: _MuxStream, datagrams: Sequence[bytes]) -> None:
        self.sink.write(client_id=self.conn.client_id or 0, data_id=stream.data_id,
                        datagrams=datagrams, ts_packets=self.ts_packets)
        self.registry.datagrams += len(datagrams)

    # --- decisions ---------------------------------------------------------------------------
    def handle(self, event: Event) -> list[Event]:
        if isinstance(event, DataProvision):
            return self._data_provision(event, udp=False)
        if isinstance(event, ChannelSetup):
            return [self._channel_setup(event)]
        if isinstance(event, ChannelTest):
            return [self._channel_status()]
        if isinstance(event, StreamSetup):
            return [self._stream_setup(event)]
        if isinstance(event, StreamTest):
            stream = self.streams[event.data_stream_id]
            self._commit(stream)           # the confirmation point (module docstring)
            stream.confirming = True
            return [self._stream_status(event.data_stream_id)]
        if isinstance(event, StreamBwRequest):
            stream = self.streams[event.data_stream_id]
            asked = event.bandwidth_kbps if event.bandwidth_kbps is not None \
                else stream.allocated_kbps or self.config.max_bandwidth_kbps
            stream.allocated_kbps = min(asked, self.config.max_bandwidth_kbps)
            return [StreamBwAllocation(
                client_id=event.client_id, data_channel_id=event.data_channel_id,
                data_stream_id=event.data_stream_id, bandwidth_kbps=stream.allocated_kbps)]
        if isinstance(event, StreamCloseRequest):
            self._drop_stream(event.data_stream_id, commit=True)
            self.registry.stream_closes += 1
            return [StreamCloseResponse(client_id=event.client_id,
                                        data_channel_id=event.data_channel_id,
                                        data_stream_id=event.data_stream_id)]
        if isinstance(event, ChannelClose):
            self.close(commit=True)
            self.registry.channel_closes += 1
            return []
        if isinstance(event, ChannelError | StreamError):
            log.info("%s: EMMG reports %s", self.peer, event)
        return []

    def _channel_status(self) -> ChannelStatus:
        return ChannelStatus(client_id=self.conn.client_id or 0,
                             data_channel_id=self.conn.channel_id or 0,
                             section_tspkt_flag=self.conn.section_tspkt_flag or 0)

    def _channel_setup(self, event: ChannelSetup) -> Event:
        def refuse(status: int, info: int | None = None) -> ChannelError:
            return ChannelError(client_id=event.client_id, data_channel_id=event.data_channel_id,
                                error_status=(status,),
                                error_information=error_information_for(info))

        allowed = self.config.client_ids
        if allowed is not None and event.client_id not in allowed:
            return refuse(Err.INV_CLIENT_ID, Param.CLIENT_ID)
        key = (event.client_id, event.data_channel_id)
        if key in self.registry.channels:
            return refuse(Err.CHANNEL_ID_IN_USE, Param.DATA_CHANNEL_ID)
        if self.config.max_channels and len(self.registry.channels) >= self.config.max_channels:
            return refuse(Err.TOO_MANY_CHANNELS)
        self.registry.channels.add(key)
        self._channel = key
        return self._channel_status()

    def _stream_status(self, sid: int) -> StreamStatus:
        stream = self.streams[sid]
        return StreamStatus(client_id=self.conn.client_id or 0,
                            data_channel_id=self.conn.channel_id or 0, data_stream_id=sid,
                            data_id=stream.data_id, data_type=stream.data_type)

    def _stream_setup(self, event: StreamSetup) -> Event:
        def refuse(status: int, info: int | None = None) -> StreamError:
            return StreamError(client_id=event.client_id, data_channel_id=event.data_channel_id,
                               data_stream_id=event.data_stream_id, error_status=(status,),
                               error_information=error_information_for(info))

        limit = self.config.max_streams_per_channel
        if limit and len(self.streams) >= limit:
            return refuse(Err.TOO_MANY_STM_CHAN)
        if event.data_id is not None:
            key = (event.client_id, event.data_id)
            if key in self.registry.data_ids:
                return refuse(Err.DATA_ID_IN_USE, Param.DATA_ID)
            self.registry.data_ids[key] = (self, event.data_stream_id)
        self.streams[event.data_stream_id] = _MuxStream(data_id=event.data_id,
                                                        data_type=event.data_type)
        return self._stream_status(event.data_stream_id)

    def stream_for(self, event: DataProvision) -> tuple[int, _MuxStream] | None:
        if event.data_stream_id is not None and event.data_stream_id in self.streams:
            return event.data_stream_id, self.streams[event.data_stream_id]
        for sid, stream in self.streams.items():
            if event.data_id is not None and stream.data_id == event.data_id:
                return sid, stream
        return None

    def _data_provision(self, event: DataProvision, *, udp: bool) -> list[Event]:
        found = self.stream_for(event)
        if found is None:
            return []
        sid, stream = found
        try:
            for datagram in event.datagrams:
                check_datagram(datagram, self.ts_packets)
        except FormatError as exc:
            log.info("%s: bad datagram: %s", self.peer, exc)
            if udp:
                return []
            return [StreamError(client_id=event.client_id,
                                data_channel_id=self.conn.channel_id or 0, data_stream_id=sid,
                                error_status=(Err.INV_PARAM_VALUE,),
                                error_information=error_information_for(Param.DATAGRAM))]
        if stream.confirming and not udp:
            stream.held.extend(event.datagrams)
        else:
            self.write(stream, event.datagrams)
        return []

    def receive_udp(self, event: DataProvision) -> bool:
        """A data_provision that came over UDP for this session; False if it was dropped."""
        if self.closed or self.conn.client_id != event.client_id or self.stream_for(event) is None:
            return False
        self._data_provision(event, udp=True)
        return True


def check_datagram(datagram: bytes, ts_packets: bool) -> None:
    """A datagram must be one whole section, or whole TS packets (FormatError otherwise)."""
    if ts_packets:
        if len(datagram) % ts.PACKET_SIZE or any(
                datagram[i] != 0x47 for i in range(0, len(datagram), ts.PACKET_SIZE)):
            raise FormatError("not whole TS packets", path="datagram").with_id(
                "headend.datagram_not_whole_ts")
        return
    if section_total_length(datagram) != len(datagram) or datagram[0] == 0xFF:
        raise FormatError(f"not one section ({len(datagram)} bytes)", path="datagram").with_id(
            "headend.datagram_not_one_section", n=len(datagram))


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: MuxServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.server.receive_udp(data)


class MuxServer(ServerEndpoint[MuxSession]):
    """asyncio MUX: TCP for control (and data), UDP on the same port number for data."""

    NAME = "mux"
    SPEC = EMMG_MUX
    log = log

    def __init__(self, sink: DatagramSink, config: MuxConfig | None = None, *,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.sink = sink
        self.config = config or MuxConfig()
        self.registry = MuxRegistry()
        self._udp: asyncio.DatagramTransport | None = None

    @property
    def idle_timeout_s(self) -> float | None:
        return self.config.idle_timeout_s

    def _open_session(self, peer: str) -> MuxSession:
        return MuxSession(self.config, self.sink, self.registry, peer=peer)

    def _end_session(self, session: MuxSession) -> None:
        session.close(commit=False)

    async def _listening(self) -> None:
        if self.config.udp:
            loop = asyncio.get_running_loop()
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(self.host, self.port))

    def _listening_note(self) -> str:
        return f" (TCP{' + UDP' if self._udp else ''})"

    async def close(self) -> None:
        """Stop listening and drop every connection (held datagrams are not written)."""
        if self._udp is not None:
            self._udp.close()
        await super().close()

    def receive_udp(self, data: bytes) -> None:
        try:
            message = parse_message(data)
            event = decode_event(message, EVENTS, EMMG_MUX)
        except (SimulcryptFormatError, PeerProtocolError) as exc:
            self.registry.udp_dropped += 1
            log.info("UDP: dropped a bad message: %s", exc)
            return
        if not isinstance(event, DataProvision):
            self.registry.udp_dropped += 1
            return
        target = None
        if event.data_id is not None:
            key = (event.client_id, event.data_id)
            target = self.registry.data_ids.get(key)
            closed = self.registry.lingering(key) if target is None else None
            if closed is not None:
                self._write_after_close(event, key, closed)
                return
        if target is None or not target[0].receive_udp(event):
            self.registry.udp_dropped += 1
            log.info("UDP: no open stream for client 0x%08X data_id %s", event.client_id,
                     event.data_id)
            return
        self.registry.udp_datagrams += len(event.datagrams)

    def _write_after_close(self, event: DataProvision, key: tuple[int, int],
                           closed: _Closed) -> None:
        try:
            for datagram in event.datagrams:
                check_datagram(datagram, closed.ts_packets)
        except FormatError as exc:
            self.registry.udp_dropped += 1
            log.info("UDP: bad datagram for closed data_id %d: %s", key[1], exc)
            return
        self.sink.write(client_id=key[0], data_id=key[1], datagrams=event.datagrams,
                        ts_packets=closed.ts_packets)
        count = len(event.datagrams)
        self.registry.datagrams += count
        self.registry.udp_datagrams += count
        self.registry.udp_after_close += count
        log.info("UDP: %d datagram(s) for client 0x%08X data_id %d just after its stream "
                 "closed: written", count, key[0], key[1])
