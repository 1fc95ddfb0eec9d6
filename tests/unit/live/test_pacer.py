"""The pacer on a fake clock: what it sends when, never how long it took."""

from __future__ import annotations

import itertools
import os
import threading
from array import array
from collections.abc import Callable

import pytest

from cas.live.pacer import PACKET_SIZE, Datagram, Pacer, shift_thread_priority


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


def _packets(n: int, first: int = 0) -> bytes:
    return b"".join(bytes((0x47, 0, 0x10, i & 0x0F)) + bytes(184)
                    for i in range(first, first + n))


def _rig(ppd: int = 7, lag: float = 0.0) -> tuple[Pacer, FakeClock, list[tuple[float, bytes]]]:
    clock = FakeClock()
    sent: list[tuple[float, bytes]] = []

    def send(d: Datagram) -> None:
        sent.append((clock.t, bytes(d)))
        clock.t += lag

    pacer = Pacer(send, packets_per_datagram=ppd, clock=clock, sleep=clock.sleep)
    pacer.start()
    return pacer, clock, sent


def test_datagrams_of_seven_sent_when_their_last_packet_is_due() -> None:
    pacer, _clock, sent = _rig()
    times = array("d", [i * 0.001 for i in range(21)])
    pacer.feed(_packets(21), times)
    assert [len(d) for _, d in sent] == [7 * PACKET_SIZE] * 3
    assert [round(t - 100.0, 9) for t, _ in sent] == [0.006, 0.013, 0.020]
    assert pacer.stats.late == 0


def test_remainder_waits_for_the_next_feed() -> None:
    pacer, _clock, sent = _rig()
    pacer.feed(_packets(10), array("d", [i * 0.001 for i in range(10)]))
    assert len(sent) == 1 and pacer.pending_packets == 3
    pacer.feed(_packets(4, 10), array("d", [0.010 + i * 0.001 for i in range(4)]))
    assert len(sent) == 2
    assert sent[1][1] == _packets(7, 7)


def test_no_drift_over_a_simulated_minute() -> None:
    """A minute of feeds in 20 ms windows: every datagram leaves exactly at start + its time,
    however the sends before it went (absolute schedule)."""
    pacer, _clock, sent = _rig(lag=0.0001)  # each send costs 100 µs of the fake clock
    pps = 4000
    n = 0
    for _w in range(3000):  # 60 s
        k = pps // 50
        times = array("d", [(n + i) / pps for i in range(k)])
        pacer.feed(_packets(k, n), times)
        n += k
    last_t, _ = sent[-1]
    due_last = 100.0 + ((len(sent) * 7) - 1) / pps
    assert last_t == pytest.approx(due_last, abs=1e-6)
    assert pacer.stats.late == 0
    gaps = {round(b[0] - a[0], 9) for a, b in itertools.pairwise(sent)}
    assert gaps == {round(7 / pps, 9)}  # no bursts: one datagram per 7 packet intervals


def test_late_datagrams_are_counted_and_sent() -> None:
    late: list[float] = []
    clock = FakeClock()
    sent: list[bytes] = []
    pacer = Pacer(lambda d: sent.append(bytes(d)), clock=clock, sleep=clock.sleep,
                  on_late=late.append)
    pacer.start()
    clock.t += 0.020  # the sender was held up for 20 ms
    pacer.feed(_packets(14), array("d", [i * 0.001 for i in range(14)]))
    assert len(sent) == 2
    assert pacer.stats.late == 2 and len(late) == 2
    assert late[0] == pytest.approx(0.014)
    assert pacer.stats.max_late_s == pytest.approx(0.014)


