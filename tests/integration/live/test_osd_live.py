"""`cas osd send --card N` without --out, to a running head-end: the command queues the
message in the outbox, ``cas headend run`` airs it in its carousel, and ``stb scan`` on the
head-end's UDP output shows it on screen.  SQLite and PostgreSQL; timeouts are liveness
bounds."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.live.boxproc import StbProcess, port_of
from tests.integration.live.world import World, build_world, headend_config, start_headend

pytestmark = pytest.mark.slow
SHOWN_S = 120.0
MESSAGE_ID = 4242


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    db_url = None
    if request.param == "postgresql":
        server: Any = request.getfixturevalue("postgres_server")
        db_url = server.create_database("cas_osd_live")
    w = build_world(tmp_path, db_url=db_url)
    try:
        yield w
    finally:
        w.close()


def test_a_message_to_one_card_is_aired_by_the_running_headend(world: World) -> None:
    box = StbProcess.start("scan", "udp://127.0.0.1:0", world.box, cwd=world.root)
    port = port_of(box.started())
    headend = start_headend(world, headend_config(world, port))
    try:
        sent = subprocess.run(
            [str(Path(sys.executable).with_name("cas")), "--json", *world.cas_args(), "osd",
             "send", "--card", str(world.serial), "--id", str(MESSAGE_ID), "--duration-s",
             "5", "Please call us"], env=world.env(), capture_output=True, text=True,
            timeout=60)
        assert sent.returncode == 0, sent.stderr
        assert json.loads(sent.stdout)["card"] == world.serial
        try:
            shown = box.wait_for(lambda e: e.get("event") == "osd_shown"
                                 and e.get("message_id") == MESSAGE_ID, SHOWN_S,
                                 "the message on screen")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nhead-end log: {headend.tail()}") from None
        assert shown["text"] == "Please call us"
        box.stop(signal.SIGINT)
    finally:
        box.kill()
        headend.stop()
