"""The box on a live input: the verdicts kept up to date while the stream goes on.

A file ends and then the box gives its lock report; a head-end on the network does not
end.  In live mode the same pass (:class:`firmware_stub.box.Box.start`: EMMs to the card,
ECMs to the card, CWs to the key slots, descrambling, PES start checks) is fed as the
datagrams arrive, every channel's verdict is taken again with the same rule as at the end
of a file (:func:`firmware_stub.verdict.verdict`), and each *change* of a channel's verdict is an event:
one JSON line with the time (UTC), the channel, OPEN/LOCKED, the reason, the on-screen
code and message.  Each EMM the card answers is an event too (its sequence number and the
card's result: applied, replayed, ...).  On stop (a signal, ``--duration``, the end of a pipe) the full report
is given as in file mode.

:class:`ChannelWatch` is the pure part — verdicts in, events out; :func:`run_live` is the
loop around an input (:mod:`firmware_stub.udpin`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import BinaryIO

from cas.errors import FormatError
from cas.formats.emm import parse_emm
from cas.reasons import Reason
from firmware_stub.box import Box
from firmware_stub.osd import OsdEvent
from firmware_stub.report import ChannelStatus, LockReport
from firmware_stub.udpin import InputStats, LiveInput

#: How long a channel may wait for its first ECM before "no ECM" is news (a box tuning in
#: sees the PMT before the next ECM repetition; that moment is not a lock).
SETTLE_S = 1.0
#: Longest wait for input before the loop looks at its stop flag and deadline again.
POLL_S = 0.2
#: Verdicts are taken again at most this often while data pours in.
CHECK_EVERY_S = 0.05
#: A scrambled channel whose ECM PID has carried no section for this long has lost its
#: ECMs: ``NO_ECM``, whatever the card last said (its control words are running out).
ECM_LOST_S = 3.0
#: The input counts as flowing while its last data is at most this old.
INPUT_ALIVE_S = 1.0


def utc_text(at: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a ``Z``: ``2026-12-03T07:44:18.123Z``."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelEvent:
    """A channel's verdict changed (or was first known)."""

    at: datetime
    status: ChannelStatus
    previous: Reason | None = None

    def to_json(self) -> dict[str, object]:
        s = self.status
        return {"event": "channel", "time": utc_text(self.at), "channel": s.channel,
                "service_id": s.service_id, "name": s.name, "state": s.state,
                "reason": s.reason.value, "code": s.screen_code, "message": s.message,
                "detail": s.detail,
                "previous": self.previous.value if self.previous is not None else None}


@dataclass(frozen=True, slots=True, kw_only=True)
class EmmEvent:
    """The card answered an EMM addressed to it (the box hands each EMM over once)."""

    at: datetime
    address_type: str  # unique | shared | global
    seq: int | None
    sw: int
    result: str  # applied | replayed | expired | bad_mac | ...

    def to_json(self) -> dict[str, object]:
        return {"event": "emm", "time": utc_text(self.at), "address": self.address_type,
                "seq": self.seq, "sw": f"{self.sw:04X}", "result": self.result}


def emm_seq(section: bytes) -> int | None:
    """The sequence number in an EMM's clear header (None if it does not parse)."""
    try:
        return parse_emm(section).header.seq
    except FormatError:
        return None


@dataclass(slots=True)
class _Seen:
    first_s: float
    announced: Reason | None = None
    #: the channel number announced with it (the service id until the SDT's LCN is known)
    number: int | None = None


class ChannelWatch:
    """Which verdicts are news.

    1. A channel is announced the first time its verdict is known — except "no ECM yet"
       (``NO_ECM`` on a PID where no ECM has arrived), which is held back for
       :data:`SETTLE_S` after the channel appeared, because the next ECM repetition will
       usually decide it.
    2. After that, every change of its reason is announced (OPEN ⇄ LOCKED, or one lock
       reason to another), and a change of its number (announced under its service id
       before the SDT's logical channel number arrived); the detail text is not news.
    3. ``channel``: only that channel (``stb watch`` asks the card for its ECMs only).
    4. ``final``: at the stop every channel not yet announced is announced as it stands.
    """

    def __init__(self, *, channel: int | None = None, settle_s: float = SETTLE_S) -> None:
        self.channel = channel
        self.settle_s = settle_s
        self._seen: dict[int, _Seen] = {}

    def update(self, statuses: Sequence[ChannelStatus], now_s: float, at: datetime, *,
               waiting: Callable[[ChannelStatus], bool] = lambda s: False,
               final: bool = False) -> list[ChannelEvent]:
        events: list[ChannelEvent] = []
        for status in statuses:
            if self.channel is not None and status.channel != self.channel:
                continue
            seen = self._seen.get(status.service_id)
            if seen is None:
                seen = self._seen[status.service_id] = _Seen(first_s=now_s)
            if seen.announced is status.reason and seen.number == status.channel:
                continue
            if (seen.announced is None and not final and waiting(status)
                    and now_s - seen.first_s < self.settle_s):
                continue
            events.append(ChannelEvent(at=at, status=status, previous=seen.announced))
            seen.announced = status.reason
            seen.number = status.channel
        return events

    def states(self) -> dict[int, Reason]:
        """service_id -> last announced reason."""
        return {sid: s.announced for sid, s in self._seen.items() if s.announced is not None}


