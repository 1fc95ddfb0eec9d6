"""Pacing: TS packets out in datagrams at the time their PCR-derived schedule says.

Every packet comes with its due time on the multiplex clock (seconds since the start).  The
pacer cuts the packets into datagrams of ``packets_per_datagram`` (7 by default: 1316 bytes,
the usual TS-over-IP size) and sends each datagram when its last packet falls due:
``start + t_last`` on a monotonic clock.  The schedule is absolute, so there is no drift to
accumulate (the send times of packet *n* do not depend on how late packet *n-1* was), and a
datagram never leaves before its time.

**Wake-ups.**  The sender sleeps until the next datagram is due, but wakes at most once per
``wake_interval_s`` (200 µs by default): each wake-up sends every datagram already due, back
to back, and none that is not.  Below 1316 bytes × 8 / 200 µs ≈ 53 Mbit/s (7 packets per
datagram) every datagram has a wake-up of its own; above it, a wake-up sends the few datagrams
that fell due since the last one (4 at 200 Mbit/s), each at most ``wake_interval_s`` after
its time.  One sleep, one wake-up and one scheduler round trip per datagram (19,000 a second
at 200 Mbit/s) cost more CPU than the scrambling itself; ``wake_interval_s = 0`` restores them.

A datagram sent more than ``late_threshold_s`` (5 ms) after its time is counted late
(:attr:`PacerStats.late`).  Clock and sleep are arguments, so the tests drive the pacer on a
fake clock and assert what it decided, never how long it took.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass

PACKET_SIZE = 188
LATE_THRESHOLD_S = 0.005
#: The sender wakes at most once per this interval (see the module docstring).
WAKE_INTERVAL_S = 0.0002
#: What an output is handed: whole TS packets (often a view of the window's buffer; not kept).
Datagram = bytes | memoryview
#: prctl(PR_SET_TIMERSLACK): Linux lets a sleep overrun by the thread's timer slack
#: (50 µs by default); datagrams 40 µs apart need it smaller.
_PR_SET_TIMERSLACK = 29
_TIMER_SLACK_NS = 1_000


def tighten_timer_slack() -> bool:
    """Best effort: 1 µs timer slack for the calling thread (Linux); False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_TIMERSLACK, _TIMER_SLACK_NS, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def shift_thread_priority(delta: int) -> bool:
    """Best effort: move the calling thread's real-time priority by ``delta`` (Linux; only
    when the thread runs under ``SCHED_RR``/``SCHED_FIFO``, as the systemd unit's
    ``CPUSchedulingPolicy=rr`` sets it).  False if the thread is not real-time or the kernel
    refused (raising needs ``CAP_SYS_NICE`` or ``RLIMIT_RTPRIO``)."""
    if not sys.platform.startswith("linux") or not hasattr(os, "sched_getscheduler"):
        return False
    try:
        policy = os.sched_getscheduler(0)  # 0: the calling thread on Linux
        if policy not in (os.SCHED_RR, os.SCHED_FIFO):
            return False
        prio = os.sched_getparam(0).sched_priority + delta
        lo, hi = os.sched_get_priority_min(policy), os.sched_get_priority_max(policy)
        if not lo <= prio <= hi:
            return False
        os.sched_setscheduler(0, policy, os.sched_param(prio))
        return True
    except OSError:
        return False


@dataclass(slots=True)
class PacerStats:
    datagrams: int = 0
    packets: int = 0
    late: int = 0
    max_late_s: float = 0.0


