"""The long-running head-end service: ``cas headend run CONFIG.toml``.

Wiring, in the order :meth:`HeadendService.open` does it:

1. the store (SQLite in the data dir, or ``db_url``) and the operator keys;
2. each ``[[service]]``'s catalogue channel (service id, name, access criteria) and its
   source, probed for its program; output PIDs are given per service (PMT ``0x1000+k``,
   elementary streams ``0x100+0x10·k+j``, ECM ``0x0C10+k`` unless configured), so sources
   with the same PIDs can share the multiplex;
3. the crypto side: our ECM generator or an ECMG over SimulCrypt, a payload cipher per service;
4. the EMM carousel fed from the store (:mod:`cas.live.carousel`), its EMMs either in our
   multiplex or sent to an external mux over EMMG⇔MUX (:mod:`cas.live.emmg_out`);
5. the output, the ops endpoint (:mod:`cas.live.ops`: ``/health`` and ``/metrics``).

Threads at run time: the **producer** builds the multiplex window by window (20 ms) up to
:data:`LOOKAHEAD_WINDOWS` ahead; the **sender** paces it out datagram by datagram; the
**carousel poller** turns committed rights changes into EMMs; asyncio (main thread) serves
the ops endpoint, runs the EMMG feed and handles SIGTERM/SIGINT.  A stop lets the sender finish
the datagram in hand, sends the remaining whole packets, and closes everything; the carousel
keeps what was pending in the store (its restart semantics, ``docs/live-ops.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cas.access import AccessCriteria
from cas.errors import CasError, ConfigError, StreamError
from cas.formats import psi as psi_formats
from cas.i18n import Msg
from cas.live.config import EcmSource, LiveConfig, LogFormat, ServiceConfig, SourceKind
from cas.live.ecmgs import ca_system_pids, start_ca_systems, with_ca_systems
from cas.live.metrics import LiveMetrics
from cas.live.outputs import Output, open_output
from cas.live.pacer import Datagram, Pacer
from cas.live.playout import EmmFeed, LiveService, Multiplexer, RealTime
from cas.live.psi import MuxSettings, PsiSchedule, ServiceLayout, build_tables
from cas.live.scrambling import CryptoSchedule, CwLog, InternalEcms, new_cipher
from cas.live.sources import FfmpegSource, FileLoop, ProgramInfo, Source, UdpSource

if TYPE_CHECKING:
    from cas.crypto import OperatorKeys
    from cas.headend.scrambler import ServiceCrypto
    from cas.live.carousel import EmmCarousel
    from cas.live.ecmgs import CaSystemEcmg, EcmInserter
    from cas.live.muxin import LiveMuxServer, MuxInputs
    from cas.store.engine import Store

log = logging.getLogger("cas.live")

FIRST_PMT_PID = 0x1000
FIRST_ES_PID = 0x0100
FIRST_ECM_PID = 0x0C10
#: Live sources play out this long after their PCR anchor (jitter buffer).
LIVE_LATENCY_S = 0.5


# --- logs ------------------------------------------------------------------------------------

class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC ISO), level, logger, event message, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name,
            "event": record.getMessage()}
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info and record.exc_info[1] is not None:
            entry["error"] = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        extra = " ".join(f"{k}={v}" for k, v in fields.items()) if isinstance(fields, dict) else ""
        stamp = time.strftime("%H:%M:%S", time.gmtime(record.created))
        return f"{stamp} {record.levelname.lower():7} {record.getMessage()} {extra}".rstrip()


def setup_logging(fmt: LogFormat, stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt is LogFormat.JSON else TextFormatter())
    root = logging.getLogger("cas.live")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


def event(message: str, level: int = logging.INFO, **fields: object) -> None:
    log.log(level, message, extra={"fields": fields})


# --- the store's clock for ECM timestamps --------------------------------------------------

class StoreClock:
    """The store's "now" in whole seconds for ECM timestamps (they decide entitlement windows on
    the card, so they follow the head-end's simulated clock), refreshed by a thread of its own
    every ``refresh_s`` so that the playout never waits on the database."""

    def __init__(self, store: Store, *, refresh_s: float = 0.5) -> None:
        self._store = store
        self._value = self._read()
        self._stop = threading.Event()
        self._refresh_s = refresh_s
        self._thread = threading.Thread(target=self._run, name="store-clock", daemon=True)
        self._thread.start()

    def _read(self) -> int:
        from cas.billing.clock import clock_now

        with self._store.reader() as session:
            return int(clock_now(session).timestamp())

    def _run(self) -> None:
        while not self._stop.wait(self._refresh_s):
            try:
                self._value = self._read()
            except CasError as exc:
                event("store clock read failed", logging.WARNING, error=str(exc))

    def __call__(self) -> int:
        return self._value

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


# --- the service -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class Channel:
    service_id: int
    number: int
    name: str
    criteria: AccessCriteria


class HeadendService:
    """See the module docstring."""

    def __init__(self, cfg: LiveConfig, *, data_dir: Path | None = None,
                 db_url: str | None = None, metrics: LiveMetrics | None = None) -> None:
        self.cfg = cfg
        self.data_dir = cfg.headend.data_dir or data_dir
        self.db_url = cfg.headend.db_url or db_url
        self.metrics = metrics if metrics is not None else LiveMetrics()
        self.store: Store | None = None
        self.keys: OperatorKeys | None = None
        self.services: list[LiveService] = []
        self.channels: dict[int, Channel] = {}
        self.mux: Multiplexer | None = None
        self.output: Output | None = None
        self.carousel: EmmCarousel | None = None
        self.crypto: CryptoSchedule | None = None
        self.cw_log: CwLog | None = None
        self.pacer: Pacer | None = None
        self.ca_ecmgs: list[CaSystemEcmg] = []
        self._clock: StoreClock | None = None
        self._request_stop: Callable[[], None] | None = None
        self.stop_event = threading.Event()
        self.started_at = 0.0
        self._last_send = 0.0
        self._errors: list[str] = []
        self.ops_port: int | None = None
        self.mux_inputs: MuxInputs | None = None
        self.mux_port: int | None = None

    # --- building -----------------------------------------------------------------------------
    def open(self, *, check: bool = False) -> None:
        """Everything but the threads; raises our errors (the caller prints one line).
        ``check``: everything but the output (``--check`` must not truncate a file or need
        the network)."""
        try:
            self._open(check)
        except BaseException:
            self.close()
            raise

    def _open(self, check: bool) -> None:
        from cas.crypto import load_operator_keys
        from cas.store.engine import open_store

        cfg = self.cfg
        if self.db_url is None and self.data_dir is None:
            raise ConfigError("[headend].data_dir: required (or --data-dir / CAS_DATA_DIR)").with_id(
                "live.headend_data_dir_required")
        # Keys first: a wrong data dir must not get a new empty store.
        self.keys = keys = load_operator_keys(cfg.headend.keys, data_dir=self.data_dir)
        self.store = store = open_store(db_url=self.db_url,
                                        data_dir=None if self.db_url else self.data_dir)
        self.channels = self._catalogue(store)
        layouts: list[ServiceLayout] = []
        used_ecm = {s.ecm_pid for s in cfg.services if s.ecm_pid is not None} | {cfg.emm.pid}
        used_ecm |= ca_system_pids(cfg)  # other CA systems' ECM PIDs (cas.live.ecmgs)
        next_ecm = FIRST_ECM_PID
        scrambled_index = 0
        for k, svc_cfg in enumerate(cfg.services):
            channel = self.channels.get(svc_cfg.channel)
            if channel is None:
                raise ConfigError(f"{cfg_name(cfg)}: [service.{svc_cfg.index}].channel: "
                                  f"channel {svc_cfg.channel} is not in the store's catalogue").with_id(
                    "live.service_channel_channel_not", cfg=cfg_name(cfg), index=svc_cfg.index,
                    channel=svc_cfg.channel)
            source = self._source(svc_cfg, channel, k)
            ecm_pid = svc_cfg.ecm_pid
            if svc_cfg.scrambled and ecm_pid is None:
                while next_ecm in used_ecm:
                    next_ecm += 1
                ecm_pid = next_ecm
                used_ecm.add(ecm_pid)
            layout, pid_map = plan_layout(source.program, index=k, channel=channel.number,
                                          service_id=channel.service_id, name=channel.name,
                                          scrambled=svc_cfg.scrambled, ecm_pid=ecm_pid)
            if svc_cfg.scrambled:
                layout = with_ca_systems(layout, cfg, scrambled_index)
                scrambled_index += 1
            source.set_pid_map(pid_map)
            cipher = new_cipher(cfg.scrambling.algorithm) if svc_cfg.scrambled else None
            self.services.append(LiveService(layout=layout, source=source, cipher=cipher))
            layouts.append(layout)
        ids = [lay.service_id for lay in layouts]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"{cfg_name(cfg)}: [[service]]: two services have one service id").with_id(
                "live.service_two_services_one", cfg=cfg_name(cfg))
        self.crypto = self._crypto(store, keys)
        inserters = self._ca_system_ecms()
        if cfg.scrambling.cw_log is not None and not check:
            self.cw_log = CwLog(cfg.scrambling.cw_log)
        self.carousel = self._carousel(store, keys)
        self.mux_inputs = self._mux_inputs(layouts)
        settings = MuxSettings(ca_system_id=cfg.headend.ca_system_id, emm_pid=cfg.emm.pid,
                               algorithm=cfg.scrambling.algorithm,
                               transport_stream_id=cfg.headend.transport_stream_id,
                               original_network_id=cfg.headend.original_network_id,
                               provider=cfg.headend.provider,
                               cat_descriptors=self._mux_cat_descriptors())
        emm_feed: EmmFeed | None = None
        if self.carousel is not None and not cfg.emm.external_mux and not self._own_emm:
            emm_feed = self.carousel
        self.mux = Multiplexer(self.services, psi=PsiSchedule(build_tables(layouts, settings)),
                               crypto=self.crypto,
                               ecm_repetition_s=cfg.scrambling.ecm_repetition_ms / 1000,
                               emm_pid=cfg.emm.pid, emm_feed=emm_feed,
                               emm_max_bitrate_bps=cfg.emm.max_bitrate_bps, cw_log=self.cw_log,
                               on_period=self._on_period, ca_systems=inserters,
                               extra_pids=self.mux_inputs)
        if not check:
            self.output = open_output(cfg.output)

    def _catalogue(self, store: Store) -> dict[int, Channel]:
        from cas.billing.catalog import all_access_criteria

        with store.reader() as session:
            return {ch.number: Channel(service_id=ch.service_id, number=ch.number, name=ch.name,
                                       criteria=crit)
                    for ch, crit in all_access_criteria(session)}

    def _source(self, svc: ServiceConfig, channel: Channel, k: int) -> Source:
        spec = svc.source
        if spec.kind is SourceKind.LOOP:
            assert spec.path is not None
            return FileLoop(spec.path, program_number=svc.program)
        if spec.kind is SourceKind.LAVFI:
            return FfmpegSource(spec.graph, service_id=channel.service_id, name=channel.name,
                                latency_s=LIVE_LATENCY_S)
        return UdpSource(spec.host, spec.port, latency_s=LIVE_LATENCY_S,
                         program_number=svc.program)

    def _crypto(self, store: Store, keys: OperatorKeys) -> CryptoSchedule | None:
        cfg = self.cfg
        scrambled = [s for s in self.services if s.layout.scrambled]
        if not scrambled:
            return None
        sc = cfg.scrambling
        cp_s = sc.crypto_period_ms / 1000
        first_cp = (int(time.time() * 1000) // sc.crypto_period_ms) & 0x7FFF_FFFF
        cw_length = sc.algorithm.cw_length
        crypto: dict[int, ServiceCrypto] = {}
        by_sid = {c.service_id: c for c in self.channels.values()}
        if sc.ecm_source is EcmSource.INTERNAL:
            from cas.headend.ecmgen import EcmGenerator

            gen = EcmGenerator(keys, ecm_key_index=sc.ecm_key_index)
            # ECMs carry the store's time at which they go out: InternalEcms seals ECM(cp)
            # again whenever the clock has moved on (at most once a second), so a right that
            # starts now (a payment) opens with the next repetition, and one that ends closes
            # on time.
            self._clock = StoreClock(store)
            from cas.billing.ppv import events_by_service

            with store.reader() as session:  # the PPV catalogue as the head-end starts
                events = events_by_service(session)
            for s in scrambled:
                crypto[s.service_id] = InternalEcms(gen, by_sid[s.service_id].criteria,
                                                    cw_length=cw_length,
                                                    timestamp_s=self._clock,
                                                    ppv_events=events.get(s.service_id, ()))
        else:
            from cas.live.scrambling import HeadendCws

            # The head-end draws the CWs; our ECMG (and every other CA system's) gets the same
            # ones through its worker (cas.live.ecmgs), which never stops the scrambling.
            for s in scrambled:
                crypto[s.service_id] = HeadendCws(s.service_id, cw_length=cw_length)

        return CryptoSchedule(crypto, crypto_period_s=cp_s, first_cp=first_cp)

    def _ca_system_ecms(self) -> list[EcmInserter]:
        """``[[ca_system]]``: each CA system's ECMG worker and its ECMs in the multiplex."""
        from cas.live.ecmgs import build_ca_systems, build_own_ecmg

        if self.crypto is None:
            return []
        by_sid = {c.service_id: c.criteria for c in self.channels.values()}
        scrambled = [s for s in self.services if s.layout.scrambled]
        self.ca_ecmgs, inserters = build_ca_systems(
            self.cfg, [(s.service_id, by_sid[s.service_id]) for s in scrambled], self.crypto,
            self.metrics)
        if self.cfg.scrambling.ecm_source is EcmSource.SIMULCRYPT:
            # our own ECMG: the same worker as the other CA systems' (failures, back-off,
            # backup_ecmg), its ECMs on our ECM PIDs
            own, inserter = build_own_ecmg(
                self.cfg, [(s.service_id, s.layout.ecm_pid or 0, by_sid[s.service_id])
                           for s in scrambled], self.crypto, self.metrics)
            self.ca_ecmgs.insert(0, own)
            inserters.insert(0, inserter)
        return inserters

    def _carousel(self, store: Store, keys: OperatorKeys) -> EmmCarousel:
        from cas.live.carousel import CarouselSettings, EmmCarousel

        e = self.cfg.emm
        settings = CarouselSettings(repeat_count=e.repeat_count, repeat_window_s=e.repeat_window_s,
                                    cycle_bitrate_bps=e.cycle_bitrate_bps,
                                    poll_interval_s=e.poll_interval_s)
        return EmmCarousel(store, keys, settings, metrics=self.metrics)

    # --- [mux]: external EMMGs/PDGs (cas.live.muxin) ------------------------------------------
    @property
    def _own_emm(self) -> bool:
        return self.cfg.mux is not None and self.cfg.mux.own_emm

    def _mux_inputs(self, layouts: list[ServiceLayout]) -> MuxInputs | None:
        mux = self.cfg.mux
        if mux is None:
            return None
        from cas.live.muxin import MuxInputs

        used: dict[int, tuple[str, Msg]] = {}
        for lay in layouts:
            sid = {"service_id": lay.service_id}
            used[lay.pmt_pid] = (f"the PMT PID of service {lay.service_id}",
                                 Msg("errors.live.problem.pmt_pid_of_service_id", sid))
            for pid in (*lay.es_pids, lay.pcr_pid):
                used[pid] = (f"a PID of service {lay.service_id}",
                             Msg("errors.live.problem.a_pid_of_service_id", sid))
            if lay.ecm_pid is not None:
                used[lay.ecm_pid] = (f"the ECM PID of service {lay.service_id}",
                                     Msg("errors.live.problem.ecm_pid_of_service_id", sid))
        for c in mux.clients:
            if c.pid in used and not c.own:
                raise ConfigError(f"{cfg_name(self.cfg)}: [mux.client.{c.index}].pid: "
                                  f"{c.pid:#x} is {used[c.pid][0]}").with_id(
                    "live.mux_client_pid_is", file=cfg_name(self.cfg), index=c.index,
                    pid=f"{c.pid:#x}", used=used[c.pid][1])
        return MuxInputs(mux, self.metrics)

    def _mux_cat_descriptors(self) -> tuple[psi_formats.CaDescriptor, ...]:
        if self.cfg.mux is None:
            return ()
        from cas.live.muxin import cat_descriptors

        return cat_descriptors(self.cfg.mux.clients)

    async def _start_mux(self) -> LiveMuxServer | None:
        if self.mux_inputs is None:
            return None
        from cas.live.muxin import LiveMuxServer

        server = LiveMuxServer(self.mux_inputs)
        try:
            await server.start()
        except OSError as exc:
            with contextlib.suppress(Exception):
                await server.close()  # TCP may listen while UDP could not
            raise ConfigError(f"{cfg_name(self.cfg)}: [mux].listen: cannot listen on "
                              f"{server.host}:{server.requested_port}: "
                              f"{exc.strerror or exc}").with_id(
                "live.mux_listen_cannot_listen", file=cfg_name(self.cfg), host=server.host,
                port=server.requested_port, value=exc.strerror or exc) from None
        self.mux_port = server.port
        event("mux listening", host=server.host, port=server.port,
              udp=self.mux_inputs.config.udp,
              clients=[c.name for c in self.mux_inputs.config.clients])
        return server

    async def _own_emm_feed(self, stop: asyncio.Event) -> None:
        """Our carousel through our own [mux] (``own_emm``), as any external EMMG would."""
        from cas.live.emmg_out import run_emmg_feed

        assert self.cfg.mux is not None and self.carousel is not None
        host = self.cfg.mux.host
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        e = self.cfg.emm
        try:
            await run_emmg_feed(self.carousel, host=host, port=self.mux_port or 0,
                                client_id=e.client_id, data_id=e.data_id,
                                bandwidth_kbps=e.bandwidth_kbps, stop=stop, metrics=self.metrics)
        except CasError as exc:
            self._fail(f"own EMMs through [mux]: {exc}")

    def _on_period(self, cp: int) -> None:
        event("crypto-period", logging.DEBUG, cp=cp, parity="odd" if cp & 1 else "even")

    # --- running ------------------------------------------------------------------------------
    def health(self) -> dict[str, object]:
        now = time.monotonic()
        sending = self.started_at > 0 and now - self._last_send < 2.0
        stats = self.pacer.stats if self.pacer is not None else None
        out: dict[str, object] = {
            "status": "ok" if sending and not self._errors else "failing",
            "uptime_s": round(now - self.started_at, 3) if self.started_at else 0.0,
            "services": [s.service_id for s in self.services],
            "datagrams": stats.datagrams if stats else 0,
            "late_datagrams": stats.late if stats else 0,
        }
        if self._errors:
            out["error"] = self._errors[-1]
        if self.ca_ecmgs:
            out["ca_systems"] = [e.health() for e in self.ca_ecmgs]
        if self.carousel is not None:
            with contextlib.suppress(Exception):
                st = self.carousel.stats()
                out["carousel_queue_depth"] = getattr(st, "queue_depth", None)
        return out

    def run(self, *, duration_s: float | None = None, install_signals: bool = True) -> int:
        """Play out until SIGTERM/SIGINT (or ``duration_s``); returns the exit code."""
        return asyncio.run(self._main(duration_s, install_signals))

    async def _main(self, duration_s: float | None, install_signals: bool) -> int:
        loop = asyncio.get_running_loop()
        stop_async = asyncio.Event()

        def request_stop() -> None:
            self.stop_event.set()
            loop.call_soon_threadsafe(stop_async.set)

        self._request_stop = request_stop

        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, request_stop)
        tasks: list[asyncio.Task[Any]] = []
        mux_server = await self._start_mux()
        server = await self._start_ops()
        threads = self._start_threads(request_stop)
        if self.carousel is not None and self.cfg.emm.external_mux:
            tasks.append(asyncio.create_task(self._emmg_feed(stop_async)))
        if self.carousel is not None and self._own_emm:
            tasks.append(asyncio.create_task(self._own_emm_feed(stop_async)))
        event("head-end started", services=[s.service_id for s in self.services],
              output=self.cfg.output.url, algorithm=self.cfg.scrambling.algorithm.value,
              ops_port=self.ops_port, mux_port=self.mux_port)
        try:
            if duration_s is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop_async.wait(), duration_s)
            else:
                await stop_async.wait()
        finally:
            request_stop()
            for t in threads:
                await asyncio.to_thread(t.join, 10)
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if mux_server is not None:
                with contextlib.suppress(Exception):
                    await mux_server.close()
            if server is not None:
                server.close()
                with contextlib.suppress(Exception):
                    await server.wait_closed()
            self.close()
        stats = self.pacer.stats if self.pacer else None
        event("head-end stopped", datagrams=stats.datagrams if stats else 0,
              late_datagrams=stats.late if stats else 0,
              packets=stats.packets if stats else 0)
        return 1 if self._errors else 0

    async def _start_ops(self) -> asyncio.AbstractServer | None:
        ops = self.cfg.ops
        if ops.listen_port < 0:
            return None
        from cas.live.ops import serve_ops

        server = await serve_ops(ops.listen_host, ops.listen_port, self.metrics, self.health)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.ops_port = int(sockets[0].getsockname()[1])
        return server

    async def _emmg_feed(self, stop: asyncio.Event) -> None:
        from cas.live.emmg_out import run_emmg_feed

        e = self.cfg.emm
        try:
            assert self.carousel is not None
            await run_emmg_feed(self.carousel, host=e.mux_host, port=e.mux_port,
                                client_id=e.client_id, data_id=e.data_id,
                                bandwidth_kbps=e.bandwidth_kbps, stop=stop, metrics=self.metrics)
        except CasError as exc:
            self._fail(f"EMMG feed: {exc}")

    def _fail(self, message: str) -> None:
        self._errors.append(message)
        event("failed", logging.ERROR, error=message)
        self.stop_event.set()
        if self._request_stop is not None:
            self._request_stop()

    def _start_threads(self, request_stop: Callable[[], None]) -> list[threading.Thread]:
        assert self.output is not None and self.mux is not None
        out = self.output
        metrics = self.metrics

        def on_late(late_s: float) -> None:
            metrics.inc("late_datagrams_total")

        def send(datagram: Datagram) -> None:
            out.send(datagram)
            self._last_send = time.monotonic()

        self.pacer = Pacer(send, packets_per_datagram=self.cfg.output.packets_per_datagram,
                           on_late=on_late,
                           wake_interval_s=self.cfg.output.wake_interval_us / 1e6)
        if self.crypto is not None:
            # The first period's keys before the clock starts (a store read or an ECMG round
            # trip), so the first datagrams are not late.
            self.crypto.keys(self.crypto.first_cp)
            start_ca_systems(self.ca_ecmgs, self.crypto.first_cp)  # a bounded wait
        self.started_at = time.monotonic()  # the pacer's clock starts in RealTime.send
        self._next_report = 1.0
        self._counts: dict[int, tuple[int, int]] = {s.service_id: (0, 0) for s in self.services}
        self._cc_seen: dict[int, int] = {}
        realtime = RealTime(self.mux, self.pacer, self.stop_event, on_window=self._report)
        threads = realtime.threads(lambda fn: self._guard(fn, request_stop))
        if self.carousel is not None:
            threads.append(threading.Thread(target=self._guard(self._poll_loop, request_stop),
                                            name="live-carousel", daemon=True))
        for t in threads:
            t.start()
        return threads

    def _guard(self, fn: Callable[[], None], request_stop: Callable[[], None]
               ) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except CasError as exc:
                self._fail(str(exc))
                request_stop()
            except Exception as exc:  # a bug: log it as one line, stop cleanly
                log.exception("internal error in %s", threading.current_thread().name)
                self._fail(f"internal error: {type(exc).__name__}: {exc}")
                request_stop()
        return run

    def _report(self, mux_s: float) -> None:
        """Once a second of multiplex time: per-service counters and bitrate gauges
        (emm_sections_total{kind} is counted by the carousel as it hands sections out)."""
        if mux_s < self._next_report:
            return
        self._next_report += 1.0
        for s in self.services:
            sid = str(s.service_id)
            packets, ecms = self._counts[s.service_id]
            self.metrics.inc("packets_sent_total", s.packets - packets, service=sid)
            self.metrics.set("service_bitrate_bps", (s.packets - packets) * 188 * 8, service=sid)
            self.metrics.inc("ecm_sections_total", s.ecm_sections - ecms, service=sid)
            self._counts[s.service_id] = (s.packets, s.ecm_sections)
            # Our output's counters are continuous by construction; what a live source lost
            # on its way in shows here.
            input_errors = getattr(s.source, "cc_errors", 0)
            seen = self._cc_seen.get(s.service_id, 0)
            self.metrics.inc("cc_errors_total", input_errors - seen, service=sid)
            self._cc_seen[s.service_id] = input_errors

    def _poll_loop(self) -> None:
        interval = self.cfg.emm.poll_interval_s
        carousel = self.carousel
        assert carousel is not None
        while not self.stop_event.is_set():
            t0 = time.monotonic()
            try:
                n = carousel.poll()
                if n:
                    event("EMMs queued", count=n)
            except CasError as exc:
                # A database hiccup must not stop the playout: try again at the next poll.
                event("carousel poll failed", logging.WARNING, error=str(exc))
            self.stop_event.wait(max(0.0, interval - (time.monotonic() - t0)))

    def close(self) -> None:
        for ecmg in self.ca_ecmgs:
            ecmg.close()
        self.ca_ecmgs = []
        for s in self.services:
            with contextlib.suppress(Exception):
                s.source.close()
        if self.crypto is not None:
            self.crypto.close()
        if self._clock is not None:
            self._clock.close()
            self._clock = None
        if self.output is not None:
            with contextlib.suppress(OSError):
                self.output.close()
            self.output = None
        if self.cw_log is not None:
            self.cw_log.close()
            self.cw_log = None
        if self.carousel is not None:
            with contextlib.suppress(Exception):
                self.carousel.close()
            self.carousel = None
        if self.store is not None:
            with contextlib.suppress(Exception):
                self.store.dispose()
            self.store = None


