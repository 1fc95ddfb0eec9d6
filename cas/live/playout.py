"""The multiplex: sources, PSI/SI, ECMs and EMMs on one time line, scrambled, in order.

:class:`Multiplexer` turns a window ``[a, b)`` of multiplex time into TS packets with their due
times, sorted by time, ready for the pacer.  It does no I/O and reads no clock: the window and
"now" are arguments (facts in, packets out), so tests run it without sleeping.

Per window, in this order:

1. **Sources**: each service's source gives its packets due before ``b``
   (:mod:`cas.live.sources`, already renumbered to the service's PIDs).
2. **Scrambling**: a scrambled service's packets are cut at crypto-period boundaries; each run
   is scrambled with CW(cp) and flagged with parity ``cp & 1`` (only elementary-stream
   payloads; headers and adaptation fields stay clear).
3. **ECMs**: at every crypto-period start and every ``ecm_repetition`` after it, ECM(cp) of
   every scrambled service on its ECM PID.  A period's first ECM goes out at the boundary;
   the box already holds CW(cp) from ECM(cp-1), which carried it as the next CW.  Other CA
   systems' ECMs (``ca_systems``) follow their ECMG's own timing (:mod:`cas.live.ecmgs`).
4. **PSI/SI**: what :class:`cas.live.psi.PsiSchedule` says is due.
5. **EMMs**: ``feed.take(now, budget)`` once per window, the budget being the EMM PID's
   bitrate ceiling over the window; sections are packed back to back on the EMM PID and
   spread over the window.
6. **External EMMGs/PDGs** (``[mux]``): what :class:`cas.live.muxin.MuxInputs` airs in the
   window, each client on its PID at its allocation.

The packets are then merged by due time (a stable sort: equal times keep the order above).
"""

from __future__ import annotations

import contextlib
import gc
import queue
import sys
import threading
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cas.formats import ts
from cas.headend.scrambler import PayloadCipher
from cas.live.pacer import Pacer, shift_thread_priority, tighten_timer_slack
from cas.live.psi import PsiSchedule, ServiceLayout
from cas.live.scrambling import CryptoSchedule, CwLog
from cas.live.sources import PACKET_SIZE, Block, Source


class EmmFeed(Protocol):
    """The part of :class:`cas.live.carousel.EmmCarousel` the multiplex uses."""

    def take(self, now_s: float, budget_bytes: int) -> list[bytes]: ...


class CaSystemEcms(Protocol):
    """Another CA system's ECMs (:class:`cas.live.ecmgs.EcmInserter`): its packets of a window."""

    def window(self, a_s: float, b_s: float) -> Block: ...


class ExtraPids(Protocol):
    """The part of :class:`cas.live.muxin.MuxInputs` the multiplex uses: packets of external
    EMMGs/PDGs on their PIDs, already paced, for one window."""

    def window(self, a_s: float, b_s: float) -> Block: ...


@dataclass(slots=True)
class LiveService:
    """A service of the multiplex: where its packets come from and how they are scrambled."""

    layout: ServiceLayout
    source: Source
    cipher: PayloadCipher | None = None
    packets: int = 0
    scrambled_packets: int = 0
    ecm_sections: int = 0

    @property
    def service_id(self) -> int:
        return self.layout.service_id


@dataclass(slots=True)
class MuxStats:
    windows: int = 0
    packets: int = 0
    psi_packets: int = 0
    ecm_packets: int = 0
    emm_sections: int = 0
    emm_packets: int = 0
    crypto_periods: int = 0
    cps: dict[int, int] = field(default_factory=dict)


