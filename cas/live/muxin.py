"""The live head-end as a MUX: external EMMGs and PDGs on their own PIDs (TS 103 197 §6).

``[mux]`` makes ``cas headend run`` accept EMMG/PDG⇔MUX connections, with the server code of
``cas mux serve`` (:mod:`cas.headend.simulcrypt.mux`: sessions, confirmation points, UDP
data on the TCP port number, idle probes) and the decisions of a head-end that knows its
clients (``[[mux.client]]``):

* **channel_setup**: a client_id not configured → channel_error ``inv_client_id`` (0x000E);
  protocol version 1 → ``inv_proto_version`` (0x0002): the live mux speaks versions 2-5,
  whose data_provision names its data_id;
* **stream_setup**: a data_id not in the client's ``data_ids`` → stream_error
  ``inv_data_id`` (0x0010); a data_type other than the client's (EMM or private data) →
  ``inv_param_value`` (0x000D, error_information data_type);
* **stream_BW_request**: the allocation is what was asked, never more than what the client's
  ``max_bandwidth_kbps`` leaves after its other open streams; nothing left → stream_error
  ``exceeded_BW`` (0x000F);
* **data_provision** beyond what the client's queue holds (``queue_s`` seconds of its maximum
  bandwidth): the datagrams that do not fit are dropped, counted
  (``mux_dropped_total``), logged once a second, and a TCP client gets a stream_error
  ``exceeded_BW`` (at most one a second per stream).

Each client has a **lane**: a bounded queue of what it sent, aired on its PID at its
allocation by the multiplex's producer thread (:meth:`MuxInputs.window`, called once per
20 ms window).  Sections are packed back to back across windows (a packet leaves only full,
or stuffed when the queue ran dry), TS packets are put on the client's PID with our own
continuity counter.  The lane's token bucket counts, at the allocated bit rate, the datagram
bytes each packet carries — 184 payload bytes of sections, or the 188 bytes of a TS packet
datagram — with at most :data:`BURST_S` (plus one packet) of credit: so the bytes on air on a client's PID
never exceed the allocation (× 188/184 for the TS headers of sections) plus one burst, and a
client that sends at its allocation — the allocation counts datagram bytes, as our EMMG paces
them — never overruns its queue.  When the client's streams are closed, the lane drains what
it holds at the last allocation.

The CAT gets one CA_descriptor per EMM client (:func:`cat_descriptors`: its CA_system_ID, its
PID, its private data); private data (PDG) goes on its PID without one, as TS 103 197 leaves
the announcement of private data to the head-end's configuration (PMT or SI; not done here).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cas.formats import psi
from cas.formats.simulcrypt import EmmgMuxError as Err
from cas.formats.simulcrypt import EmmgMuxParam as Param
from cas.headend.simulcrypt.emmgmux import (
    ChannelError,
    ChannelSetup,
    DataProvision,
    DataType,
    StreamBwAllocation,
    StreamBwRequest,
    StreamError,
    StreamSetup,
)
from cas.headend.simulcrypt.events import Event, error_information_for
from cas.headend.simulcrypt.mux import MuxConfig, MuxRegistry, MuxServer, MuxSession, _MuxStream
from cas.headend.simulcrypt.session import is_refusal
from cas.live.config_simulcrypt import MuxClientConfig, MuxDataType, MuxListenConfig
from cas.live.metrics import LiveMetrics
from cas.live.sources import PACKET_SIZE, Block

log = logging.getLogger("cas.live.mux")
#: The shared server code's own lines (syntax refusals, idle probes) in the head-end's log.
wire_log = logging.getLogger("cas.live.mux.wire")

PAYLOAD_SIZE = 184
#: At most this much of a lane's allocation (plus one packet) may go out at once after an idle
#: spell; it must be longer than the multiplex's window (20 ms).
BURST_S = 0.04
#: Minimum queue of a lane, whatever its bandwidth (a few sections).
MIN_QUEUE_BYTES = 4096
#: Overrun reports (log line, stream_error) at most this often per client / stream.
REPORT_INTERVAL_S = 1.0
#: Versions the live mux speaks (V1 data_provision has no data_id).
MIN_VERSION = 2


def _event(message: str, level: int = logging.INFO, **fields: object) -> None:
    log.log(level, message, extra={"fields": fields})


def cat_descriptors(clients: Sequence[MuxClientConfig]) -> tuple[psi.CaDescriptor, ...]:
    """One CA_descriptor per EMM client (not our own: the CAT has it already)."""
    return tuple(psi.CaDescriptor(ca_system_id=c.ca_system_id, ca_pid=c.pid,
                                  private_data=c.private_data)
                 for c in clients if c.data_type is MuxDataType.EMM and not c.own)


class SectionPacker:
    """Sections into TS packets on one PID, packed back to back *across calls*: a packet is
    made only when it is full, unless ``flush`` (then the rest is stuffed with 0xFF).

    pointer_field rule (ISO/IEC 13818-1 §2.4.4.2): a packet in which a section starts has
    payload_unit_start_indicator 1 and a pointer_field to the first such start.  A section
    that would start on the last payload byte of a packet without one is pushed to the next
    packet (the previous one ends in stuffing), so that no start goes unsignalled."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cc = 0
        self._buf = bytearray()
        self._starts: deque[int] = deque()  # section start offsets in _buf

    def add(self, section: bytes) -> None:
        self._starts.append(len(self._buf))
        self._buf += section

    @property
    def pending(self) -> int:
        return len(self._buf)

    def next_packet(self, *, flush: bool) -> bytes | None:
        """The next packet, or None when it would not be full and not ``flush``."""
        buf = self._buf
        if not buf:
            return None
        starts = self._starts
        first = starts[0] if starts else None
        if first is not None and first <= PAYLOAD_SIZE - 2:
            take = min(len(buf), PAYLOAD_SIZE - 1)
            head = bytes((first,))
            pusi = 0x40
        else:
            take = min(len(buf), PAYLOAD_SIZE)
            if first is not None and first == PAYLOAD_SIZE - 1:
                take = PAYLOAD_SIZE - 1  # see the class docstring
                full = True
            else:
                full = take == PAYLOAD_SIZE
            head = b""
            pusi = 0
            if not full and not flush:
                return None
        if pusi and take < PAYLOAD_SIZE - 1 and not flush:
            return None
        body = head + bytes(buf[:take])
        del buf[:take]
        while starts and starts[0] < take:
            starts.popleft()
        for i in range(len(starts)):
            starts[i] -= take
        header = bytes((0x47, pusi | (self.pid >> 8), self.pid & 0xFF, 0x10 | self.cc))
        self.cc = (self.cc + 1) & 0x0F
        return header + body + b"\xff" * (PAYLOAD_SIZE - len(body))


