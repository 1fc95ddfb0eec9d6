"""``cas diag stream udp://…``: the stream probe on a live input, for a while.

The same :class:`cas.diag.probe.StreamProbe` as for a file (so the same report and the
same alarms), fed from a socket (:mod:`firmware_stub.udpin`: unicast, multicast, RTP) for
``duration_s`` seconds or until a signal.  Time is the stream's PCR, as for a file; the
capture window is what the report's ``duration_s`` covers.  Datagrams are gathered and
handed to the probe in large pieces, because the probe works on columns of many packets.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from cas.diag.probe import ProbeReport, StreamProbe
from cas.errors import StreamError
from firmware_stub.udpin import InputStats, LiveInput

#: Hand the probe this much at once (or what arrived in :data:`FEED_EVERY_S`).
FEED_BYTES = 4 << 20
FEED_EVERY_S = 0.5
POLL_S = 0.2


def probe_live(source: LiveInput, *, duration_s: float | None, stop: threading.Event,
               clock: Callable[[], float] = time.monotonic,
               **probe_options: Any) -> tuple[ProbeReport, InputStats]:
    """Probe ``source`` until ``duration_s`` has passed, ``stop`` is set or a pipe ends."""
    probe = StreamProbe(source=source.url, **probe_options)
    pending = bytearray()
    start = last_feed = clock()
    deadline = start + duration_s if duration_s is not None else None
    while not stop.is_set() and not source.eof:
        now = clock()
        if deadline is not None and now >= deadline:
            break
        data = source.read(POLL_S if deadline is None else min(POLL_S, deadline - now))
        pending += data
        if len(pending) >= FEED_BYTES or (pending and clock() - last_feed >= FEED_EVERY_S):
            probe.feed(bytes(pending))
            pending.clear()
            last_feed = clock()
    if pending:
        probe.feed(bytes(pending))
    if probe.size_bytes == 0:
        raise StreamError(f"{source.url}: nothing received in {clock() - start:.1f} s").with_id(
            "diag.nothing_received", url=source.url, value=f"{clock() - start:.1f}")
    return probe.finish(), source.stats
