"""The ECMG: answers an SCS's CW_provisions with ECMs (ETSI TS 103 197 §5).

Three layers, so that each can be tested alone:

* :class:`EcmgSession` — the ECMG's decisions for one SCS connection, without I/O: an event
  from the :class:`~.connection.Connection` in, the events to answer with out.
* :class:`EcmgRegistry` — what the sessions share: channel ids and ECM_ids in use, stream
  counts (TS 103 197 makes ECM_channel_id unique per ECMG and ECM_id unique per Super_CAS_id).
* :class:`EcmgServer` — asyncio TCP: one task per SCS connection, each isolated (an error in
  one never touches another).

The ECM itself comes from an :data:`EcmBuilder`: a plain callable from :class:`EcmRequest` to
one ECM section.  :func:`sealed_ecm_builder` is cas-sim's (``cas.messages.seal_ecm`` with the
operator's ECM key); tests and benches may plug any other.

What we announce in channel_status and why (docs/simulcrypt.md has the table):

* ``lead_CW = 1``, ``CW_per_msg = 2``: an ECM for crypto-period n carries CW(n) and CW(n+1),
  so a box holds the next key before the switch.
* ``delay_start = delay_stop = 0``: ECM(n) is broadcast exactly during period n.  Starting it
  earlier would overwrite the register still in use: CW(n+1) has the parity of CW(n-1).
* ``section_TSpkt_flag``: TS 103 197 lets the *ECMG* announce the datagram format in
  channel_status (channel_setup has no such parameter); ``EcmgConfig.ts_packets`` picks it,
  per Super_CAS_id if needed.  In packet form the ECM goes on the null PID with a per-stream
  continuity counter: the SCS puts it on its ECM PID.
* ``max_comp_time`` (default 100 ms) is a promise kept by shedding: a CW_provision that has
  waited ``shed_after_ms`` in the ECMG before its turn comes (``cas ecmg serve``: half of
  max_comp_time by default) — the ECMG is overloaded — is answered at once with stream_error
  ``out_of_compute`` (0x000D, "ECMG out of computational resources") instead of an ECM that
  would come too late.  Shedding is cheap, so an overloaded ECMG catches up rather than
  queueing without bound; the SCS learns immediately and may provide again.  The wait is
  counted from when the bytes were read from the connection; time spent in the kernel or in
  the SCS is not the ECMG's to see (benchmarks/simulcrypt.md measures both sides).
* The load it accepts can be capped with ``max_cw_per_s``: a stream costs one CW_provision per
  nominal_CP_duration, and a stream_setup that would take the ECMG past the cap is refused
  with ``out_of_compute`` too, so the load an ECMG accepts is one it can serve in time.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import cas
from cas.crypto import OperatorKeys
from cas.errors import FormatError, LocalProtocolError
from cas.formats import ts
from cas.formats.simulcrypt import ECMG_SCS
from cas.formats.simulcrypt import EcmgScsError as Err
from cas.formats.simulcrypt import EcmgScsParam as Param
from cas.headend.ecmgen import EcmGenerator, cw_slots

from . import access_criteria as ac
from .connection import Role
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
from .endpoint import DEFAULT_IDLE_TIMEOUT_S, ServerEndpoint
from .events import CpCw, Event, error_information_for
from .session import ServerSession

log = logging.getLogger("cas.simulcrypt.ecmg")

NULL_PID = 0x1FFF


@dataclass(frozen=True, slots=True, kw_only=True)
class EcmRequest:
    """Everything an ECM builder may use for one ECM.

    ``cws`` holds every CP_CW_combination of the CW_provision (CP numbers wrap at 0xFFFF);
    ``access_criteria`` is the SCS's opaque parameter (the last one it sent on this stream).
    """

    super_cas_id: int
    channel_id: int
    stream_id: int
    ecm_id: int | None
    cp_number: int
    cws: tuple[CpCw, ...]
    access_criteria: bytes
    at: datetime
    cp_duration_100ms: int | None = None

    def cw_for(self, cp_number: int) -> bytes | None:
        for combo in self.cws:
            if combo.cp_number == cp_number & 0xFFFF:
                return combo.cw
        return None


EcmBuilder = Callable[[EcmRequest], bytes]
"""Builds one ECM section.  May raise FormatError (bad access_criteria: answered with
inv_param_value) or LocalProtocolError carrying the error_status to answer with."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EcmgConfig:
    """What the ECMG accepts and announces."""

    ca_system_id: int = cas.DEFAULT_CA_SYSTEM_ID
    """Super_CAS_id accepted when its top 16 bits are this (any CA_subsystem_id)."""
    ts_packets: bool = False
    """Answer with ECMs as 188-byte TS packets rather than sections."""
    ts_packets_for: Mapping[int, bool] = field(default_factory=dict)
    """Per-Super_CAS_id override of :attr:`ts_packets`."""
    delay_start_ms: int = 0
    delay_stop_ms: int = 0
    ecm_rep_period_ms: int = 100
    max_streams_per_channel: int = 0
    """0: no limit (announced as 0, as TS 103 197 allows)."""
    max_channels: int = 0
    max_streams: int = 0
    """ECMG-wide stream limit; 0: none."""
    min_cp_duration_100ms: int = 1
    lead_cw: int = 1
    cw_per_msg: int = 2
    max_comp_time_ms: int = 100
    shed_after_ms: int | None = None
    """Shed (answer out_of_compute) a CW_provision that waited this long before its turn
    (``cas ecmg serve`` uses half of :attr:`max_comp_time_ms` unless told); None or 0: never
    (an embedding that does its own load control, tests of other things)."""
    max_cw_per_s: float | None = None
    """Refuse stream_setups (out_of_compute) beyond this many CW_provisions per second in
    all (each stream brings 1 / nominal_CP_duration); None: no cap."""
    max_message_length: int = 8192
    idle_timeout_s: float | None = DEFAULT_IDLE_TIMEOUT_S
    """A connection silent this long is probed with channel_test, and closed if still silent
    after as long again; one without an open channel is closed at once (None: never;
    :mod:`.endpoint`)."""

    def __post_init__(self) -> None:
        if not 0 < self.ca_system_id <= 0xFFFF:
            raise ValueError("ca_system_id must be 1..0xFFFF")
        if self.lead_cw != 1 or self.cw_per_msg != 2:
            raise ValueError("our ECM carries the current and the next CW: lead_CW 1, CW_per_msg 2")
        if self.idle_timeout_s is not None and not self.idle_timeout_s > 0:
            raise ValueError("idle_timeout_s must be positive (None: no timeout)")
        if not 0 < self.max_comp_time_ms <= 0xFFFF:
            raise ValueError("max_comp_time_ms is 1..65535")
        if self.shed_after_ms is not None and not 0 <= self.shed_after_ms <= self.max_comp_time_ms:
            raise ValueError("shed_after_ms is 0 (never) up to max_comp_time_ms")

    @property
    def shed_after_s(self) -> float | None:
        """The wait after which a CW_provision is shed (None: never)."""
        return self.shed_after_ms / 1000 if self.shed_after_ms else None

    def accepts(self, super_cas_id: int) -> bool:
        return super_cas_id >> 16 == self.ca_system_id

    def packets_for(self, super_cas_id: int) -> bool:
        return self.ts_packets_for.get(super_cas_id, self.ts_packets)


