"""An SCS client: take CWs to any ECMG and get its ECMs back (ETSI TS 103 197 §5).

Two drivers over the same sans-I/O :class:`~.connection.Connection`:

* :class:`ScsClient` — asyncio; many requests in flight (benches, tests, a live head-end).
* :class:`BlockingScsClient` — a plain socket, one request at a time; for synchronous code
  such as the file scrambler.  :class:`EcmgServiceCrypto` adapts it to the scrambler's
  per-service interface (``cw(cp)`` / ``ecm_section(cp)``), so a scrambled stream can carry
  ECMs from our ECMG or from another vendor's.

Stable API (docs/simulcrypt.md, "SCS client")::

    async with await ScsClient.connect(host, port, channel_id=1, super_cas_id=0xDEAD0000) as scs:
        await scs.setup_stream(1, ecm_id=1, nominal_cp_duration_100ms=100)
        response = await scs.cw_provision(1, cp_number=7, cws={7: cw7, 8: cw8},
                                          access_criteria=ac_bytes)
        section = scs.section_of(response)       # sections or TS packets, as announced

Refusals from the ECMG raise :class:`EcmgRefused` (with the error_status codes); no ECMG, a
lost connection or no answer in time raise :class:`PeerUnavailable` (:class:`SimulcryptTimeout`
for the last).  The ECMG's own channel_test / stream_test are
answered automatically by echoing its last status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from cas.crypto import generate_cw
from cas.errors import FormatError, ProtocolError, RemoteProtocolError
from cas.formats import ts
from cas.formats.simulcrypt import EcmgScsError

from .connection import NEED_DATA, Connection, ConnectionClosed, Role
from .ecmgscs import (
    ChannelClose,
    ChannelError,
    ChannelSetup,
    ChannelStatus,
    ChannelTest,
    CwProvision,
    EcmResponse,
    StreamCloseRequest,
    StreamCloseResponse,
    StreamError,
    StreamSetup,
    StreamStatus,
    StreamTest,
)
from .endpoint import ClientEndpoint, open_connection
from .events import CpCw, Event, PeerProtocolError

log = logging.getLogger("cas.simulcrypt.scs")

CwInput = Mapping[int, bytes] | Sequence[CpCw]


class EcmgRefused(RemoteProtocolError):
    """The ECMG answered with channel_error / stream_error.  ``event`` is that answer."""

    def __init__(self, event: ChannelError | StreamError) -> None:
        self.event = event
        self.error_statuses = tuple(int(s) for s in event.error_status)
        names = ", ".join(_status_name(s) for s in self.error_statuses)
        where = f"stream {event.ecm_stream_id}" if isinstance(event, StreamError) \
            else f"channel {event.ecm_channel_id}"
        super().__init__(f"ECMG refused ({where}): {names}",
                         error_status=self.error_statuses[0])


class PeerUnavailable(ProtocolError):
    """The ECMG cannot be reached, closed the connection, or did not answer in time."""


class SimulcryptTimeout(PeerUnavailable):
    """No answer from the peer in time (or the connection ended first)."""


def _status_name(status: int) -> str:
    try:
        return f"0x{status:04X} {EcmgScsError(status).name.lower()}"
    except ValueError:
        return f"0x{status:04X}"


def _cp_cws(cws: CwInput) -> tuple[CpCw, ...]:
    if isinstance(cws, Mapping):
        return tuple(CpCw(cp_number=cp & 0xFFFF, cw=cw) for cp, cw in sorted(cws.items()))
    return tuple(cws)


def section_from_datagram(datagram: bytes, ts_packets: bool) -> bytes:
    """The ECM section inside an ECM_datagram (TS packets are reassembled)."""
    if not ts_packets:
        return datagram
    if len(datagram) % ts.PACKET_SIZE:
        raise FormatError(f"ECM_datagram of {len(datagram)} bytes is not whole TS packets",
                          path="ECM_datagram").with_id(
            "headend.ecm_datagram_ecm_datagram", n=len(datagram))
    pid = ((datagram[1] & 0x1F) << 8) | datagram[2] if datagram else 0
    sections = ts.SectionReassembler(pid, check_crc=False).feed_many(
        datagram[i:i + ts.PACKET_SIZE] for i in range(0, len(datagram), ts.PACKET_SIZE))
    if len(sections) != 1:
        raise FormatError(f"ECM_datagram holds {len(sections)} sections, expected 1",
                          path="ECM_datagram").with_id(
            "headend.ecm_datagram_ecm_datagram_2", n=len(sections))
    return sections[0]


@dataclass(slots=True)
class _Pending:
    kinds: tuple[type[Event], ...]
    cp_number: int | None
    future: asyncio.Future[Event]


@dataclass(slots=True)
class _Waiters:
    """Outstanding requests, FIFO per scope (None = the channel, else a stream id)."""

    by_scope: dict[int | None, deque[_Pending]] = field(default_factory=dict)

    def add(self, scope: int | None, pending: _Pending) -> None:
        self.by_scope.setdefault(scope, deque()).append(pending)

    def resolve(self, scope: int | None, event: Event) -> bool:
        queue = self.by_scope.get(scope)
        if not queue:
            return False
        cp = getattr(event, "cp_number", None)
        for pending in queue:
            if isinstance(event, pending.kinds) and (pending.cp_number is None
                                                     or pending.cp_number == cp):
                queue.remove(pending)
                if not pending.future.done():
                    pending.future.set_result(event)
                return True
        return False

    def fail_first(self, scope: int | None, exc: BaseException) -> bool:
        queue = self.by_scope.get(scope)
        while queue:
            pending = queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(exc)
                return True
        return False

    def fail_all(self, exc: BaseException) -> None:
        for queue in self.by_scope.values():
            while queue:
                pending = queue.popleft()
                if not pending.future.done():
                    pending.future.set_exception(exc)


class ScsClient(ClientEndpoint):
    """asyncio SCS for one ECM channel (= one TCP connection, TS 103 197 §4.4)."""

    PEER = "ECMG"
    log = log

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 channel_id: int, super_cas_id: int, version: int = 2,
                 timeout_s: float = 5.0) -> None:
        super().__init__(reader, writer, Connection(Role.SCS, version=version))
        self.channel_id = channel_id
        self.super_cas_id = super_cas_id
        self.timeout_s = timeout_s
        self.channel_status: ChannelStatus | None = None
        self.stream_statuses: dict[int, StreamStatus] = {}
        self._waiters = _Waiters()
        self._closed = False

    @classmethod
    async def connect(cls, host: str, port: int, *, channel_id: int, super_cas_id: int,
                      version: int = 2, timeout_s: float = 5.0) -> ScsClient:
        """Connect and set up the channel; returns once channel_status has arrived."""
        try:
            reader, writer = await open_connection(host, port, timeout_s=timeout_s)
        except TimeoutError as exc:
            raise SimulcryptTimeout(f"no connection to ECMG {host}:{port} in {timeout_s}s",
                                    error_status=EcmgScsError.UNKNOWN_ERROR).with_id(
                "headend.no_connection_ecmg", host=host, port=port, timeout_s=timeout_s) from exc
        except OSError as exc:
            raise PeerUnavailable(f"cannot connect to ECMG {host}:{port}: {exc.strerror or exc}",
                                  error_status=EcmgScsError.UNKNOWN_ERROR).with_id(
                "headend.cannot_connect_ecmg", host=host, port=port, value=exc.strerror or exc) from exc
        client = cls(reader, writer, channel_id=channel_id, super_cas_id=super_cas_id,
                     version=version, timeout_s=timeout_s)
        client._start_reading()
        try:
            status = await client._request(
                ChannelSetup(ecm_channel_id=channel_id, super_cas_id=super_cas_id),
                None, (ChannelStatus,))
        except BaseException:
            await client.abort()
            raise
        assert isinstance(status, ChannelStatus)
        client.channel_status = status
        return client

    async def __aenter__(self) -> ScsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def ts_packets(self) -> bool:
        """Whether the ECMG announced ECMs as TS packets (section_TSpkt_flag = 1)."""
        return bool(self.channel_status and self.channel_status.section_tspkt_flag)

    # --- requests ------------------------------------------------------------------------------
    async def setup_stream(self, stream_id: int, *, ecm_id: int | None,
                           nominal_cp_duration_100ms: int) -> StreamStatus:
        status = await self._request(
            StreamSetup(ecm_channel_id=self.channel_id, ecm_stream_id=stream_id, ecm_id=ecm_id,
                        nominal_cp_duration_100ms=nominal_cp_duration_100ms),
            stream_id, (StreamStatus,))
        assert isinstance(status, StreamStatus)
        self.stream_statuses[stream_id] = status
        return status

    async def cw_provision(self, stream_id: int, cp_number: int, cws: CwInput, *,
                           access_criteria: bytes | None = None,
                           cp_duration_100ms: int | None = None) -> EcmResponse:
        """Send CW_provision; returns the ECM_response for ``cp_number``."""
        event = CwProvision(ecm_channel_id=self.channel_id, ecm_stream_id=stream_id,
                            cp_number=cp_number & 0xFFFF, cp_cw_combinations=_cp_cws(cws),
                            access_criteria=access_criteria, cp_duration_100ms=cp_duration_100ms)
        response = await self._request(event, stream_id, (EcmResponse,),
                                       cp_number=cp_number & 0xFFFF)
        assert isinstance(response, EcmResponse)
        return response

    def section_of(self, response: EcmResponse) -> bytes:
        """The ECM section of a response, whichever format the ECMG announced."""
        return section_from_datagram(response.ecm_datagram, self.ts_packets)

    async def test_channel(self) -> ChannelStatus:
        status = await self._request(ChannelTest(ecm_channel_id=self.channel_id), None,
                                     (ChannelStatus,))
        assert isinstance(status, ChannelStatus)
        return status

    async def test_stream(self, stream_id: int) -> StreamStatus:
        status = await self._request(
            StreamTest(ecm_channel_id=self.channel_id, ecm_stream_id=stream_id), stream_id,
            (StreamStatus,))
        assert isinstance(status, StreamStatus)
        return status

    async def close_stream(self, stream_id: int) -> None:
        await self._request(
            StreamCloseRequest(ecm_channel_id=self.channel_id, ecm_stream_id=stream_id),
            stream_id, (StreamCloseResponse,))
        self.stream_statuses.pop(stream_id, None)

    async def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (tests of the ECMG's error paths)."""
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        """channel_close, then close the connection."""
        if self._closed:
            return
        with contextlib.suppress(Exception):
            self.writer.write(self.conn.send(ChannelClose(ecm_channel_id=self.channel_id)))
            await self.writer.drain()
        await self.abort()

    async def abort(self) -> None:
        """Close the connection without channel_close."""
        self._closed = True
        await self._close_transport()
        self._waiters.fail_all(SimulcryptTimeout("connection closed",
                                                 error_status=EcmgScsError.UNKNOWN_ERROR).with_id(
            "headend.connection_closed"))

    async def _request(self, event: Event, scope: int | None, kinds: tuple[type[Event], ...],
                       *, cp_number: int | None = None) -> Event:
        if self._closed:
            raise SimulcryptTimeout("connection closed", error_status=EcmgScsError.UNKNOWN_ERROR).with_id(
                "headend.connection_closed")
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        data = self.conn.send(event)
        self._waiters.add(scope, _Pending(kinds=kinds, cp_number=cp_number, future=future))
        self.writer.write(data)
        await self.writer.drain()
        try:
            return await asyncio.wait_for(future, self.timeout_s)
        except TimeoutError as exc:
            raise SimulcryptTimeout(f"no answer to {event.KIND.value} in {self.timeout_s}s",
                                    error_status=EcmgScsError.UNKNOWN_ERROR).with_id(
                "headend.no_answer", value=event.KIND.value, timeout_s=self.timeout_s) from exc

    # --- incoming ----------------------------------------------------------------------------------
    def _connection_lost(self) -> None:
        self._closed = True
        self._waiters.fail_all(SimulcryptTimeout(
            "the ECMG closed the connection", error_status=EcmgScsError.UNKNOWN_ERROR).with_id(
            "headend.ecmg_closed_connection"))

    def _status_for_test(self, event: Event) -> Event | None:
        return _echo(event, self.channel_status, self.stream_statuses)

    def _dispatch(self, event: Event) -> None:
        # Remember statuses as they arrive: the ECMG may test right after answering a setup,
        # before the coroutine that asked has run again.
        if isinstance(event, ChannelStatus):
            self.channel_status = event
        elif isinstance(event, StreamStatus):
            self.stream_statuses[event.ecm_stream_id] = event
        scope = event.stream_id
        if isinstance(event, ChannelError | StreamError):
            refused = EcmgRefused(event)
            if not self._waiters.fail_first(scope, refused):
                self._waiters.fail_first(None, refused)
            return
        if not self._waiters.resolve(scope, event):
            log.info("unsolicited %s", event.KIND.value)