class Pacer:
    """Sends datagrams through ``send`` at their due time (see the module docstring)."""

    def __init__(self, send: Callable[[Datagram], None], *, packets_per_datagram: int = 7,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 late_threshold_s: float = LATE_THRESHOLD_S,
                 on_late: Callable[[float], None] | None = None,
                 realtime: bool = True, wake_interval_s: float = WAKE_INTERVAL_S) -> None:
        if not 1 <= packets_per_datagram <= 7:
            raise ValueError("packets_per_datagram must be 1..7")
        if not 0.0 <= wake_interval_s <= LATE_THRESHOLD_S:
            raise ValueError("wake_interval_s must be 0..0.005")
        self._send = send
        self.ppd = packets_per_datagram
        self._clock = clock
        self._sleep = sleep
        self.late_threshold_s = late_threshold_s
        self._on_late = on_late
        self.realtime = realtime
        self._pending = bytearray()
        self._pending_times = array("d")
        self.start_at: float | None = None
        self.stats = PacerStats()
        self.wake_interval_s = wake_interval_s
        self._last_wake = float("-inf")

    def start(self, at: float | None = None) -> float:
        """Fix the monotonic time of multiplex time 0 (now, unless given)."""
        if self.realtime:
            tighten_timer_slack()
        self.start_at = self._clock() if at is None else at
        return self.start_at

    def now_s(self) -> float:
        """The multiplex clock: seconds since :meth:`start`."""
        if self.start_at is None:
            return 0.0
        return self._clock() - self.start_at

    def feed(self, data: bytes | bytearray, times: array[float],
             stop: threading.Event | None = None) -> bool:
        """Queue ``data`` (whole packets, ``times`` one per packet, non-decreasing) and send every
        complete datagram at its time.  Returns False if ``stop`` was set (between datagrams:
        a datagram is never cut)."""
        if self.start_at is None:
            self.start()
        # The block's buffer is the producer's last word on it: datagrams are zero-copy views
        # (one copy only when a partial datagram is left over from the previous feed).
        buf = self._pending + data if self._pending else data
        self._pending_times.extend(times)
        size = self.ppd * PACKET_SIZE
        count = len(self._pending_times) // self.ppd
        view = memoryview(buf)
        ppd = self.ppd
        ptimes = self._pending_times
        sent = 0
        try:
            if self.realtime:
                sent = self._paced(view, ptimes, count, stop)
                if sent < count:
                    return False
            else:
                for d in range(count):
                    if stop is not None and stop.is_set():
                        return False
                    self._emit(view[d * size : (d + 1) * size], ptimes[(d + 1) * ppd - 1])
                    sent += 1
        finally:
            self._pending = bytearray(view[sent * size :])
            del self._pending_times[: sent * ppd]
        return True

    def _paced(self, view: memoryview, ptimes: array[float], count: int,
               stop: threading.Event | None) -> int:
        """The real-time loop of :meth:`feed`: every datagram at its time, one wake-up at most
        per ``wake_interval_s``; returns how many were sent (fewer than ``count`` only if
        ``stop`` was set).  Locals, and the stats updated once per call: the loop runs
        19,000 times a second at 200 Mbit/s."""
        assert self.start_at is not None
        start_at = self.start_at
        clock, sleep, send = self._clock, self._sleep, self._send
        size, ppd = self.ppd * PACKET_SIZE, self.ppd
        threshold = self.late_threshold_s
        stats = self.stats
        interval = self.wake_interval_s
        stopped = stop.is_set if stop is not None else (lambda: False)
        late_count = 0
        max_late = stats.max_late_s
        d = 0
        try:
            while d < count:
                due = start_at + ptimes[(d + 1) * ppd - 1]
                now = clock()
                if due > now:
                    if stopped():
                        return d
                    sleep(max(due, self._last_wake + interval) - now)
                    now = clock()
                    self._last_wake = now
                late = now - due
                if late > threshold:
                    late_count += 1
                    if self._on_late is not None:
                        self._on_late(late)
                if late > max_late:
                    max_late = late
                send(view[d * size : (d + 1) * size])
                d += 1
        finally:
            stats.datagrams += d
            stats.packets += d * ppd
            stats.late += late_count
            stats.max_late_s = max_late
        return d

    def _emit(self, datagram: memoryview, t_s: float) -> None:
        """Not real time (``realtime=False``): straight out, in order."""
        self._send(datagram)
        self.stats.datagrams += 1
        self.stats.packets += len(datagram) // PACKET_SIZE

    def flush(self) -> None:
        """Send what is left right away, in datagrams of at most ``packets_per_datagram``
        whole packets (the last may be shorter): at a clean stop."""
        size = self.ppd * PACKET_SIZE
        for pos in range(0, len(self._pending), size):
            chunk = bytes(self._pending[pos : pos + size])
            self._send(chunk)
            self.stats.datagrams += 1
            self.stats.packets += len(chunk) // PACKET_SIZE
        self._pending = bytearray()
        self._pending_times = array("d")

    @property
    def pending_packets(self) -> int:
        return len(self._pending_times)
