"""The carousel through our EMMG client to a real mux (``cas mux serve``'s server) over TCP on
127.0.0.1: the start-up EMMs and then a payment's EMM arrive at the mux, and a card applies
them."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from cas.crypto import OperatorKeys
from cas.headend.simulcrypt.mux import MemorySink, MuxConfig, MuxServer
from cas.live.carousel import CarouselSettings, EmmCarousel
from cas.live.emmg_out import run_emmg_feed
from cas.live.metrics import LiveMetrics
from tests.integration.live.test_carousel import (
    T0,
    keys,  # noqa: F401  (module fixture)
    make_base,
    make_card,
    offer,
    pay_and_subscribe,
    unique_serials,
)

CLIENT_ID = 0x4ADB_0000
DATA_ID = 7


async def _wait_for(predicate: object, timeout_s: float) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the mux")
        await asyncio.sleep(0.02)


def test_carousel_to_a_mux_over_tcp(db_url: str, keys: OperatorKeys) -> None:  # noqa: F811
    base = make_base(db_url, keys, cards=3)
    clock = [T0 + timedelta(minutes=1)]
    settings = CarouselSettings(repeat_count=2, repeat_window_s=0.5, cycle_bitrate_bps=0)
    metrics = LiveMetrics()
    carousel = EmmCarousel(base.store, keys, settings, metrics=metrics, clock=lambda: clock[0])
    sink = MemorySink()
    target = base.serials[2]

    async def scenario() -> None:
        async with MuxServer(sink, MuxConfig(udp=False)) as mux:
            stop = asyncio.Event()
            feed = asyncio.create_task(run_emmg_feed(
                carousel, host="127.0.0.1", port=mux.port, client_id=CLIENT_ID,
                data_id=DATA_ID, bandwidth_kbps=64, stop=stop, metrics=metrics))
            await asyncio.to_thread(carousel.poll)
            # every start-up EMM, twice (repeat_count=2), committed by the mux
            await _wait_for(lambda: len(sink.datagrams) >= 2 * len(base.serials), 10)
            assert sorted(set(unique_serials(sink.datagrams))) == base.serials
            pay_and_subscribe(base, target, at=T0 + timedelta(minutes=2), payment_id="mux-1")
            clock[0] = T0 + timedelta(minutes=2)
            await asyncio.to_thread(carousel.poll)
            await _wait_for(lambda: unique_serials(sink.datagrams).count(target) >= 3, 10)
            stop.set()
            await asyncio.wait_for(feed, 10)

    asyncio.run(scenario())
    assert list(sink.by_stream) == [(CLIENT_ID, DATA_ID)]
    card = make_card(keys, base.slots[target])
    applied, replayed = offer(card, sink.datagrams)
    assert applied == 2 and replayed >= 1  # start-up state, then the payment; repeats refused
    assert card.entitlements()
    assert metrics.value("emmg_bytes_sent_total") >= sum(map(len, sink.datagrams))
    carousel.close()
