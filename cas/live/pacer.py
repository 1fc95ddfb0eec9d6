"""Pacing: TS packets out in datagrams at the time their PCR-derived schedule says.

Every packet comes with its due time on the multiplex clock (seconds since the start).  The
pacer cuts the packets into datagrams of ``packets_per_datagram`` (7 by default: 1316 bytes,
the usual TS-over-IP size) and sends each datagram when its last packet falls due:
``start + t_last`` on a monotonic clock.  The schedule is absolute, so there is no drift to
accumulate (the send times of packet *n* do not depend on how late packet *n-1* was), and a
datagram never leaves before its time, so the only burst is the datagram itself.

A datagram sent more than ``late_threshold_s`` (5 ms) after its time is counted late
(:attr:`PacerStats.late`).  Clock and sleep are arguments, so the tests drive the pacer on a
fake clock and assert what it decided, never how long it took.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass

PACKET_SIZE = 188
LATE_THRESHOLD_S = 0.005
#: What an output is handed: whole TS packets (often a zero-copy view of an immutable buffer).
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
                 realtime: bool = True) -> None:
        if not 1 <= packets_per_datagram <= 7:
            raise ValueError("packets_per_datagram must be 1..7")
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
        # One copy per feed into an immutable buffer; datagrams are zero-copy views of it.
        buf = bytes(self._pending) + bytes(data) if self._pending else bytes(data)
        self._pending_times.extend(times)
        size = self.ppd * PACKET_SIZE
        count = len(self._pending_times) // self.ppd
        view = memoryview(buf)
        ppd = self.ppd
        ptimes = self._pending_times
        sent = 0
        try:
            for d in range(count):
                if stop is not None and stop.is_set():
                    return False
                self._emit(view[d * size : (d + 1) * size], ptimes[(d + 1) * ppd - 1])
                sent += 1
        finally:
            self._pending = bytearray(view[sent * size :])
            del self._pending_times[: sent * ppd]
        return True

    def _emit(self, datagram: memoryview, t_s: float) -> None:
        assert self.start_at is not None
        due = self.start_at + t_s
        if self.realtime:
            now = self._clock()
            if due > now:
                self._sleep(due - now)
                now = self._clock()
            late = now - due
            if late > self.late_threshold_s:
                self.stats.late += 1
                if self._on_late is not None:
                    self._on_late(late)
            if late > self.stats.max_late_s:
                self.stats.max_late_s = late
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
