"""The carousel's EMMs to an external mux over EMMG/PDG⇔MUX (ETSI TS 103 197 §6).

``[emm] mux = "emmg://HOST:PORT"``: instead of the head-end's own EMM PID, the sections go
through our EMMG client (:class:`cas.headend.simulcrypt.emmg.EmmgClient`: channel and
stream set-up, bandwidth allocation, data_provision paced at the allocation, stream_test
confirmation points, reconnection with resend of the unconfirmed tail) to a mux that
carries them — ``cas mux serve`` or a third-party one.

A feeder task moves sections from :meth:`EmmCarousel.take` into a live outbox at the
requested bandwidth (a token bucket with at most one second of credit); the client sends them.
The outbox is kept short (``MAX_BACKLOG_S`` of bandwidth) so a mux that is down does not make
the carousel's repeats pile up behind it.  On ``stop`` the feeder stops taking, the client
gets up to ``DRAIN_TIMEOUT_S`` to have what it holds confirmed, then the connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from cas.headend.simulcrypt.emmg import EmmgClient, EmmgConfig
from cas.headend.simulcrypt.outbox import Outbox
from cas.live.carousel import EmmCarousel
from cas.live.metrics import LiveMetrics

log = logging.getLogger("cas.live.emmg_out")

TICK_S = 0.02
MAX_BACKLOG_S = 0.5
DRAIN_TIMEOUT_S = 2.0


class LiveOutbox(Outbox):
    """An outbox filled with :meth:`put` that never runs dry (a live stream has no end)."""

    def __init__(self) -> None:
        super().__init__(())

    def _pull(self) -> bool:
        return False

    def unsent_bytes(self) -> int:
        """Bytes put but not yet written to the mux."""
        return sum(len(self._pending[i])
                   for i in range(self.sent - self.acked, len(self._pending)))


class _ByteCounter:
    """Moves the client's byte count into ``emmg_bytes_sent_total`` as it grows."""

    def __init__(self, client: EmmgClient, metrics: LiveMetrics | None) -> None:
        self.client = client
        self.metrics = metrics
        self.counted = 0

    def __call__(self) -> None:
        sent = self.client.stats.bytes_sent
        if self.metrics is not None and sent > self.counted:
            self.metrics.inc("emmg_bytes_sent_total", sent - self.counted)
        self.counted = max(self.counted, sent)


async def _feed(carousel: EmmCarousel, outbox: LiveOutbox, count: _ByteCounter, *,
                bandwidth_kbps: int, stop: asyncio.Event) -> None:
    rate_bytes_s = bandwidth_kbps * 1000 / 8
    credit = 0.0
    last = time.monotonic()
    while not stop.is_set():
        now = time.monotonic()
        credit = min(credit + (now - last) * rate_bytes_s, rate_bytes_s)
        last = now
        backlog = outbox.unsent_bytes()
        if backlog < rate_bytes_s * MAX_BACKLOG_S and credit >= 1:
            for section in carousel.take(now, int(credit)):
                outbox.put(section)
                credit -= len(section)
        count()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), TICK_S)


async def run_emmg_feed(carousel: EmmCarousel, *, host: str, port: int, client_id: int,
                        data_id: int, bandwidth_kbps: int, stop: asyncio.Event,
                        data_channel_id: int = 1, data_stream_id: int = 1,
                        metrics: LiveMetrics | None = None) -> None:
    """Feed the carousel to the mux at ``host:port`` until ``stop`` is set (reconnecting
    whenever the mux goes away)."""
    outbox = LiveOutbox()
    config = EmmgConfig(host=host, port=port, client_id=client_id, data_id=data_id,
                        data_channel_id=data_channel_id, data_stream_id=data_stream_id,
                        bandwidth_kbps=bandwidth_kbps, close_when_done=False,
                        max_connect_attempts=None)
    client = EmmgClient(config, outbox)
    count = _ByteCounter(client, metrics)
    client_task = asyncio.create_task(client.run(), name="emmg-client")
    log.info("EMMG feed started", extra={"fields": {"mux": f"{host}:{port}",
                                                    "bandwidth_kbps": bandwidth_kbps}})
    try:
        feeder = asyncio.create_task(_feed(carousel, outbox, count,
                                           bandwidth_kbps=bandwidth_kbps, stop=stop),
                                     name="emmg-feeder")
        done, _ = await asyncio.wait({feeder, client_task}, return_when=asyncio.FIRST_COMPLETED)
        if client_task in done:  # the client gave up (e.g. the mux refused us): say why
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
            client_task.result()
            return
        await feeder
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while (outbox.unsent or outbox.unconfirmed) and time.monotonic() < deadline \
                and not client_task.done():
            await asyncio.sleep(TICK_S)
    finally:
        client.stop()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(client_task, DRAIN_TIMEOUT_S)
        if not client_task.done():
            client_task.cancel()
        count()
        log.info("EMMG feed stopped", extra={"fields": {"bytes": client.stats.bytes_sent}})