class EcmgRegistry:
    """ECMG-wide bookkeeping shared by the sessions (single event loop: no locks)."""

    def __init__(self) -> None:
        self.channels: set[int] = set()
        self.ecm_ids: set[tuple[int, int]] = set()    # (Super_CAS_id, ECM_id)
        self.stream_count = 0
        self.cw_per_s = 0.0
        """CW_provisions per second the accepted streams bring (their nominal periods)."""
        self.ecms_sent = 0
        self.errors_sent = 0
        self.shed = 0
        """CW_provisions answered out_of_compute because they waited too long."""
        self._shed_logged = 0
        self._shed_log_at = 0.0
        #: CW_provision -> ECM_response compute times (ms), most recent first out.
        self.compute_ms: deque[float] = deque(maxlen=200_000)
        #: bytes read -> ECM_response built (ms): the wait for its turn plus the compute.
        self.in_ecmg_ms: deque[float] = deque(maxlen=200_000)

    def compute_summary(self) -> dict[str, float | int]:
        """p50 / p99 / max of the recent compute times."""
        return _summary(self.compute_ms)

    def in_ecmg_summary(self) -> dict[str, float | int]:
        """p50 / p99 / max of read -> answer built (what the ECMG can vouch for against
        max_comp_time)."""
        return _summary(self.in_ecmg_ms)

    def note_shed(self, now: float) -> None:
        """Count a shed CW_provision; log a summary at most once a second (not one line
        per request: an overloaded ECMG must not also flood its log)."""
        self.shed += 1
        if now - self._shed_log_at >= 1.0:
            log.warning("overloaded: %d CW_provision(s) answered out_of_compute (0x%04X) "
                        "since the last report, %d in all", self.shed - self._shed_logged,
                        Err.OUT_OF_COMPUTE, self.shed)
            self._shed_logged = self.shed
            self._shed_log_at = now