class StopCause(StrEnum):
    SIGNAL = "signal"  # the stop event (SIGINT / SIGTERM in the CLI)
    DURATION = "duration"
    EOF = "eof"  # the pipe or file ended


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveResult:
    report: LockReport
    input: InputStats
    duration_s: float
    events: int
    stopped_by: StopCause
    packets_out: int = 0
    packets_dropped: int = 0

    def to_json(self) -> dict[str, object]:
        return {"duration_s": round(self.duration_s, 3), "stopped_by": self.stopped_by.value,
                "events": self.events, "input": self.input.to_json(),
                **self.report.to_json(),
                **({"packets_out": self.packets_out, "packets_dropped": self.packets_dropped}
                   if self.packets_out or self.packets_dropped else {})}


def run_live(box: Box, source: LiveInput, *,
             on_event: Callable[[ChannelEvent | EmmEvent | OsdEvent], None],
             stop: threading.Event, duration_s: float | None = None,
             channel: int | None = None, out: BinaryIO | None = None, pin: str | None = None,
             clock: Callable[[], float] = time.monotonic,
             wall: Callable[[], datetime] = lambda: datetime.now(UTC),
             settle_s: float = SETTLE_S) -> LiveResult:
    """Read ``source`` until ``stop`` is set, ``duration_s`` has passed or a pipe ends;
    scan every channel (or watch ``channel`` into ``out``); ``on_event`` per change."""
    run = box.start(channel=channel, out=out, pin=pin)
    watch = ChannelWatch(channel=channel, settle_s=settle_s)
    ecm = run.ecm

    def waiting(status: ChannelStatus) -> bool:
        if status.reason is not Reason.NO_ECM or status.ecm_pid is None:
            return False
        st = ecm.get(status.ecm_pid)
        return st is None or (st.reason is None and not st.garbage and not st.rejected)

    events = 0

    def announce(batch: list[ChannelEvent]) -> None:
        nonlocal events
        for event in batch:
            events += 1
            on_event(event)

    # ECM PID -> (sections seen, when that count last changed): a PID gone quiet while the
    # rest of the input keeps coming is lost (no input at all is not an ECM problem: the
    # time without any is not counted).
    ecm_seen: dict[int, tuple[int, float]] = {}
    last_data = [float("-inf")]

    def lost(statuses: Sequence[ChannelStatus], now_s: float) -> list[ChannelStatus]:
        if now_s - last_data[0] > INPUT_ALIVE_S:
            for quiet, (count, _since) in ecm_seen.items():
                ecm_seen[quiet] = (count, now_s)
        out = []
        for status in statuses:
            pid = status.ecm_pid
            st = ecm.get(pid) if pid is not None else None
            if pid is None or st is None or not status.scrambled:
                out.append(status)
                continue
            count, since = ecm_seen.get(pid, (-1, now_s))
            if st.sections != count:
                ecm_seen[pid] = (st.sections, now_s)
                since = now_s
            if now_s - since >= ECM_LOST_S and status.reason is not Reason.NO_ECM:
                status = replace(status, reason=Reason.NO_ECM,
                                 detail=f"no ECM on PID {pid} for {now_s - since:.0f} s")
            out.append(status)
        return out

    def check() -> None:
        now_s = clock()
        announce(watch.update(lost(run.statuses(), now_s), now_s, wall(), waiting=waiting))

    # Verdicts change when the card answers an ECM: look then, in the middle of a read, so
    # a state that lasts less than one read (a fast pipe) is still announced.
    run.on_ecm_answer = check
    # on-screen messages: announced as they come and go, each shown for its display time
    run.osd.clock = clock
    run.osd.on_event = on_event

    def emm_answer(kind: str, section: bytes, sw: int, result: str) -> None:
        on_event(EmmEvent(at=wall(), address_type=kind, seq=emm_seq(section), sw=sw,
                          result=result))

    run.on_emm_answer = emm_answer
    start = clock()
    deadline = start + duration_s if duration_s is not None else None
    last_check = float("-inf")
    stopped_by = StopCause.SIGNAL
    while True:
        if stop.is_set():
            break
        now = clock()
        if deadline is not None and now >= deadline:
            stopped_by = StopCause.DURATION
            break
        if source.eof:
            stopped_by = StopCause.EOF
            break
        wait = POLL_S if deadline is None else min(POLL_S, deadline - now)
        data = source.read(wait)
        if data:
            last_data[0] = clock()
            run.feed(data)
            if out is not None:
                run.flush_output()
        now = clock()
        if now - last_check >= CHECK_EVERY_S or not data:
            last_check = now
            check()
            run.osd.tick()
    run.demux.finish()
    report = run.finish()
    announce(watch.update(report.channels, clock(), wall(), final=True))
    return LiveResult(report=report, input=source.stats, duration_s=clock() - start,
                      events=events, stopped_by=stopped_by, packets_out=run.packets_out,
                      packets_dropped=run.packets_dropped)
