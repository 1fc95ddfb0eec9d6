"""Other CA systems' ECMGs on the live head-end (``[[ca_system]]``, docs/simulcrypt.md §9),
and our own when its ECMs come from an ECMG (``ecm_source = "simulcrypt"``).

SimulCrypt (ETSI TS 103 197): one control word per crypto-period, shared by every CA system on
the service.  The head-end draws the CWs (each service's CW schedule, the one that scrambles);
every configured ECMG gets the same CWs in CW_provision and answers with its own ECMs, which go
out on that CA system's ECM PID of the service, announced by its CA_descriptor in the PMT.

Three parts:

* :class:`EcmTiming` — what an ECMG's ``channel_status`` asks of the head-end (pure: which CWs
  go in a CW_provision, when the ECM of a period is on air and how often it repeats);
* :class:`CaSystemEcmg` — one CA system's worker thread: the connection to its ECMG (or its
  backup), the ECM streams, the CW_provisions one period ahead, failures, reconnection with
  back-off, metrics and log lines.  The multiplex never waits on it: it only reads what is
  ready (:meth:`CaSystemEcmg.ready`);
* :class:`EcmInserter` — the multiplex's side, window by window: every repetition instant of
  the ECM on air, the sections that are ready, on the CA system's PIDs.

An ECM that is not ready when its period's broadcast starts is not aired for that period
(counted as missed): the PID then carries nothing rather than a stale ECM.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from cas.access import AccessCriteria
from cas.errors import CasError, StreamError
from cas.formats import psi as psi_formats
from cas.formats import ts
from cas.headend.simulcrypt.ecmgscs import ChannelStatus
from cas.headend.simulcrypt.events import CpCw
from cas.live.config import LiveConfig
from cas.live.config_simulcrypt import AcMode, CaSystemConfig
from cas.live.metrics import LiveMetrics
from cas.live.psi import ServiceLayout
from cas.live.sources import PACKET_SIZE, Block

if TYPE_CHECKING:
    from cas.headend.simulcrypt.scs import BlockingScsClient
    from cas.live.scrambling import CryptoSchedule

log = logging.getLogger("cas.live.ecmgs")

#: At start, how long the playout waits at most for the CA systems' first ECMs.
START_WAIT_S = 3.0
#: After this many answers later than max_comp_time in a row, the ECMG counts as failed.
MAX_LATE_IN_A_ROW = 3
#: The worker looks for work (and at the stop flag) at least this often.
POLL_S = 0.05
#: A connection with no request for this long gets a channel_test (keeps it open across long
#: crypto-periods, and finds a dead ECMG before the next period needs it).
KEEPALIVE_S = 10.0


def cas_label(ca_system_id: int) -> str:
    """The ``ca_system_id`` label of the metrics and log lines: ``0x4AD0``."""
    return f"0x{ca_system_id:04X}"


def _event(message: str, level: int = logging.INFO, **fields: object) -> None:
    log.log(level, message, extra={"fields": fields})


# --- channel_status: the timing an ECMG asks for ----------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class EcmTiming:
    """An ECMG's ``channel_status`` (TS 103 197 §5.3.3) as the head-end applies it, in seconds.

    * ``delay_start_s`` / ``delay_stop_s``: ECM(n) is on air from ``start(n) + delay_start`` to
      ``end(n) + delay_stop`` (negative: ahead of the boundary); where the windows of n and
      n+1 overlap, ECM(n+1) takes over at its start (one ECM stream per PID); where they leave
      a gap, the PID carries nothing in it.
    * ``repetition_s``: ECM(n) is repeated this often from the start of its window.
    * ``lead_cw`` / ``cw_per_msg``: CW_provision for period n carries the CWs of periods
      ``n + lead_cw − cw_per_msg + 1 … n + lead_cw``.
    * ``max_comp_time_s``: an answer slower than this is reported late.
    """

    delay_start_s: float = 0.0
    delay_stop_s: float = 0.0
    repetition_s: float = 0.1
    lead_cw: int = 1
    cw_per_msg: int = 2
    max_comp_time_s: float = 0.1
    ac_delay_start_s: float | None = None
    ac_delay_stop_s: float | None = None

    @classmethod
    def from_status(cls, status: ChannelStatus, *, default_repetition_s: float) -> EcmTiming:
        rep = status.ecm_rep_period_ms / 1000 if status.ecm_rep_period_ms else default_repetition_s
        return cls(delay_start_s=status.delay_start_ms / 1000,
                   delay_stop_s=status.delay_stop_ms / 1000, repetition_s=rep,
                   lead_cw=status.lead_cw, cw_per_msg=status.cw_per_msg,
                   max_comp_time_s=status.max_comp_time_ms / 1000,
                   ac_delay_start_s=None if status.ac_delay_start_ms is None
                   else status.ac_delay_start_ms / 1000,
                   ac_delay_stop_s=None if status.ac_delay_stop_ms is None
                   else status.ac_delay_stop_ms / 1000)

    def check(self, crypto_period_s: float) -> None:
        """:class:`StreamError` when the head-end cannot keep these values at this period."""
        if self.cw_per_msg < 1:
            raise StreamError(f"CW_per_msg {self.cw_per_msg}: at least one CW per message"
                              ).with_id("live.cw_per_msg_least_one", cw_per_msg=self.cw_per_msg)
        if self.lead_cw < 0 or self.lead_cw > self.cw_per_msg + 2:
            raise StreamError(f"lead_CW {self.lead_cw} with CW_per_msg {self.cw_per_msg}: "
                              "the head-end draws CWs at most three periods ahead").with_id(
                "live.lead_cw_too_far", lead_cw=self.lead_cw, cw_per_msg=self.cw_per_msg)
        start_ms = f"{self.delay_start_s * 1000:.0f}"
        if abs(self.delay_start_s) >= crypto_period_s:
            raise StreamError(f"delay_start {start_ms} ms is not shorter "
                              f"than the crypto-period ({crypto_period_s:g} s)").with_id(
                "live.delay_start_not_shorter", start_ms=start_ms, cp_s=f"{crypto_period_s:g}")
        if self.crypto_window(0.0, crypto_period_s)[1] <= self.crypto_window(0.0,
                                                                             crypto_period_s)[0]:
            stop_ms = f"{self.delay_stop_s * 1000:.0f}"
            raise StreamError(f"delay_start {start_ms} ms and delay_stop "
                              f"{stop_ms} ms leave ECM(n) no time on air").with_id(
                "live.delays_leave_no_time", start_ms=start_ms, stop_ms=stop_ms)
        if self.repetition_s <= 0:
            raise StreamError("ECM_rep_period 0").with_id("live.ecm_rep_period_zero")

    def provision_cps(self, cp: int) -> tuple[int, ...]:
        """The crypto-periods whose CWs go in the CW_provision for period ``cp``."""
        last = cp + self.lead_cw
        return tuple(n for n in range(last - self.cw_per_msg + 1, last + 1) if n >= 0)

    def crypto_window(self, start_s: float, crypto_period_s: float) -> tuple[float, float]:
        """When ECM(n) is on air, for a period starting at ``start_s`` (before any take-over
        by ECM(n+1))."""
        return start_s + self.delay_start_s, start_s + crypto_period_s + self.delay_stop_s


@dataclass(frozen=True, slots=True)
class Insertion:
    t_s: float
    cp: int
    first: bool  # the first instant of ECM(cp)'s window


def insertions(timing: EcmTiming, *, a_s: float, b_s: float, crypto_period_s: float,
               first_cp: int) -> Iterator[Insertion]:
    """Every ECM insertion instant in ``[a_s, b_s)`` of multiplex time (period ``first_cp``
    starts at 0), with the period whose ECM is aired; stateless, so windows of any size give
    the same instants."""
    p = crypto_period_s
    lo = first_cp + math.floor((a_s - p - max(timing.delay_stop_s, 0.0)) / p) - 1
    hi = first_cp + math.floor((b_s - min(timing.delay_start_s, 0.0)) / p) + 1
    rep = timing.repetition_s
    for cp in range(max(lo, first_cp), hi + 1):
        start = (cp - first_cp) * p
        w0, w1 = timing.crypto_window(start, p)
        w1 = min(w1, w0 + p)  # ECM(cp+1) takes over at its own window's start
        w0 = max(w0, 0.0)     # nothing before the multiplex starts
        if w1 <= a_s or w0 >= b_s or w1 <= w0:
            continue
        k = max(0, math.ceil((a_s - w0) / rep - 1e-9))
        while True:
            t = w0 + k * rep
            if t >= w1 - 1e-9 or t >= b_s:
                break
            if t >= a_s:
                yield Insertion(t_s=t, cp=cp, first=k == 0)
            k += 1


# --- one CA system's ECMG ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class EcmStream:
    """One scrambled service as an ECM stream of a CA system."""

    service_id: int
    stream_id: int
    ecm_id: int
    ecm_pid: int
    access_criteria: bytes | None


class CaSystemEcmg:
    """One ``[[ca_system]]``: its ECMG connection on a worker thread (see the module docstring).

    ``cw_of(service_id, cp)`` is the head-end's CW of a service for a period (the one that
    scrambles it).  ``want(cp)`` (from the multiplex, never blocking) says which period is on
    air; the worker then provisions ``cp`` and ``cp + 1`` for every stream.
    """

    def __init__(self, cfg: CaSystemConfig, streams: Sequence[EcmStream], *,
                 cw_of: Callable[[int, int], bytes], crypto_period_s: float,
                 default_repetition_s: float, metrics: LiveMetrics | None = None) -> None:
        self.cfg = cfg
        self.streams = list(streams)
        self.label = cas_label(cfg.ca_system_id)
        self._cw_of = cw_of
        self.crypto_period_s = crypto_period_s
        self._default_rep_s = default_repetition_s
        self.metrics = metrics
        self.timing = EcmTiming(repetition_s=default_repetition_s)
        self._ready: dict[tuple[int, int], bytes] = {}
        self._lock = threading.Lock()
        self._wanted = -1
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.up = False
        self.active: str = ""      # HOST:PORT of the ECMG in use
        self._last_up: str = ""
        self.failures = 0
        self.switches = 0
        self.failbacks = 0
        self._which = 0  # index in _addresses() of the ECMG in use (0: primary, 1: backup)
        self._late_in_a_row = 0
        self._served = 0  # ECMs received on the current connection
        self._down = False  # an outage already reported
        self._gauge(0)

    def __repr__(self) -> str:
        return f"CaSystemEcmg(ca_system_id={self.label}, up={self.up}, active={self.active!r})"

    # --- the multiplex's side (never blocks) ----------------------------------------------------
    def want(self, cp: int) -> None:
        if cp > self._wanted:
            self._wanted = cp
            self._wake.set()

    def ready(self, service_id: int, cp: int) -> bytes | None:
        with self._lock:
            return self._ready.get((service_id, cp))

    def drop(self, service_id: int, cp: int) -> None:
        """ECM(cp) of a service missed its window: never air it later."""
        with self._lock:
            self._ready.pop((service_id, cp), None)

    # --- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"ecmg-{self.label}",
                                        daemon=True)
        self._thread.start()

    def wait_ready(self, cp: int, deadline: float) -> bool:
        """Start-up only: wait until ECM(cp) of every stream is there, or the monotonic
        ``deadline``."""
        self.want(cp)
        while time.monotonic() < deadline:
            with self._lock:
                if all((s.service_id, cp) in self._ready for s in self.streams):
                    return True
            time.sleep(0.02)
        return False

    def health(self) -> dict[str, object]:
        """This CA system in the head-end's ``/health``."""
        return {"ca_system_id": self.label, "up": self.up, "ecmg": self.active,
                "failures": self.failures, "switches": self.switches,
                "failbacks": self.failbacks}

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- the worker -----------------------------------------------------------------------------
    def _addresses(self) -> list[tuple[str, int]]:
        out = [(self.cfg.ecmg_host, self.cfg.ecmg_port)]
        if self.cfg.has_backup:
            out.append((self.cfg.backup_host, self.cfg.backup_port))
        return out

    def _run(self) -> None:
        """Connect, serve, and after a failure: the other ECMG at once if there is one and the
        last connection served ECMs; else a back-off that doubles while nothing is served.
        While the backup serves, the primary is tried again in the background and taken back
        at a crypto-period boundary once it answers (:meth:`_serve`)."""
        addresses = self._addresses()
        self._which = 0
        backoff = self.cfg.reconnect_min_s
        while not self._stop.is_set():
            host, port = addresses[self._which]
            self._served = 0
            try:
                client, timing = self._connect(host, port)
            except (CasError, OSError) as exc:
                self._failed(f"{host}:{port}", "connect", exc)
            except Exception as exc:  # a bug: one line, and the worker goes on
                log.exception("internal error in the ECMG worker of %s", self.label)
                self._failed(f"{host}:{port}", "internal", exc)
            else:
                self._adopt(f"{host}:{port}", timing)
                try:
                    self._serve(client)      # closes the client it ends with
                except (CasError, OSError) as exc:
                    self._failed(self.active, "error", exc)
                except Exception as exc:
                    log.exception("internal error in the ECMG worker of %s", self.label)
                    self._failed(self.active, "internal", exc)
            if self._stop.is_set():
                break
            if self._served:
                backoff = self.cfg.reconnect_min_s
            if len(addresses) > 1:
                self._which = 1 - self._which
                if self._served:
                    continue  # the backup (or the primary again) right away
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self.cfg.reconnect_max_s)
        self._gauge(0)

    def _connect(self, host: str, port: int) -> tuple[BlockingScsClient, EcmTiming]:
        """A connection to the ECMG at ``host:port`` with its channel and every stream set up,
        and the timing its channel_status asks for.  Changes nothing of the worker's state:
        the fail-back probe calls it from its own thread."""
        from cas.headend.simulcrypt.scs import BlockingScsClient

        timeout = max(1.0, min(5.0, self.crypto_period_s))
        client = BlockingScsClient(host, port, channel_id=1, super_cas_id=self.cfg.super_cas_id,
                         version=self.cfg.protocol_version, timeout_s=timeout)
        try:
            status = client.channel_status
            timing = EcmTiming.from_status(status, default_repetition_s=self._default_rep_s)
            timing.check(self.crypto_period_s)
            for s in self.streams:
                client.setup_stream(s.stream_id, ecm_id=s.ecm_id,
                                    nominal_cp_duration_100ms=round(self.crypto_period_s * 10))
            # an answer is useful until the period boundary; max_comp_time only reports
            client.timeout_s = max(timeout, 2 * timing.max_comp_time_s)
        except BaseException:
            self._close_client(client)
            raise
        return client, timing

    def _adopt(self, address: str, timing: EcmTiming, *, failback: bool = False) -> None:
        """The ECMG at ``address`` is now the one in use: its timing, the state, the log."""
        self.timing = timing
        if self._last_up and self._last_up != address:
            self.switches += 1
            self._inc("ecmg_switches_total")
            if failback:
                self.failbacks += 1
                self._inc("ecmg_failbacks_total")
                _event("ECMG failed back", ca_system_id=self.label, previous=self._last_up,
                       ecmg=address)
            else:
                _event("ECMG switched", logging.WARNING, ca_system_id=self.label,
                       previous=self._last_up, ecmg=address)
        self._last_up = address
        self.active = address
        self.up = True
        self._down = False
        self._late_in_a_row = 0
        self._gauge(1)
        _event("ECMG up", ca_system_id=self.label, ecmg=address,
               delay_start_ms=round(timing.delay_start_s * 1000),
               delay_stop_ms=round(timing.delay_stop_s * 1000),
               rep_period_ms=round(timing.repetition_s * 1000), lead_cw=timing.lead_cw,
               cw_per_msg=timing.cw_per_msg,
               max_comp_time_ms=round(timing.max_comp_time_s * 1000),
               streams=len(self.streams))

    def _serve(self, client: BlockingScsClient) -> None:
        """Provision ``cp`` and ``cp + 1`` of every stream as the multiplex moves on; closes
        the client it ends with.

        On the backup, a :class:`_PrimaryProbe` tries the primary meanwhile.  Once the primary
        has answered channel_setup and every stream_setup, the switch is made when the
        multiplex asks for a new period: ECM(cp) and ECM(cp + 1) are already in hand from the
        backup, so the primary's first ECM is the one of cp + 2, provisioned a whole period
        ahead like every other: no period goes without its ECM and the air never waits.
        """
        probe = _PrimaryProbe(self) if self._which == 1 else None
        last_request = time.monotonic()
        on_air = self._wanted
        try:
            while not self._stop.is_set():
                self._wake.wait(POLL_S)
                self._wake.clear()
                cp = self._wanted
                if probe is not None and cp > on_air:
                    standby = probe.take()
                    if standby is not None:
                        client = self._fail_back(client, *standby)
                        probe = None
                        last_request = time.monotonic()
                on_air = cp
                if time.monotonic() - last_request > KEEPALIVE_S:
                    client.test_channel()
                    last_request = time.monotonic()
                if cp < 0:
                    continue
                for n in (cp, cp + 1):
                    for s in self.streams:
                        if self._stop.is_set():
                            return
                        with self._lock:
                            if (s.service_id, n) in self._ready:
                                continue
                        section = self._provision(client, s, n)
                        last_request = time.monotonic()
                        with self._lock:
                            if n >= self._wanted:  # too late for its window otherwise
                                self._ready[(s.service_id, n)] = section
                            for key in [k for k in self._ready if k[1] < self._wanted - 1]:
                                del self._ready[key]
        finally:
            if probe is not None:
                probe.cancel()
            self._close_client(client)

    def _fail_back(self, backup: BlockingScsClient, primary: BlockingScsClient,
                   timing: EcmTiming) -> BlockingScsClient:
        """Leave the backup (channel_close) for the primary, which the probe has set up."""
        self._close_client(backup)
        self._which = 0
        self._adopt(f"{self.cfg.ecmg_host}:{self.cfg.ecmg_port}", timing, failback=True)
        return primary

    def _provision(self, client: BlockingScsClient, s: EcmStream, cp: int) -> bytes:
        cws = [CpCw(cp_number=n & 0xFFFF, cw=self._cw_of(s.service_id, n))
               for n in self.timing.provision_cps(cp)]
        t0 = time.perf_counter()
        response = client.cw_provision(s.stream_id, cp, cws,
                                       access_criteria=s.access_criteria)
        elapsed = time.perf_counter() - t0
        if self.metrics is not None:
            self.metrics.observe("ecmg_response_seconds", elapsed, ca_system_id=self.label)
        if elapsed > self.timing.max_comp_time_s:
            self._late_in_a_row += 1
            self._inc("ecmg_late_total")
            _event("ECMG answered late", logging.WARNING, ca_system_id=self.label,
                   ecmg=self.active, cp=cp, service=s.service_id,
                   ms=round(elapsed * 1000, 1),
                   max_comp_time_ms=round(self.timing.max_comp_time_s * 1000))
            if self._late_in_a_row >= MAX_LATE_IN_A_ROW:
                raise StreamError(f"{self._late_in_a_row} answers in a row later than "
                                  "max_comp_time").with_id(
                    "live.ecmg_late_in_a_row", n=self._late_in_a_row)
        else:
            self._late_in_a_row = 0
        section: bytes = client.section_of(response)
        self._served += 1
        return section

    def _failed(self, address: str, stage: str, exc: BaseException) -> None:
        """One failure is counted and logged as an error per outage (an ECMG that was up
        fails, or the first attempt fails); the attempts that follow while no ECMG answers
        are INFO lines, so a long outage does not flood the log or inflate the count."""
        was_up = self.up
        self.up = False
        self._gauge(0)
        message = str(exc) if isinstance(exc, CasError) else (
            getattr(exc, "strerror", None) or f"{type(exc).__name__}: {exc}")
        if was_up or not self._down:
            self._down = True
            self.failures += 1
            self._inc("ecmg_failures_total")
            _event("ECMG failed" if was_up else "ECMG unavailable", logging.ERROR,
                   ca_system_id=self.label, ecmg=address, stage=stage, error=message)
        else:
            _event("ECMG still unavailable", ca_system_id=self.label, ecmg=address,
                   stage=stage, error=message)

    @staticmethod
    def _close_client(client: BlockingScsClient) -> None:
        with contextlib.suppress(CasError, OSError):
            client.close()

    def _gauge(self, value: int) -> None:
        if self.metrics is not None:
            self.metrics.set("ecmg_up", value, ca_system_id=self.label)

    def _inc(self, name: str) -> None:
        if self.metrics is not None:
            self.metrics.inc(name, ca_system_id=self.label)