def _summary(times_ms: deque[float]) -> dict[str, float | int]:
    values = sorted(times_ms)
    if not values:
        return {"count": 0}

    def pick(q: float) -> float:
        return round(values[min(len(values) - 1, int(q * (len(values) - 1) + 0.5))], 3)

    return {"count": len(values), "p50_ms": pick(0.50), "p99_ms": pick(0.99),
            "max_ms": round(values[-1], 3)}


def cw_rate(nominal_cp_duration_100ms: int) -> float:
    """CW_provisions per second a stream with this nominal crypto-period brings."""
    return 10 / nominal_cp_duration_100ms


@dataclass(slots=True)
class _Stream:
    ecm_id: int | None
    nominal_cp_duration_100ms: int
    access_criteria: bytes = b""
    packetizer: ts.Packetizer | None = None


class EcmgSession(ServerSession):
    """The ECMG side of one SCS connection, without I/O.

    ``receive(data)`` returns the bytes to send back; ``closed`` tells the driver to close
    (the loop is :class:`~.session.ServerSession`'s).  ``received_at`` (``monotonic`` time)
    is when the bytes were read, for shedding CW_provisions that waited too long; None: they
    are never shed.
    """

    log = log

    def __init__(self, config: EcmgConfig, builder: EcmBuilder, registry: EcmgRegistry, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 monotonic: Callable[[], float] = time.perf_counter,
                 peer: str = "?") -> None:
        super().__init__(Role.ECMG, max_message_length=config.max_message_length, peer=peer)
        self.config = config
        self.builder = builder
        self.registry = registry
        self.clock = clock
        self.monotonic = monotonic
        self.super_cas_id: int | None = None
        self.streams: dict[int, _Stream] = {}
        self._channel_registered: int | None = None

    # --- what the session loop asks ------------------------------------------------------------
    def _logged_apart(self, event: Event, reply: Event) -> bool:
        # a shed CW_provision: the registry logs a summary (note_shed), not one line each
        return isinstance(event, CwProvision) and isinstance(reply, StreamError) \
            and reply.error_status == (Err.OUT_OF_COMPUTE,)

    def _sent(self, event: Event, *, refusal: bool) -> None:
        if isinstance(event, ChannelError | StreamError):
            self.registry.errors_sent += 1
        elif isinstance(event, EcmResponse):
            self.registry.ecms_sent += 1

    def _channel_test(self) -> Event:
        assert self.conn.channel_id is not None
        return ChannelTest(ecm_channel_id=self.conn.channel_id)

    def _failure_answer(self, error_status: int) -> Event:
        return ChannelError(ecm_channel_id=self.conn.channel_id or 0,
                            error_status=(error_status,))

    def _peer_closed(self) -> None:
        self.close()

    def close(self) -> None:
        """Release everything this connection held in the registry."""
        if self.closed:
            return
        self.closed = True
        for sid in list(self.streams):
            self._drop_stream(sid)
        if self._channel_registered is not None:
            self.registry.channels.discard(self._channel_registered)
            self._channel_registered = None

    def _drop_stream(self, stream_id: int) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return
        self.registry.stream_count -= 1
        self.registry.cw_per_s -= cw_rate(stream.nominal_cp_duration_100ms)
        if stream.ecm_id is not None and self.super_cas_id is not None:
            self.registry.ecm_ids.discard((self.super_cas_id, stream.ecm_id))

    # --- decisions ---------------------------------------------------------------------------
    def handle(self, event: Event) -> list[Event]:
        """The events that answer ``event`` (already accepted by the state machine)."""
        if isinstance(event, CwProvision):
            return [self._cw_provision(event)]
        if isinstance(event, ChannelSetup):
            return [self._channel_setup(event)]
        if isinstance(event, ChannelTest):
            return [self._channel_status(event.ecm_channel_id)]
        if isinstance(event, StreamSetup):
            return [self._stream_setup(event)]
        if isinstance(event, StreamTest):
            return [self._stream_status(event.ecm_channel_id, event.ecm_stream_id)]
        if isinstance(event, StreamCloseRequest):
            self._drop_stream(event.ecm_stream_id)
            return [StreamCloseResponse(ecm_channel_id=event.ecm_channel_id,
                                        ecm_stream_id=event.ecm_stream_id)]
        if isinstance(event, ChannelClose):
            self.close()
            return []
        if isinstance(event, ChannelError | StreamError):
            log.info("%s: SCS reports %s", self.peer, event)
        return []   # channel_status / stream_status answering our tests need nothing

    def _channel_status(self, channel_id: int) -> ChannelStatus:
        c = self.config
        return ChannelStatus(
            ecm_channel_id=channel_id,
            section_tspkt_flag=int(c.packets_for(self.super_cas_id or 0)),
            delay_start_ms=c.delay_start_ms, delay_stop_ms=c.delay_stop_ms,
            ecm_rep_period_ms=c.ecm_rep_period_ms, max_streams=c.max_streams_per_channel,
            min_cp_duration_100ms=c.min_cp_duration_100ms, lead_cw=c.lead_cw,
            cw_per_msg=c.cw_per_msg, max_comp_time_ms=c.max_comp_time_ms)

    def _channel_setup(self, event: ChannelSetup) -> Event:
        cid = event.ecm_channel_id

        def refuse(status: int, info: int | None = None) -> ChannelError:
            return ChannelError(ecm_channel_id=cid, error_status=(status,),
                                error_information=error_information_for(info))

        if not self.config.accepts(event.super_cas_id):
            return refuse(Err.INV_SUPER_CAS_ID, Param.SUPER_CAS_ID)
        if cid in self.registry.channels:
            return refuse(Err.CHANNEL_ID_IN_USE, Param.ECM_CHANNEL_ID)
        if self.config.max_channels and len(self.registry.channels) >= self.config.max_channels:
            return refuse(Err.TOO_MANY_CHANNELS)
        self.registry.channels.add(cid)
        self._channel_registered = cid
        self.super_cas_id = event.super_cas_id
        return self._channel_status(cid)

    def _stream_status(self, channel_id: int, stream_id: int) -> StreamStatus:
        stream = self.streams[stream_id]
        return StreamStatus(ecm_channel_id=channel_id, ecm_stream_id=stream_id,
                            ecm_id=stream.ecm_id if self.conn.version != 1 else None,
                            access_criteria_transfer_mode=0)

    def _stream_setup(self, event: StreamSetup) -> Event:
        cid, sid = event.ecm_channel_id, event.ecm_stream_id

        def refuse(status: int, info: int | None = None) -> StreamError:
            return StreamError(ecm_channel_id=cid, ecm_stream_id=sid, error_status=(status,),
                               error_information=error_information_for(info))

        c = self.config
        assert self.super_cas_id is not None
        if event.nominal_cp_duration_100ms < c.min_cp_duration_100ms:
            return refuse(Err.INV_PARAM_VALUE, Param.NOMINAL_CP_DURATION)
        if c.max_streams_per_channel and len(self.streams) >= c.max_streams_per_channel:
            return refuse(Err.TOO_MANY_STM_CHAN)
        if c.max_streams and self.registry.stream_count >= c.max_streams:
            return refuse(Err.TOO_MANY_STM_ECMG)
        load = cw_rate(event.nominal_cp_duration_100ms)
        if c.max_cw_per_s is not None and self.registry.cw_per_s + load > c.max_cw_per_s + 1e-9:
            # more CW_provisions than it can answer in time: refuse now, not late later
            return refuse(Err.OUT_OF_COMPUTE, Param.NOMINAL_CP_DURATION)
        if event.ecm_id is not None:
            key = (self.super_cas_id, event.ecm_id)
            if key in self.registry.ecm_ids:
                return refuse(Err.ECM_ID_IN_USE, Param.ECM_ID)
            self.registry.ecm_ids.add(key)
        self.registry.stream_count += 1
        self.registry.cw_per_s += load
        packetizer = ts.Packetizer(NULL_PID) if c.packets_for(self.super_cas_id) else None
        self.streams[sid] = _Stream(ecm_id=event.ecm_id, packetizer=packetizer,
                                    nominal_cp_duration_100ms=event.nominal_cp_duration_100ms)
        return self._stream_status(cid, sid)

    def _cw_provision(self, event: CwProvision) -> Event:
        started = self.monotonic()
        shed_after = self.config.shed_after_s
        if shed_after is not None and self._received_at is not None \
                and started - self._received_at > shed_after:
            # It has waited past its share of max_comp_time: an ECM now would come late.
            # Its access_criteria still count (transfer mode 0: the SCS may not repeat them).
            if event.access_criteria is not None:
                self.streams[event.ecm_stream_id].access_criteria = event.access_criteria
            self.registry.note_shed(started)
            return StreamError(ecm_channel_id=event.ecm_channel_id,
                               ecm_stream_id=event.ecm_stream_id,
                               error_status=(Err.OUT_OF_COMPUTE,))
        answer = self._cw_provision_answer(event)
        done = self.monotonic()
        self.registry.compute_ms.append((done - started) * 1000)
        if self._received_at is not None:
            self.registry.in_ecmg_ms.append((done - self._received_at) * 1000)
        return answer

    def _cw_provision_answer(self, event: CwProvision) -> Event:
        cid, sid, cp = event.ecm_channel_id, event.ecm_stream_id, event.cp_number

        def refuse(status: int, info: int | None = None) -> StreamError:
            return StreamError(ecm_channel_id=cid, ecm_stream_id=sid, error_status=(status,),
                               error_information=error_information_for(info))

        stream = self.streams[sid]
        if event.cw_encryption is not None:
            # CWs must come in clear: we know no CW_encryption scheme to agree on.
            return refuse(Err.INV_PARAM_VALUE, Param.CW_ENCRYPTION)
        wanted = {cp, (cp + 1) & 0xFFFF}
        given = {c.cp_number for c in event.cp_cw_combinations}
        if not wanted <= given or len(event.cp_cw_combinations) < self.config.cw_per_msg:
            return refuse(Err.NOT_ENOUGH_CW, Param.CP_CW_COMBINATION)
        if len({len(c.cw) for c in event.cp_cw_combinations}) != 1:
            return refuse(Err.INV_PARAM_VALUE, Param.CP_CW_COMBINATION)
        if event.access_criteria is not None:
            stream.access_criteria = event.access_criteria
        if not stream.access_criteria:
            return refuse(Err.MISSING_PARAM, Param.ACCESS_CRITERIA)
        assert self.super_cas_id is not None
        request = EcmRequest(
            super_cas_id=self.super_cas_id, channel_id=cid, stream_id=sid, ecm_id=stream.ecm_id,
            cp_number=cp, cws=event.cp_cw_combinations, access_criteria=stream.access_criteria,
            at=self.clock(), cp_duration_100ms=event.cp_duration_100ms)
        try:
            section = self.builder(request)
        except LocalProtocolError as exc:
            return refuse(exc.error_status)
        except FormatError:
            return refuse(Err.INV_PARAM_VALUE, Param.ACCESS_CRITERIA)
        datagram = b"".join(stream.packetizer.packetize(section)) if stream.packetizer \
            else section
        return EcmResponse(ecm_channel_id=cid, ecm_stream_id=sid, cp_number=cp,
                           ecm_datagram=datagram)