def _echo(event: Event, channel_status: ChannelStatus | None,
          stream_statuses: Mapping[int, StreamStatus]) -> Event | None:
    """The status that answers the ECMG's channel_test / stream_test (rule 2: an echo)."""
    if isinstance(event, ChannelTest):
        return channel_status
    if isinstance(event, StreamTest):
        return stream_statuses.get(event.ecm_stream_id)
    return None


# --- blocking client ----------------------------------------------------------------------------
class BlockingScsClient:
    """One request at a time over a plain socket: for synchronous callers."""

    def __init__(self, host: str, port: int, *, channel_id: int, super_cas_id: int,
                 version: int = 2, timeout_s: float = 5.0) -> None:
        self.channel_id = channel_id
        self.super_cas_id = super_cas_id
        self.timeout_s = timeout_s
        self.conn = Connection(Role.SCS, version=version)
        self.stream_statuses: dict[int, StreamStatus] = {}
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout_s)
        except OSError as exc:
            raise PeerUnavailable(f"cannot connect to ECMG {host}:{port}: {exc.strerror or exc}",
                                  error_status=EcmgScsError.UNKNOWN_ERROR).with_id(
                "headend.cannot_connect_ecmg", host=host, port=port, value=exc.strerror or exc) from exc
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        status = self._request(ChannelSetup(ecm_channel_id=channel_id, super_cas_id=super_cas_id),
                               ChannelStatus)
        assert isinstance(status, ChannelStatus)
        self.channel_status = status

    def __enter__(self) -> BlockingScsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def ts_packets(self) -> bool:
        return bool(self.channel_status.section_tspkt_flag)

    def setup_stream(self, stream_id: int, *, ecm_id: int | None,
                     nominal_cp_duration_100ms: int) -> StreamStatus:
        status = self._request(StreamSetup(
            ecm_channel_id=self.channel_id, ecm_stream_id=stream_id, ecm_id=ecm_id,
            nominal_cp_duration_100ms=nominal_cp_duration_100ms), StreamStatus)
        assert isinstance(status, StreamStatus)
        self.stream_statuses[stream_id] = status
        return status

    def cw_provision(self, stream_id: int, cp_number: int, cws: CwInput, *,
                     access_criteria: bytes | None = None,
                     cp_duration_100ms: int | None = None) -> EcmResponse:
        response = self._request(CwProvision(
            ecm_channel_id=self.channel_id, ecm_stream_id=stream_id, cp_number=cp_number & 0xFFFF,
            cp_cw_combinations=_cp_cws(cws), access_criteria=access_criteria,
            cp_duration_100ms=cp_duration_100ms), EcmResponse)
        assert isinstance(response, EcmResponse)
        return response

    def section_of(self, response: EcmResponse) -> bytes:
        return section_from_datagram(response.ecm_datagram, self.ts_packets)

    def close_stream(self, stream_id: int) -> None:
        self._request(StreamCloseRequest(ecm_channel_id=self.channel_id, ecm_stream_id=stream_id),
                      StreamCloseResponse)
        self.stream_statuses.pop(stream_id, None)

    def test_channel(self) -> ChannelStatus:
        """channel_test → the ECMG's channel_status (a keep-alive that also proves it lives)."""
        status = self._request(ChannelTest(ecm_channel_id=self.channel_id), ChannelStatus)
        assert isinstance(status, ChannelStatus)
        self.channel_status = status
        return status

    def close(self) -> None:
        with contextlib.suppress(OSError, ProtocolError):
            self._sock.sendall(self.conn.send(ChannelClose(ecm_channel_id=self.channel_id)))
        self._sock.close()

    def _request(self, event: Event, kind: type[Event]) -> Event:
        self._sock.sendall(self.conn.send(event))
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                answer = self.conn.next_event()
            except PeerProtocolError as exc:
                self._sock.sendall(self.conn.send(self.conn.error_event(exc)))
                continue
            if isinstance(answer, kind):
                return answer
            if isinstance(answer, ChannelError | StreamError):
                raise EcmgRefused(answer)
            if isinstance(answer, Event):
                echo = _echo(answer, self.channel_status, self.stream_statuses)
                if echo is not None:
                    self._sock.sendall(self.conn.send(echo))
                    continue
            if isinstance(answer, ConnectionClosed):
                raise SimulcryptTimeout("the ECMG closed the connection",
                                        error_status=EcmgScsError.UNKNOWN_ERROR).with_id(
                    "headend.ecmg_closed_connection")
            if answer is NEED_DATA:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SimulcryptTimeout(f"no answer to {event.KIND.value}",
                                            error_status=EcmgScsError.UNKNOWN_ERROR).with_id(
                        "headend.no_answer_2", value=event.KIND.value)
                self._sock.settimeout(remaining)
                try:
                    data = self._sock.recv(65536)
                except TimeoutError as exc:
                    raise SimulcryptTimeout(f"no answer to {event.KIND.value}",
                                            error_status=EcmgScsError.UNKNOWN_ERROR).with_id(
                        "headend.no_answer_2", value=event.KIND.value) from exc
                self.conn.receive_data(data)
            # anything else (an unsolicited status) is skipped