class _PrimaryProbe:
    """While a CA system's backup ECMG serves: the primary tried again on a thread of its own,
    with the worker's back-off (``reconnect_min_s`` doubling up to ``reconnect_max_s``), so a
    primary that hangs on connect never delays the backup's ECMs.  A primary that answers
    channel_setup and every stream_setup is held, set up and idle, until the worker takes it
    (:meth:`take`) at the next period boundary.  The attempts that fail are DEBUG lines: the
    outage was reported once already."""

    def __init__(self, worker: CaSystemEcmg) -> None:
        self._worker = worker
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._standby: tuple[BlockingScsClient, EcmTiming] | None = None
        self._thread = threading.Thread(target=self._run, name=f"ecmg-{worker.label}-probe",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        w = self._worker
        host, port = w.cfg.ecmg_host, w.cfg.ecmg_port
        backoff = w.cfg.reconnect_min_s
        while not self._done.wait(backoff):
            try:
                standby = w._connect(host, port)
            except Exception as exc:  # CasError, OSError, or a bug: the backup goes on
                log.debug("primary ECMG %s:%d of %s still unavailable: %s", host, port,
                          w.label, exc)
                backoff = min(backoff * 2, w.cfg.reconnect_max_s)
                continue
            with self._lock:
                if self._done.is_set():  # the worker left the backup meanwhile
                    w._close_client(standby[0])
                    return
                self._standby = standby
            _event("primary ECMG back", ca_system_id=w.label, ecmg=f"{host}:{port}",
                   using=w.active)
            return

    def take(self) -> tuple[BlockingScsClient, EcmTiming] | None:
        """The primary, set up, once it is back (the probe is then over); else None."""
        with self._lock:
            standby, self._standby = self._standby, None
            if standby is not None:
                self._done.set()
            return standby

    def cancel(self) -> None:
        """The worker leaves the backup: stop trying, close a primary held in standby."""
        with self._lock:
            self._done.set()
            standby, self._standby = self._standby, None
        if standby is not None:
            self._worker._close_client(standby[0])


# --- the multiplex's side --------------------------------------------------------------------

class EcmInserter:
    """One CA system's ECMs in the multiplex, window by window (never waits on the ECMG)."""

    def __init__(self, ecmg: CaSystemEcmg, *, crypto_period_s: float, first_cp: int,
                 metrics: LiveMetrics | None = None) -> None:
        self.ecmg = ecmg
        self.crypto_period_s = crypto_period_s
        self.first_cp = first_cp
        self.metrics = metrics
        self._pk: Mapping[int, ts.Packetizer] = {
            s.service_id: ts.Packetizer(s.ecm_pid) for s in ecmg.streams}
        self._missed: set[tuple[int, int]] = set()
        self._aired: dict[tuple[int, int], bool] = {}
        self.sections = 0
        self.missed = 0

    def window(self, a_s: float, b_s: float) -> Block:
        ecmg = self.ecmg
        ecmg.want(self.first_cp + int(b_s // self.crypto_period_s))
        out = Block()
        aired = 0
        for ins in insertions(ecmg.timing, a_s=a_s, b_s=b_s,
                              crypto_period_s=self.crypto_period_s, first_cp=self.first_cp):
            for s in ecmg.streams:
                key = (s.service_id, ins.cp)
                if key in self._missed:
                    continue
                section = ecmg.ready(s.service_id, ins.cp)
                if section is None:
                    if ins.first or key not in self._aired:
                        self._miss(key)
                    continue
                self._aired[key] = True
                packets = b"".join(self._pk[s.service_id].packetize(section))
                out.data += packets
                out.times.extend([ins.t_s] * (len(packets) // PACKET_SIZE))
                aired += 1
        if aired:
            self.sections += aired
            if self.metrics is not None:
                self.metrics.inc("ecmg_ecm_sections_total", aired, ca_system_id=ecmg.label)
        if len(self._aired) > 4 * len(ecmg.streams) + 8:
            horizon = self.first_cp + int(a_s // self.crypto_period_s) - 2
            self._aired = {k: v for k, v in self._aired.items() if k[1] >= horizon}
            self._missed = {k for k in self._missed if k[1] >= horizon}
        return out

    def _miss(self, key: tuple[int, int]) -> None:
        """ECM(cp) was not there when its broadcast was due: nothing on the PID for it."""
        self._missed.add(key)
        self.ecmg.drop(*key)
        self.missed += 1
        if self.metrics is not None:
            self.metrics.inc("ecmg_missed_ecms_total", ca_system_id=self.ecmg.label)
        if not self.ecmg.up:
            return  # the failure has its own log line; the count goes on
        _event("ECM missing", logging.WARNING, ca_system_id=self.ecmg.label,
               service=key[0], cp=key[1], ecmg_up=self.ecmg.up)


# --- wiring into the head-end -----------------------------------------------------------------

def ca_system_pids(cfg: LiveConfig) -> set[int]:
    """Every ECM PID of the ``[[ca_system]]`` tables (kept free of our own ECM PIDs)."""
    n = sum(1 for s in cfg.services if s.scrambled)
    return {ca.ecm_pid(k) for ca in cfg.ca_systems for k in range(n)}


def with_ca_systems(layout: ServiceLayout, cfg: LiveConfig, k: int) -> ServiceLayout:
    """The layout of the ``k``-th scrambled service with a CA_descriptor per ``[[ca_system]]``
    (its CA_system_ID, its ECM PID for the service, its private data) at program level; ours
    is added beside them when the PMT is built."""
    if not cfg.ca_systems:
        return layout
    extra = tuple(psi_formats.CaDescriptor(ca_system_id=ca.ca_system_id, ca_pid=ca.ecm_pid(k),
                                           private_data=ca.private_data)
                  for ca in cfg.ca_systems)
    return replace(layout, program_descriptors=layout.program_descriptors + extra)


def ca_access_criteria(ca: CaSystemConfig, criteria: AccessCriteria) -> bytes | None:
    """What the CA system's ECMG gets as access_criteria for a channel."""
    from cas.headend.simulcrypt import access_criteria as ac

    if ca.access_criteria is AcMode.FULL:
        return ac.encode_full(criteria)
    if ca.access_criteria is AcMode.REFERENCE:
        return ac.encode_reference(criteria.channel_id)
    if ca.access_criteria is AcMode.HEX:
        return ca.access_criteria_hex
    return None


def build_ca_systems(cfg: LiveConfig, scrambled: Sequence[tuple[int, AccessCriteria]],
                     crypto: CryptoSchedule, metrics: LiveMetrics | None
                     ) -> tuple[list[CaSystemEcmg], list[EcmInserter]]:
    """A worker and an inserter per ``[[ca_system]]``: one ECM stream per scrambled service
    (``(service_id, criteria)`` in service order), the CWs those that scramble it."""
    workers, inserters = [], []
    for ca in cfg.ca_systems:
        streams = [EcmStream(service_id=sid, stream_id=k + 1, ecm_id=k + 1,
                             ecm_pid=ca.ecm_pid(k),
                             access_criteria=ca_access_criteria(ca, criteria))
                   for k, (sid, criteria) in enumerate(scrambled)]
        worker = CaSystemEcmg(ca, streams, cw_of=lambda sid, cp: crypto.services[sid].cw(cp),
                              crypto_period_s=crypto.crypto_period_s,
                              default_repetition_s=cfg.scrambling.ecm_repetition_ms / 1000,
                              metrics=metrics)
        workers.append(worker)
        inserters.append(EcmInserter(worker, crypto_period_s=crypto.crypto_period_s,
                                     first_cp=crypto.first_cp, metrics=metrics))
    return workers, inserters


def own_ca_system(cfg: LiveConfig) -> CaSystemConfig:
    """Our own CA system as a ``[[ca_system]]`` when its ECMs come from an ECMG
    (``[scrambling] ecm_source = "simulcrypt"``): the same worker, metrics, back-off and
    backup as the other CA systems', under our CA_system_ID."""
    sc = cfg.scrambling
    return CaSystemConfig(index=0, ca_system_id=cfg.headend.ca_system_id,
                          ecmg_host=sc.ecmg_host, ecmg_port=sc.ecmg_port,
                          backup_host=sc.backup_host, backup_port=sc.backup_port,
                          super_cas_id=sc.super_cas_id, access_criteria=AcMode.FULL)


def build_own_ecmg(cfg: LiveConfig, scrambled: Sequence[tuple[int, int, AccessCriteria]],
                   crypto: CryptoSchedule, metrics: LiveMetrics | None
                   ) -> tuple[CaSystemEcmg, EcmInserter]:
    """Our ECMG's worker and inserter: one ECM stream per scrambled service
    (``(service_id, our ECM PID, criteria)`` in service order) on our own ECM PIDs."""
    ours = own_ca_system(cfg)
    streams = [EcmStream(service_id=sid, stream_id=k + 1, ecm_id=k + 1, ecm_pid=pid,
                         access_criteria=ca_access_criteria(ours, criteria))
               for k, (sid, pid, criteria) in enumerate(scrambled)]
    worker = CaSystemEcmg(ours, streams, cw_of=lambda sid, cp: crypto.services[sid].cw(cp),
                          crypto_period_s=crypto.crypto_period_s,
                          default_repetition_s=cfg.scrambling.ecm_repetition_ms / 1000,
                          metrics=metrics)
    return worker, EcmInserter(worker, crypto_period_s=crypto.crypto_period_s,
                               first_cp=crypto.first_cp, metrics=metrics)


def start_ca_systems(workers: Sequence[CaSystemEcmg], first_cp: int) -> None:
    """Start every worker and wait for their first ECMs, at most :data:`START_WAIT_S` in all
    (an ECMG that is down must not hold the service up)."""
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + START_WAIT_S
    for worker in workers:
        worker.wait_ready(first_cp, deadline)
