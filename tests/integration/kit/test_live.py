"""``cas kit run --live``: the kit played through the real ``cas headend run`` over UDP on
127.0.0.1, the boxes as ``stb scan udp://…`` processes, graded on their JSON-line events (or
their POSTs).  Settle windows are liveness bounds, not speed goals
(``benchmarks/bench_kit.py`` times a live run)."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest
import xmlschema
from click.testing import CliRunner

from cas.cli.app import Exit
from cas.cli.main import cli
from cas.kit.run import stub_command

pytestmark = pytest.mark.slow
JUNIT_XSD = Path(__file__).parents[2] / "unit" / "kit" / "junit.xsd"

#: Maturity is checked in the second step: a box that skips it fails there, and the first
#: step (the head-end's start, the pairing EMMs) passes quickly.
SCENARIO = """\
[kit]
name = "live-small"
seed = 31
profile = "demo"

[[subscriber]]
key = "viewer"

[[subscriber]]
key = "empty"
card = false

[[step]]
name = "paid"
events = [
  {do = "pay", who = "viewer", amount = 4990},
  {do = "subscribe", who = "viewer", package = "maximum"},
]
[step.expect.viewer]
21 = "CHANNEL_NOT_IN_PACKAGE"
24 = "CHANNEL_NOT_IN_PACKAGE"
[step.expect.empty]
default = "NO_CARD"

[[step]]
name = "kids"
events = [{do = "kids", who = "viewer", on = true}]
[step.expect.viewer]
21 = "CHANNEL_NOT_IN_PACKAGE"
24 = "CHANNEL_NOT_IN_PACKAGE"
27 = "MATURITY_LOCKED"
[step.expect.empty]
default = "NO_CARD"
"""


def _build(source: str, out: Path) -> Path:
    result = CliRunner().invoke(cli, ["kit", "build", source, "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _run_live(kit: Path, out: Path, *extra: str) -> tuple[int, Any]:
    result = CliRunner().invoke(cli, ["--json", "kit", "run", str(kit), "--live", "-o",
                                      str(out), *extra])
    return result.exit_code, json.loads(result.output)


@pytest.fixture(scope="module")
def small_kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("live-kit")
    (root / "small.toml").write_text(SCENARIO)
    return _build(str(root / "small.toml"), root / "kit")


def test_the_stub_passes_the_stream_events_scenario_live(tmp_path: Path) -> None:
    """The shipped scenario with every stream event: an EMM for another card, the ECM PID
    lost, ECM-key rollover (the head-end restarted on key 1) and the key EMM, tampered and
    replayed EMMs (the relay), suspension; the stream-clock step is skipped, with why."""
    kit = _build("stream-events", tmp_path / "kit")
    code, data = _run_live(kit, tmp_path / "res")
    assert code == 0, data["failures"][:5]
    assert data["ok"] and data["failures"] == []
    skipped = data["skipped"]
    assert {s["step_name"] for s in skipped} == {"paid"}
    assert all("stream clock offset (-3600 s)" in s["reason"] for s in skipped)
    assert data["cases"] == 11 * 5 and len(skipped) == 5
    schema = xmlschema.XMLSchema(JUNIT_XSD)
    schema.validate(str(tmp_path / "res" / "junit.xml"))
    assert (tmp_path / "res" / "junit.xml").read_text().count("<skipped ") == 5


def test_a_faulty_box_fails_live_naming_the_step(small_kit: Path, tmp_path: Path) -> None:
    faulty = shlex.join([*stub_command(), "--fault", "skip-maturity"])
    code, data = _run_live(small_kit, tmp_path / "res", "--box", faulty, "--settle", "8")
    assert code == int(Exit.MISMATCH)
    failed = [(f["step"], f["step_name"], f["box"], f["channel"], f["expected"], f["seen"])
              for f in data["failures"]]
    assert failed == [(2, "kids", "viewer", 27, "MATURITY_LOCKED", "OPEN")]
    assert data["failures"][0]["message"]  # the box's own words are in the report


def test_the_stub_passes_live_reporting_over_http(small_kit: Path, tmp_path: Path) -> None:
    code, data = _run_live(small_kit, tmp_path / "res", "--report", "http")
    assert code == 0, data["failures"][:5]
    assert data["cases"] == 2 * 2 * 5 and data["skipped"] == []


def test_settle_is_for_live_mode_only(small_kit: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["kit", "run", str(small_kit), "--settle", "5",
                                      "-o", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert result.output == "error: --settle is for --live\n"


def test_live_refuses_a_kit_whose_cards_do_not_match_its_scenario(small_kit: Path,
                                                                   tmp_path: Path) -> None:
    """The head-end's store is rebuilt from scenario.toml: cards from elsewhere could never
    open, so the run stops at once, in one line, before any process starts."""
    kit = tmp_path / "kit"
    shutil.copytree(small_kit, kit)
    (kit / "scenario.toml").write_text(SCENARIO.replace("seed = 31", "seed = 32"))
    result = CliRunner().invoke(cli, ["kit", "run", str(kit), "--live", "-o",
                                      str(tmp_path / "r")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        f"error: {kit}: the cards do not match the kit's scenario.toml "
        "(rebuild the kit with this cas kit build)")


#: A booking in the first step: its EMM is queued before the box starts, so the box never
#: sees the booking's own airings, only the carousel's background cycle (which carried a
#: card's rights EMM alone: the booked channel stayed PPV_NOT_PURCHASED).  The second step's
#: top-up, message and fingerprint to the card are queued in the outbox too.
BOOKING = """\
[kit]
name = "live-booking"
seed = 77
profile = "demo"

[[subscriber]]
key = "booker"

[[step]]
name = "booked"
events = [
  {do = "pay", who = "booker", amount = 2640},
  {do = "subscribe", who = "booker", package = "start"},
  {do = "ppv-event", event = 7001, channel = 24, start_s = -600, duration_s = 3600, price = 150},
  {do = "book", who = "booker", event = 7001},
]
[step.expect.booker]
default = "CHANNEL_NOT_IN_PACKAGE"
1 = "OPEN"
2 = "OPEN"
24 = "OPEN"

[[step]]
name = "commands"
events = [
  {do = "top-up", who = "booker", tokens = 200, credit_limit = 0},
  {do = "message", who = "booker", address = "unique", id = 1, priority = 1, duration_s = 10, text = "Enjoy the match"},
  {do = "fingerprint", who = "booker", address = "unique", kind = "overt", duration_s = 30},
  {do = "kids", who = "booker", on = true},
]
[step.expect.booker]
default = "CHANNEL_NOT_IN_PACKAGE"
1 = "OPEN"
2 = "OPEN"
24 = "OPEN"
"""


def test_a_booking_made_before_the_box_starts_opens_the_event_live(tmp_path: Path) -> None:
    """The booking's EMM is aired before the box listens; the carousel's cycle carries it
    with the card's rights, in sequence order, so the event opens; the next step's command
    EMMs are played live too (not skipped as file-mode only)."""
    (tmp_path / "booking.toml").write_text(BOOKING)
    kit = _build(str(tmp_path / "booking.toml"), tmp_path / "kit")
    code, data = _run_live(kit, tmp_path / "res", "--settle", "30")
    assert code == 0, data["failures"][:5]
    assert data["ok"] and data["skipped"] == []
    assert data["cases"] == 2 * 5