@dataclass(slots=True)
class LaneStats:
    datagrams: int = 0
    bytes: int = 0
    dropped: int = 0
    dropped_bytes: int = 0
    packets: int = 0
    connected: int = 0


class ClientLane:
    """One client's queue and its pacing onto its PID (not thread-safe: :class:`MuxInputs`
    holds the lock)."""

    def __init__(self, client: MuxClientConfig, *, queue_s: float) -> None:
        self.client = client
        self.rate_bps = client.max_bandwidth_kbps * 1000
        self.max_queue_bytes = max(MIN_QUEUE_BYTES,
                                   int(client.max_bandwidth_kbps * 1000 / 8 * queue_s))
        self._queue: deque[tuple[bytes, bool]] = deque()  # (datagram, is TS packets)
        self.queued_bytes = 0
        self._tokens = 0.0
        self._packer = SectionPacker(client.pid)
        self._ts_cc = 0
        self.stats = LaneStats()
        self._unreported_drops = 0
        self._last_report = float("-inf")

    def put(self, datagrams: Sequence[bytes], ts_packets: bool) -> int:
        """Queue what fits; returns how many datagrams were dropped."""
        dropped = 0
        for d in datagrams:
            if self.queued_bytes + len(d) > self.max_queue_bytes:
                dropped += 1
                self.stats.dropped_bytes += len(d)
                continue
            self._queue.append((bytes(d), ts_packets))
            self.queued_bytes += len(d)
            self.stats.datagrams += 1
            self.stats.bytes += len(d)
        self.stats.dropped += dropped
        self._unreported_drops += dropped
        return dropped

    def drops_to_report(self, now: float) -> int:
        """Drops not yet logged, at most once per :data:`REPORT_INTERVAL_S`."""
        if not self._unreported_drops or now - self._last_report < REPORT_INTERVAL_S:
            return 0
        self._last_report = now
        n, self._unreported_drops = self._unreported_drops, 0
        return n

    def _ts_packet(self, packet: bytes) -> bytes:
        pid = self.client.pid
        out = bytearray(packet)
        out[1] = (out[1] & 0xE0) | (pid >> 8)
        out[2] = pid & 0xFF
        if out[3] & 0x10:  # a payload: our counter (adaptation-only packets keep theirs)
            out[3] = (out[3] & 0xF0) | self._ts_cc
            self._ts_cc = (self._ts_cc + 1) & 0x0F
        return bytes(out)

    def window(self, a_s: float, b_s: float) -> list[bytes]:
        """The packets this lane airs in ``[a_s, b_s)``."""
        rate = self.rate_bps / 8
        # Credit up to one burst plus one packet: a window's share never caps below the cost of
        # the packet it is saving for, so a saturated lane airs its allocation exactly.
        self._tokens = min(self._tokens + (b_s - a_s) * rate, rate * BURST_S + PACKET_SIZE)
        out: list[bytes] = []
        while self._tokens >= self._cost():
            packet = self._next()
            if packet is None:
                break
            out.append(packet[0])
            self._tokens -= packet[1]
        if not out and not self._queue and not self._packer.pending:
            self._tokens = min(self._tokens, PACKET_SIZE)  # idle: no credit piles up
        self.stats.packets += len(out)
        return out

    def _cost(self) -> int:
        """What the next packet costs: the datagram bytes it carries, as the client counts
        them (a whole TS packet; or a packet's payload of sections)."""
        if self._queue and self._queue[0][1] and not self._packer.pending:
            return PACKET_SIZE
        return PAYLOAD_SIZE

    def _next(self) -> tuple[bytes, int] | None:
        packer = self._packer
        while True:
            packet = packer.next_packet(flush=False)
            if packet is not None:
                return packet, PAYLOAD_SIZE
            if not self._queue:
                packet = packer.next_packet(flush=True)
                return None if packet is None else (packet, PAYLOAD_SIZE)
            datagram, ts_packets = self._queue[0]
            if ts_packets:
                if packer.pending:       # a section client never sends packets too; be safe
                    packet = packer.next_packet(flush=True)
                    return None if packet is None else (packet, PAYLOAD_SIZE)
                first, rest = datagram[:PACKET_SIZE], datagram[PACKET_SIZE:]
                if rest:
                    self._queue[0] = (rest, True)
                else:
                    self._queue.popleft()
                self.queued_bytes -= len(first)
                return self._ts_packet(first), PACKET_SIZE
            self._queue.popleft()
            self.queued_bytes -= len(datagram)
            packer.add(datagram)