class Multiplexer:
    """See the module docstring."""

    def __init__(self, services: Sequence[LiveService], *, psi: PsiSchedule,
                 crypto: CryptoSchedule | None, ecm_repetition_s: float, emm_pid: int,
                 emm_feed: EmmFeed | None = None, emm_max_bitrate_bps: int = 1_000_000,
                 cw_log: CwLog | None = None,
                 on_period: Callable[[int], None] | None = None,
                 ca_systems: Sequence[CaSystemEcms] = (),
                 extra_pids: ExtraPids | None = None) -> None:
        self.services = list(services)
        #: other CA systems' ECMs on their own PIDs (SimulCrypt, docs/simulcrypt.md §9)
        self.ca_systems = list(ca_systems)
        #: external EMMGs/PDGs on their PIDs ([mux], docs/simulcrypt.md §10)
        self.extra_pids = extra_pids
        self.psi = psi
        self.crypto = crypto
        self.ecm_repetition_s = ecm_repetition_s
        self.emm_feed = emm_feed
        self.emm_bytes_per_s = emm_max_bitrate_bps / 8
        self._emm_credit = 0.0
        self._emm_pk = ts.Packetizer(emm_pid)
        # our ECMs from an ECMG (HeadendCws) go out through its worker, with the ca_systems
        self._ecm_pk = {s.service_id: ts.Packetizer(s.layout.ecm_pid)
                        for s in self.services if s.layout.scrambled and s.layout.ecm_pid
                        and crypto is not None
                        and getattr(crypto.services.get(s.service_id), "has_ecms", True)}
        self._next_ecm_s = 0.0
        self._cw_log = cw_log
        self._on_period = on_period
        self._logged_cp: int | None = None
        self.stats = MuxStats()

    # --- one window -------------------------------------------------------------------------
    def window(self, a_s: float, b_s: float, now_s: float) -> Block:
        """Every packet due in ``[a_s, b_s)`` (sources: everything due before ``b_s``)."""
        parts: list[Block] = []
        for svc in self.services:
            block = svc.source.read(b_s, now_s)
            if not len(block):
                continue
            svc.packets += len(block)
            if svc.cipher is not None and self.crypto is not None:
                self._scramble(svc, block)
            parts.append(block)
        if self.crypto is not None and self._ecm_pk:
            parts.append(self._ecms(a_s, b_s))
        for ca in self.ca_systems:
            parts.append(ca.window(a_s, b_s))
        psi = self.psi.due(b_s - 1e-9)
        if psi:
            blk = Block()
            for t, packets in psi:
                blk.data += packets
                blk.times.extend([max(t, a_s)] * (len(packets) // PACKET_SIZE))
            self.stats.psi_packets += len(blk)
            parts.append(blk)
        if self.emm_feed is not None:
            parts.append(self._emms(a_s, b_s, now_s))
        if self.extra_pids is not None:
            parts.append(self.extra_pids.window(a_s, b_s))
        out = merge(parts)
        self.stats.windows += 1
        self.stats.packets += len(out)
        return out

    def _scramble(self, svc: LiveService, block: Block) -> None:
        assert self.crypto is not None and svc.cipher is not None
        crypto = self.crypto
        times = block.times
        view = memoryview(block.data)
        pids = svc.layout.es_pids
        start = 0
        n = len(times)
        while start < n:
            cp = crypto.cp_at(times[start])
            end = bisect_left(times, crypto.start_s(cp + 1), start)
            keys = crypto.keys(cp)[svc.service_id]
            self._note_period(cp)
            svc.scrambled_packets += svc.cipher.scramble(
                view[start * PACKET_SIZE : end * PACKET_SIZE], parity=cp & 1, pids=pids,
                cw=keys.cw)
            start = end
        view.release()

    def _note_period(self, cp: int) -> None:
        if cp == self._logged_cp or self.crypto is None:
            return
        self._logged_cp = cp
        self.stats.crypto_periods += 1
        keys = self.crypto.keys(cp)
        if self._cw_log is not None:
            for svc in self.services:
                k = keys.get(svc.service_id)
                if k is not None:
                    self._cw_log.write(service_id=svc.service_id,
                                       channel_id=svc.service_id, cp=cp, cw=k.cw,
                                       start_s=self.crypto.start_s(cp))
        if self._on_period is not None:
            self._on_period(cp)

    def _ecms(self, a_s: float, b_s: float) -> Block:
        """ECM(cp) of every scrambled service at each repetition instant in ``[a, b)``; the
        repetition grid restarts at each crypto-period boundary."""
        assert self.crypto is not None
        crypto = self.crypto
        out = Block()
        t = self._next_ecm_s
        while t < b_s:
            cp = crypto.cp_at(t + 1e-9)
            self._note_period(cp)
            for svc in self.services:
                pk = self._ecm_pk.get(svc.service_id)
                if pk is None:
                    continue
                packets = b"".join(pk.packetize(crypto.ecm(cp, svc.service_id)))
                out.data += packets
                out.times.extend([t] * (len(packets) // PACKET_SIZE))
                svc.ecm_sections += 1
                self.stats.ecm_packets += len(packets) // PACKET_SIZE
            nxt = t + self.ecm_repetition_s
            boundary = crypto.start_s(cp + 1)
            t = boundary if nxt > boundary - 1e-9 else nxt
        self._next_ecm_s = t
        return out

    def _emms(self, a_s: float, b_s: float, now_s: float) -> Block:
        assert self.emm_feed is not None
        self._emm_credit = min(self._emm_credit + (b_s - a_s) * self.emm_bytes_per_s,
                               self.emm_bytes_per_s)  # at most one second of burst
        budget = int(self._emm_credit)
        out = Block()
        if budget < PACKET_SIZE:
            return out
        sections = self.emm_feed.take(now_s, budget)
        if not sections:
            return out
        packets = self._emm_pk.packetize_many(sections)
        self._emm_credit -= len(packets) * PACKET_SIZE
        step = (b_s - a_s) / len(packets)
        out.data += b"".join(packets)
        out.times.extend(a_s + step * i for i in range(len(packets)))
        self.stats.emm_sections += len(sections)
        self.stats.emm_packets += len(packets)
        return out


def merge(parts: Sequence[Block]) -> Block:
    """One block of every packet of ``parts``, ordered by time (stable)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return Block()
    if len(parts) == 1:
        return parts[0]
    data = bytearray().join(p.data for p in parts)
    times = array("d")
    for p in parts:
        times.extend(p.times)
    n = len(times)
    order = sorted(range(n), key=times.__getitem__)
    if order == list(range(n)):
        return Block(data=data, times=times)
    mv = memoryview(data)
    out = bytearray().join([mv[i * PACKET_SIZE : (i + 1) * PACKET_SIZE] for i in order])
    mv.release()
    return Block(data=out, times=array("d", [times[i] for i in order]))


#: Multiplex windows of 20 ms; the producer runs at most LOOKAHEAD windows ahead.
WINDOW_S = 0.02
LOOKAHEAD_WINDOWS = 4


class RealTime:
    """The multiplex played out in real time by two threads.

    The **producer** builds window after window (:meth:`Multiplexer.window`: source reads,
    scrambling, ECM sealing) into a short queue; the **sender** hands each window to the
    :class:`~cas.live.pacer.Pacer`, which sends datagram by datagram at their times.  The
    producer's work (much of it in libdvbcsa, which releases the GIL) happens while the sender
    sleeps between wake-ups; a short GIL switch interval lets the sender wake on time.

    Both threads may share one core.  Under real-time scheduling (``SCHED_RR``, as the systemd
    unit sets it) threads of equal priority do not preempt each other, so a sender that woke
    while the producer was scrambling would wait until the producer blocked (stalls of 5–50 ms
    at 150–200 Mbit/s).  The sender therefore moves one priority step up and the producer one
    step down (:func:`~cas.live.pacer.shift_thread_priority`; each best effort, a no-op under
    normal scheduling).  ``stop`` ends both between two datagrams; the sender then flushes
    what is left.
    """

    #: How often the interpreter hands the GIL over between threads (the sender must wake
    #: on time while the producer runs Python code).
    switch_interval_s = 0.0005

    def __init__(self, mux: Multiplexer, pacer: Pacer, stop: threading.Event, *,
                 window_s: float = WINDOW_S, lookahead: int = LOOKAHEAD_WINDOWS,
                 on_window: Callable[[float], None] | None = None) -> None:
        self.mux = mux
        self.pacer = pacer
        self.stop = stop
        self.window_s = window_s
        self._queue: queue.Queue[Block | None] = queue.Queue(maxsize=lookahead)
        self._on_window = on_window

    def threads(self, wrap: Callable[[Callable[[], None]], Callable[[], None]] = lambda f: f
                ) -> list[threading.Thread]:
        """The two threads, not started (``wrap`` may add error handling around each)."""
        sys.setswitchinterval(self.switch_interval_s)
        # Everything built so far (a looped file's per-packet tables: hundreds of thousands
        # of objects) lives as long as the service: keep it out of the cyclic collector, whose
        # full passes would hold the GIL for milliseconds while the sender should be sending.
        gc.freeze()
        return [threading.Thread(target=wrap(self.produce), name="live-producer", daemon=True),
                threading.Thread(target=wrap(self.send), name="live-sender", daemon=True)]

    def produce(self) -> None:
        shift_thread_priority(-1)  # the sender preempts the producer (see the class docstring)
        a = 0.0
        while not self.stop.is_set():
            b = a + self.window_s
            block = self.mux.window(a, b, self.pacer.now_s())
            while not self.stop.is_set():
                try:
                    self._queue.put(block, timeout=0.1)
                    break
                except queue.Full:
                    continue
            a = b
            if self._on_window is not None:
                self._on_window(a)
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)

    def send(self) -> None:
        tighten_timer_slack()  # per thread: this is the one that sleeps between datagrams
        shift_thread_priority(+1)  # above the producer and the process's other threads
        if self.pacer.start_at is None:
            # Multiplex time 0 starts once the producer is a full queue ahead (or after a
            # second): the first windows' one-off costs never make the first datagrams late.
            deadline = time.monotonic() + 1.0
            while (not self._queue.full() and time.monotonic() < deadline
                   and not self.stop.is_set()):
                time.sleep(0.005)
            self.pacer.start()
        while not self.stop.is_set():
            try:
                block = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if block is None:
                break
            if len(block) and not self.pacer.feed(block.data, block.times, self.stop):
                break
        self.pacer.flush()