# --- the default ECM builder ---------------------------------------------------------------------
def sealed_ecm_builder(keys: OperatorKeys, *, ecm_key_index: int = 0,
                       resolve: ac.CriteriaResolver | None = None,
                       rng: Callable[[int], bytes] = os.urandom) -> EcmBuilder:
    """cas-sim's ECMs, from :class:`cas.headend.ecmgen.EcmGenerator` (sealed with
    ``keys.ecm_key(ecm_key_index)``).

    The access criteria come from the SCS's access_criteria parameter (:mod:`.access_criteria`:
    full form, or a lineup reference looked up with ``resolve``).  ECM(CP) carries CW(CP) and
    CW(CP+1) in their even/odd slots, table_id 0x80 | (CP & 1), CP_number as the crypto-period
    and the request time as the timestamp.
    """
    generator = EcmGenerator(keys, ecm_key_index=ecm_key_index, rng=rng)

    def build(request: EcmRequest) -> bytes:
        criteria = ac.decode(request.access_criteria, resolve)
        cp = request.cp_number
        current, following = request.cw_for(cp), request.cw_for(cp + 1)
        if current is None or following is None:
            raise LocalProtocolError("CW_provision lacks CW(CP) or CW(CP+1)",
                                     error_status=Err.NOT_ENOUGH_CW).with_id(
                "headend.cw_provision_lacks_cw")
        even, odd = cw_slots(cp, current, following)
        return generator.ecm(criteria, cp=cp, cw_even=even, cw_odd=odd,
                             timestamp_s=int(request.at.timestamp()))

    return build


# --- asyncio server ------------------------------------------------------------------------------
class EcmgServer(ServerEndpoint[EcmgSession]):
    """asyncio TCP ECMG: ``async with EcmgServer(...) as server: ... server.port``."""

    NAME = "ECMG"
    SPEC = ECMG_SCS
    log = log

    def __init__(self, builder: EcmBuilder, config: EcmgConfig | None = None, *,
                 host: str = "127.0.0.1", port: int = 0,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__(host=host, port=port)
        self.builder = builder
        self.config = config or EcmgConfig()
        self.clock = clock
        self.registry = EcmgRegistry()

    @property
    def idle_timeout_s(self) -> float | None:
        return self.config.idle_timeout_s

    def _open_session(self, peer: str) -> EcmgSession:
        return EcmgSession(self.config, self.builder, self.registry, clock=self.clock,
                           peer=peer)

    def _end_session(self, session: EcmgSession) -> None:
        session.close()