class EcmgServiceCrypto:
    """The scrambler's per-service crypto (``cas.headend.scrambler.ServiceCrypto``) from an
    ECMG: CWs are drawn here, ECMs come from the ECMG through ``client``.

    One ECM stream per service.  ``ecm_section(cp)`` sends CW_provision with CW(cp) and
    CW(cp+1) and caches the answer; ``cw(cp)`` returns the CW the ECMG was given.  The CWs are
    drawn here, or taken from ``cws(cp)`` when given (a head-end that shares one CW per period
    between several CA systems draws them once, for all).  Thread-safe: the scrambler and other
    CA systems' workers may ask for a period's CW at once and get the same one.
    """

    def __init__(self, client: BlockingScsClient, *, channel_id: int, stream_id: int,
                 ecm_id: int, access_criteria: bytes, cw_length: int = 8,
                 nominal_cp_duration_100ms: int = 100,
                 rng: Callable[[int], bytes] = os.urandom,
                 cws: Callable[[int], bytes] | None = None) -> None:
        self._client = client
        self._channel_id = channel_id
        self.stream_id = stream_id
        self.access_criteria = access_criteria
        self.cw_length = cw_length
        self.rng = rng
        self._source = cws
        self._lock = threading.Lock()
        self._cws: dict[int, bytes] = {}
        self._ecms: dict[int, bytes] = {}
        client.setup_stream(stream_id, ecm_id=ecm_id,
                            nominal_cp_duration_100ms=nominal_cp_duration_100ms)

    @property
    def channel_id(self) -> int:
        return self._channel_id

    def cw(self, cp: int) -> bytes:
        with self._lock:
            found = self._cws.get(cp)
            if found is None:
                found = (self._source(cp) if self._source is not None
                         else generate_cw(self.rng, self.cw_length))
                self._cws[cp] = found
            return found

    def ecm_section(self, cp: int) -> bytes:
        found = self._ecms.get(cp)
        if found is None:
            response = self._client.cw_provision(
                self.stream_id, cp, [CpCw(cp_number=cp & 0xFFFF, cw=self.cw(cp)),
                                     CpCw(cp_number=(cp + 1) & 0xFFFF, cw=self.cw(cp + 1))],
                access_criteria=self.access_criteria)
            found = self._ecms[cp] = self._client.section_of(response)
            self._ecms.pop(cp - 2, None)     # keep memory flat over long streams
            with self._lock:
                for old in [c for c in self._cws if c < cp - 1]:
                    del self._cws[old]
        return found