class MuxInputs:
    """Every client's lane; written by the mux sessions (asyncio thread), read by the
    multiplex (producer thread)."""

    def __init__(self, config: MuxListenConfig, metrics: LiveMetrics | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.metrics = metrics
        self._lock = threading.Lock()
        self.lanes = {c.client_id: ClientLane(c, queue_s=config.queue_s) for c in config.clients}
        self._clock = clock

    def client(self, client_id: int) -> MuxClientConfig | None:
        lane = self.lanes.get(client_id)
        return lane.client if lane is not None else None

    def put(self, client_id: int, datagrams: Sequence[bytes], ts_packets: bool) -> int:
        """Queue a client's datagrams; returns how many were dropped (queue full)."""
        lane = self.lanes[client_id]
        with self._lock:
            before = lane.stats.bytes
            dropped = lane.put(datagrams, ts_packets)
            kept_bytes = lane.stats.bytes - before
            report = lane.drops_to_report(self._now())
            queued = lane.queued_bytes
        name = lane.client.name
        if self.metrics is not None:
            if dropped:
                self.metrics.inc("mux_dropped_total", dropped, client_id=name)
            if len(datagrams) > dropped:
                self.metrics.inc("mux_sections_total", len(datagrams) - dropped, client_id=name)
                self.metrics.inc("mux_bytes_total", kept_bytes, client_id=name)
        if report:
            _event("mux client overran its queue: datagrams dropped", logging.WARNING,
                   client_id=name, dropped=report, queue_bytes=queued,
                   max_queue_bytes=lane.max_queue_bytes, allocation_kbps=lane.rate_bps // 1000)
        return dropped

    def _now(self) -> float:
        return self._clock()

    def write(self, *, client_id: int, data_id: int | None, datagrams: Sequence[bytes],
              ts_packets: bool) -> None:
        """:class:`~cas.headend.simulcrypt.mux.DatagramSink` (late UDP datagrams)."""
        if client_id in self.lanes:
            self.put(client_id, datagrams, ts_packets)

    def set_rate(self, client_id: int, kbps: int) -> None:
        with self._lock:
            self.lanes[client_id].rate_bps = kbps * 1000

    def connected(self, client_id: int, delta: int) -> None:
        lane = self.lanes[client_id]
        with self._lock:
            lane.stats.connected = max(0, lane.stats.connected + delta)
            n = lane.stats.connected
        if self.metrics is not None:
            self.metrics.set("mux_clients_connected", n, client_id=lane.client.name)

    def window(self, a_s: float, b_s: float) -> Block:
        """Every lane's packets for ``[a_s, b_s)``, spread evenly over the window."""
        out = Block()
        with self._lock:
            per_lane = [(lane, lane.window(a_s, b_s)) for lane in self.lanes.values()]
        for lane, packets in per_lane:
            if not packets:
                continue
            step = (b_s - a_s) / len(packets)
            out.data += b"".join(packets)
            out.times.extend(a_s + step * i for i in range(len(packets)))
            if self.metrics is not None:
                self.metrics.inc("mux_packets_total", len(packets), client_id=lane.client.name)
        return out


# --- the sessions ------------------------------------------------------------------------------

class LiveMuxSession(MuxSession):
    """A :class:`~cas.headend.simulcrypt.mux.MuxSession` with the head-end's decisions (module
    docstring)."""

    log = wire_log

    def __init__(self, config: MuxConfig, inputs: MuxInputs, registry: MuxRegistry, *,
                 peer: str = "?") -> None:
        super().__init__(config, inputs, registry, peer=peer)
        self.inputs = inputs
        self._connected_client: int | None = None
        self._last_dropped = 0
        self._last_exceeded: dict[int, float] = {}

    def handle(self, event: Event) -> list[Event]:
        if isinstance(event, StreamBwRequest):
            return [self._bw_request(event)]
        return super().handle(event)

    def _refused(self, what: str, client_id: int, status: int) -> None:
        _event(f"mux {what} refused", logging.WARNING, client_id=f"0x{client_id:08X}",
               peer=self.peer, error_status=f"0x{status:04X} {Err(status).name.lower()}")

    def _channel_setup(self, event: ChannelSetup) -> Event:
        status: int | None = None
        info: int | None = None
        if (self.conn.version or 0) < MIN_VERSION:
            status = Err.INV_PROTO_VERSION
        elif self.inputs.client(event.client_id) is None:
            status, info = Err.INV_CLIENT_ID, Param.CLIENT_ID
        if status is not None:
            self._refused("channel_setup", event.client_id, status)
            return ChannelError(client_id=event.client_id, data_channel_id=event.data_channel_id,
                                error_status=(status,),
                                error_information=error_information_for(info))
        answer = super()._channel_setup(event)
        if isinstance(answer, ChannelError):
            self._refused("channel_setup", event.client_id, answer.error_status[0])
            return answer
        self._connected_client = event.client_id
        self.inputs.connected(event.client_id, +1)
        _event("mux client connected", client_id=f"0x{event.client_id:08X}", peer=self.peer,
               data_channel_id=event.data_channel_id, version=self.conn.version,
               ts_packets=bool(event.section_tspkt_flag))
        return answer

    def _stream_setup(self, event: StreamSetup) -> Event:
        client = self.inputs.client(event.client_id)
        assert client is not None  # the channel was accepted for this client_id

        def refuse(status: int, info: int | None) -> StreamError:
            self._refused("stream_setup", event.client_id, status)
            return StreamError(client_id=event.client_id, data_channel_id=event.data_channel_id,
                               data_stream_id=event.data_stream_id, error_status=(status,),
                               error_information=error_information_for(info))

        if client.data_ids and event.data_id not in client.data_ids:
            return refuse(Err.INV_DATA_ID, Param.DATA_ID)
        wanted = DataType.EMM if client.data_type is MuxDataType.EMM else DataType.PRIVATE_DATA
        if event.data_type != wanted:
            return refuse(Err.INV_PARAM_VALUE, Param.DATA_TYPE)
        answer = super()._stream_setup(event)
        if isinstance(answer, StreamError):
            self._refused("stream_setup", event.client_id, answer.error_status[0])
        else:
            _event("mux stream open", client_id=client.name, peer=self.peer,
                   data_id=event.data_id, pid=f"0x{client.pid:04X}")
        return answer

    def _others_kbps(self, client_id: int, sid: int) -> int:
        """The allocations of the client's other open streams (every connection)."""
        total = 0
        for session, stream_id in self.registry.data_ids.values():
            if session.conn.client_id != client_id or (session is self and stream_id == sid):
                continue
            stream = session.streams.get(stream_id)
            total += stream.allocated_kbps if stream is not None else 0
        return total

    def _bw_request(self, event: StreamBwRequest) -> Event:
        client = self.inputs.client(event.client_id)
        stream = self.streams[event.data_stream_id]
        assert client is not None
        left = client.max_bandwidth_kbps - self._others_kbps(event.client_id,
                                                             event.data_stream_id)
        if left <= 0:
            self._refused("stream_BW_request", event.client_id, Err.EXCEEDED_BW)
            return StreamError(client_id=event.client_id, data_channel_id=event.data_channel_id,
                               data_stream_id=event.data_stream_id,
                               error_status=(Err.EXCEEDED_BW,),
                               error_information=error_information_for(Param.BANDWIDTH))
        asked = event.bandwidth_kbps if event.bandwidth_kbps is not None else left
        stream.allocated_kbps = min(asked, left)
        self.inputs.set_rate(event.client_id, stream.allocated_kbps + self._others_kbps(
            event.client_id, event.data_stream_id))
        _event("mux bandwidth allocated", client_id=client.name, peer=self.peer,
               asked_kbps=event.bandwidth_kbps, allocated_kbps=stream.allocated_kbps)
        return StreamBwAllocation(client_id=event.client_id,
                                  data_channel_id=event.data_channel_id,
                                  data_stream_id=event.data_stream_id,
                                  bandwidth_kbps=stream.allocated_kbps)

    def write(self, stream: _MuxStream, datagrams: Sequence[bytes]) -> None:
        client_id = self.conn.client_id or 0
        self._last_dropped = self.inputs.put(client_id, datagrams, self.ts_packets)
        self.registry.datagrams += len(datagrams) - self._last_dropped

    def _data_provision(self, event: DataProvision, *, udp: bool) -> list[Event]:
        self._last_dropped = 0
        answers = super()._data_provision(event, udp=udp)
        if self._last_dropped and not udp:
            found = self.stream_for(event)
            now = time.monotonic()
            if found is not None and now - self._last_exceeded.get(found[0], -1e9) \
                    >= REPORT_INTERVAL_S:
                self._last_exceeded[found[0]] = now
                answers.append(StreamError(
                    client_id=event.client_id, data_channel_id=self.conn.channel_id or 0,
                    data_stream_id=found[0], error_status=(Err.EXCEEDED_BW,)))
        return answers

    def _logged_apart(self, event: Event, reply: Event) -> bool:
        # Our decisions are logged by the head-end's own lines (_refused).
        return isinstance(event, ChannelSetup | StreamSetup | StreamBwRequest)

    def _sent(self, event: Event, *, refusal: bool) -> None:
        super()._sent(event, refusal=refusal or is_refusal(event))

    def close(self, *, commit: bool) -> None:
        was_open = not self.closed
        super().close(commit=commit)
        if was_open and self._connected_client is not None:
            self.inputs.connected(self._connected_client, -1)
            _event("mux client disconnected", client_id=f"0x{self._connected_client:08X}",
                   peer=self.peer, clean=commit)
            self._connected_client = None


class LiveMuxServer(MuxServer):
    """``[mux]``: TCP (and UDP on the same port number) on the configured address."""

    log = wire_log

    def __init__(self, inputs: MuxInputs) -> None:
        cfg = inputs.config
        config = MuxConfig(max_bandwidth_kbps=max(c.max_bandwidth_kbps for c in cfg.clients),
                           client_ids=frozenset(c.client_id for c in cfg.clients),
                           idle_timeout_s=cfg.idle_timeout_s or None, udp=cfg.udp)
        super().__init__(inputs, config, host=cfg.host, port=cfg.port)
        self.inputs = inputs

    def _open_session(self, peer: str) -> MuxSession:
        return LiveMuxSession(self.config, self.inputs, self.registry, peer=peer)