def test_stop_is_between_datagrams_and_flush_sends_whole_packets() -> None:
    stop = threading.Event()
    clock = FakeClock()
    sent: list[bytes] = []

    def send(d: Datagram) -> None:
        sent.append(bytes(d))
        if len(sent) == 2:
            stop.set()

    pacer = Pacer(send, clock=clock, sleep=clock.sleep)
    pacer.start()
    assert pacer.feed(_packets(30), array("d", [i * 0.001 for i in range(30)]), stop) is False
    assert len(sent) == 2 and pacer.pending_packets == 16
    pacer.flush()
    assert [len(d) // PACKET_SIZE for d in sent] == [7, 7, 7, 7, 2]
    assert all(len(d) % PACKET_SIZE == 0 for d in sent)
    assert b"".join(sent) == _packets(30)


def test_packets_per_datagram_is_checked() -> None:
    with pytest.raises(ValueError):
        Pacer(lambda d: None, packets_per_datagram=8)


def _fast_stream(pacer: Pacer, datagrams: int, spacing_s: float) -> list[float]:
    """Feeds ``datagrams`` datagrams ``spacing_s`` apart in 20 ms windows; their due times."""
    per_packet = spacing_s / 7
    n = datagrams * 7
    times = array("d", [(i + 1) * per_packet for i in range(n)])
    step = max(7, int(0.020 / per_packet))
    for a in range(0, n, step):
        pacer.feed(_packets(min(step, n - a), a), times[a : a + step])
    return [100.0 + times[d * 7 + 6] for d in range(datagrams)]


def test_wake_interval_sends_what_is_due_per_wake_up_and_nothing_early() -> None:
    """200 Mbit/s (a datagram every 52.6 µs): one wake-up per 200 µs sends the datagrams due
    by then, back to back; none leaves before its time, none more than 200 µs after it."""
    pacer, clock, sent = _rig()
    due = _fast_stream(pacer, 4000, 1316 * 8 / 200e6)
    assert len(sent) == 4000
    delays = [t - d for (t, _), d in zip(sent, due, strict=True)]
    assert min(delays) >= -1e-9
    assert max(delays) <= 0.0002 + 1e-9
    assert len(clock.sleeps) <= 4000 * (1316 * 8 / 200e6) / 0.0002 + 2
    wakes = sorted({t for t, _ in sent})
    assert min(b - a for a, b in itertools.pairwise(wakes)) >= 0.0002 - 1e-9
    assert pacer.stats.late == 0


def test_wake_interval_zero_wakes_for_every_datagram() -> None:
    clock = FakeClock()
    sent: list[float] = []
    pacer = Pacer(lambda d: sent.append(clock.t), clock=clock, sleep=clock.sleep,
                  wake_interval_s=0.0)
    pacer.start()
    due = _fast_stream(pacer, 1000, 1316 * 8 / 200e6)
    assert sent == pytest.approx(due, abs=1e-9)
    assert len(clock.sleeps) == 1000


def test_wake_interval_is_checked() -> None:
    with pytest.raises(ValueError):
        Pacer(lambda d: None, wake_interval_s=0.006)


def _in_thread(fn: Callable[[], object]) -> object:
    box: list[object] = []
    t = threading.Thread(target=lambda: box.append(fn()))
    t.start()
    t.join()
    return box[0]


@pytest.mark.skipif(not hasattr(os, "sched_setscheduler"), reason="Linux scheduling calls")
def test_shift_thread_priority_leaves_a_normal_thread_alone() -> None:
    def run() -> tuple[bool, int]:
        return shift_thread_priority(+1), os.sched_getscheduler(0)

    assert _in_thread(run) == (False, os.SCHED_OTHER)


@pytest.mark.skipif(not hasattr(os, "sched_setscheduler"), reason="Linux scheduling calls")
def test_shift_thread_priority_moves_a_real_time_thread_only() -> None:
    """The sender one above the process's real-time priority, the producer one below; the
    other thread keeps its own."""
    def run() -> tuple[bool, int, bool, int] | None:
        try:
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(10))
        except PermissionError:
            return None
        up = shift_thread_priority(+1)
        after_up = os.sched_getparam(0).sched_priority
        down = shift_thread_priority(-2)
        return up, after_up, down, os.sched_getparam(0).sched_priority

    result = _in_thread(run)
    if result is None:
        pytest.skip("real-time scheduling needs CAP_SYS_NICE here")
    assert result == (True, 11, True, 9)
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # this thread: untouched
