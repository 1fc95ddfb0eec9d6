"""Command EMMs through the live head-end: a pay-per-view booking made while the box is off
reaches the card once the box is back, though the booking's own airings are long over.

``cas headend run`` plays channel 1 (with a pre-bookable event on air) over UDP on
127.0.0.1 to ``stb scan``.  The box is stopped, the event is booked (``book_event``, the
billing call behind ``cas ppv book``: its EMM queued in the outbox), the booking's repeats are
aired to nobody, then the box starts again on the same port: only the carousel's background
cycle can bring the booking now, and it must come before the card's rights EMM or in an
order the card accepts.  Runs on SQLite and PostgreSQL; timeouts are liveness bounds.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cas.billing import service
from cas.billing.ppv import add_event, book_event
from cas.live.outbox import COMMAND_KINDS
from cas.store.models import EmmOutbox
from cas.store.repo import to_s
from tests.integration.live.boxproc import StbProcess, port_of
from tests.integration.live.world import (
    CHANNEL,
    PRICE_MINOR,
    SERVICE_ID,
    World,
    build_world,
    headend_config,
    start_headend,
)

pytestmark = pytest.mark.slow
FIRST_STATE_S = 120.0
CHANGE_S = 60.0
EVENT_ID = 9101


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    db_url = None
    if request.param == "postgresql":
        server: Any = request.getfixturevalue("postgres_server")
        db_url = server.create_database("cas_live_commands")
    w = build_world(tmp_path, db_url=db_url)
    try:
        yield w
    finally:
        w.close()


def _command_rows(world: World) -> list[tuple[str, str]]:
    with world.store.reader() as s:
        return [(str(k), str(st)) for k, st in s.execute(
            select(EmmOutbox.kind, EmmOutbox.status)
            .where(EmmOutbox.kind.in_(sorted(k.value for k in COMMAND_KINDS))))]


def test_a_booking_made_while_the_box_is_off_opens_the_event_later(world: World) -> None:
    now_s = to_s(world.now())
    with world.store.transaction() as s:
        # money for the booking, no package: the channel opens for the event only
        service.pay(s, by="card", ref=world.serial, amount_minor=PRICE_MINOR,
                    payment_id="live-book-1", at=world.now())
        add_event(s, event_id=EVENT_ID, service_id=SERVICE_ID, start_s=now_s - 600,
                  end_s=now_s + 7200, price_tokens=10, impulse=False, title="final",
                  now_s=now_s)
    box = StbProcess.start("scan", "udp://127.0.0.1:0", world.box, cwd=world.root)
    port = port_of(box.started())
    headend = start_headend(world, headend_config(world, port))
    try:
        box.channel_event(CHANNEL, reason="PPV_NOT_PURCHASED", timeout_s=FIRST_STATE_S)
        first = box.stop(signal.SIGINT)
        assert first["channels"][0]["reason"] == "PPV_NOT_PURCHASED"

        with world.store.transaction() as s:
            book_event(s, world.keys, serial=world.serial, event_id=EVENT_ID,
                       now_s=to_s(world.now()))
        # the booking's own airings (3 in 3 s) go out to nobody; then it is recorded as sent
        deadline = time.monotonic() + CHANGE_S
        while _command_rows(world) != [("ppv", "sent")]:
            assert time.monotonic() < deadline, _command_rows(world)
            time.sleep(0.2)

        box = StbProcess.start("scan", f"udp://127.0.0.1:{port}", world.box, cwd=world.root)
        box.started()
        try:
            opened = box.channel_event(CHANNEL, state="OPEN", timeout_s=CHANGE_S)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nhead-end log: {headend.tail()}") from None
        assert opened["reason"] == "OPEN"
        report = box.stop(signal.SIGINT)
        # the booking EMM applied once; everything the card applied, in sequence order
        applied = [e for e in box.events if e.get("event") == "emm"
                   and e["result"] == "applied" and e["address"] == "unique"]
        assert len(applied) == 1, applied
        assert report["channels"][0]["reason"] == "OPEN"
    finally:
        box.kill()
        headend.stop()