def cfg_name(cfg: LiveConfig) -> str:
    return cfg.name


def plan_layout(program: ProgramInfo, *, index: int, channel: int, service_id: int, name: str,
                scrambled: bool, ecm_pid: int | None) -> tuple[ServiceLayout, dict[int, int]]:
    """Output PIDs of service ``index`` (0-based) and the source PID → output PID map."""
    base = FIRST_ES_PID + 0x10 * index
    pid_map: dict[int, int] = {}
    streams = []
    for j, st in enumerate(program.streams):
        if j >= 0x0F:
            raise StreamError(f"service {service_id}: more than 15 elementary streams").with_id(
                "live.service_more_elementary_streams", service_id=service_id)
        pid_map[st.elementary_pid] = base + j
        streams.append(psi_formats.PmtStream(stream_type=st.stream_type,
                                             elementary_pid=base + j,
                                             descriptors=st.descriptors))
    if program.pcr_pid not in pid_map:
        pid_map[program.pcr_pid] = base + 0x0F
    # Program-level descriptors of the source, without any CA_descriptor of its own.
    descriptors = tuple(d for d in program.descriptors
                        if not isinstance(d, psi_formats.CaDescriptor | psi_formats.ScramblingDescriptor))
    layout = ServiceLayout(service_id=service_id, channel_number=channel, name=name,
                           pmt_pid=FIRST_PMT_PID + index, pcr_pid=pid_map[program.pcr_pid],
                           streams=tuple(streams), program_descriptors=descriptors,
                           scrambled=scrambled, ecm_pid=ecm_pid if scrambled else None)
    return layout, pid_map

