"""``cas kit build`` and ``cas kit run`` end to end on a small scenario: real ffmpeg stream,
real CSA2 scrambling, our stub started as a separate process per step and box."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cas.cli.app import Exit
from cas.cli.main import cli

SCENARIO = """\
[kit]
name = "small"
seed = 11
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
  {do = "kids", who = "viewer", on = true},
]
[step.expect.viewer]
21 = "CHANNEL_NOT_IN_PACKAGE"
24 = "CHANNEL_NOT_IN_PACKAGE"
27 = "MATURITY_LOCKED"
[step.expect.empty]
default = "NO_CARD"

[[step]]
name = "pin"
events = [{do = "pin", who = "viewer", pin = "0000"}]
[step.expect.viewer]
21 = "CHANNEL_NOT_IN_PACKAGE"
24 = "CHANNEL_NOT_IN_PACKAGE"
[step.expect.empty]
default = "NO_CARD"
"""


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("kit")
    (root / "small.toml").write_text(SCENARIO)
    result = CliRunner().invoke(cli, ["kit", "build", str(root / "small.toml"),
                                      "-o", str(root / "kit")])
    assert result.exit_code == 0, result.output
    return root / "kit"


def test_kit_holds_what_a_lab_needs(kit: Path) -> None:
    files = _files(kit)
    for name in ("README.md", "scenario.toml", "timeline.json", "expected.json", "expected.txt",
                 "boxes/chip-ids.bin", "keys/vendor.key", "keys/card-rom.key",
                 "cards/personalisation.batch", "streams/01-paid.ts", "streams/02-pin.ts"):
        assert name in files, name
    assert [n for n in files if n.endswith(".img")] == ["cards/2256884700.img"]
    expected = json.loads(files["expected.json"])
    paid = expected["steps"][0]["boxes"]
    assert paid["viewer"]["27"] == {"state": "LOCKED", "reason": "MATURITY_LOCKED"}
    assert paid["viewer"]["1"] == {"state": "OPEN", "reason": "OPEN"}
    assert paid["empty"]["2"]["reason"] == "NO_CARD"
    assert "MATURITY_LOCKED" in files["expected.txt"].decode()
    timeline = json.loads(files["timeline.json"])
    assert timeline["steps"][1]["boxes"]["viewer"] == {"card": "viewer", "pin": "0000"}
    assert timeline["steps"][0]["boxes"]["empty"] == {"card": None, "pin": None}


def test_same_seed_gives_identical_bytes(kit: Path, tmp_path: Path) -> None:
    (tmp_path / "small.toml").write_text(SCENARIO)
    result = CliRunner().invoke(cli, ["kit", "build", str(tmp_path / "small.toml"),
                                      "-o", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    assert _files(tmp_path / "again") == _files(kit)
    (tmp_path / "other.toml").write_text(SCENARIO.replace("seed = 11", "seed = 12"))
    CliRunner().invoke(cli, ["kit", "build", str(tmp_path / "other.toml"),
                             "-o", str(tmp_path / "other")])
    assert (tmp_path / "other" / "streams" / "01-paid.ts").read_bytes() != (
        kit / "streams" / "01-paid.ts").read_bytes()


def test_build_refuses_to_wipe_a_directory_that_is_not_a_kit(tmp_path: Path) -> None:
    (tmp_path / "small.toml").write_text(SCENARIO)
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.txt").write_text("keep me")
    result = CliRunner().invoke(cli, ["kit", "build", str(tmp_path / "small.toml"),
                                      "-o", str(tmp_path / "precious")])
    assert result.exit_code == 2
    assert "not a cas-sim kit" in result.output
    assert (tmp_path / "precious" / "thesis.txt").read_text() == "keep me"


def _run(kit: Path, out: Path, *extra: str) -> tuple[int, Any]:
    result = CliRunner().invoke(cli, ["--json", "kit", "run", str(kit), "-o", str(out), *extra])
    return result.exit_code, json.loads(result.output)


def test_the_stub_passes_and_the_kit_is_left_untouched(kit: Path, tmp_path: Path) -> None:
    before = _files(kit)
    code, data = _run(kit, tmp_path / "res")
    assert code == 0, data
    assert data["ok"] and data["cases"] == 2 * 2 * 5 and data["failures"] == []
    root = ET.parse(tmp_path / "res" / "junit.xml").getroot()
    assert root.tag == "testsuites" and root.get("failures") == "0"
    assert len(root.findall("./testsuite/testcase")) == 20
    assert _files(kit) == before


def test_a_box_that_shows_something_else_fails_on_that_step(kit: Path, tmp_path: Path) -> None:
    # A "box" that always shows every channel open: a shell script speaking the protocol.
    box = tmp_path / "open-box.sh"
    box.write_text("#!/bin/sh\nfor c in 1 2 21 24 27; do\n"
                   "  echo '{\"channel\": '$c', \"reason\": \"OPEN\", \"message\": \"ok\"}'\n"
                   "done\n")
    box.chmod(0o755)
    code, data = _run(kit, tmp_path / "res", "--box", str(box))
    assert code == int(Exit.MISMATCH)
    failed = {(f["step_name"], f["box"], f["channel"], f["expected"], f["seen"])
              for f in data["failures"]}
    assert ("paid", "viewer", 27, "MATURITY_LOCKED", "OPEN") in failed
    assert ("pin", "viewer", 27, "MATURITY_LOCKED", "OPEN") not in failed
    assert ("paid", "empty", 1, "NO_CARD", "OPEN") in failed
    assert len(failed) == 3 + 2 + 2 * 5


def test_a_box_that_crashes_fails_every_channel_with_its_error(kit: Path,
                                                               tmp_path: Path) -> None:
    box = tmp_path / "broken.sh"
    box.write_text("#!/bin/sh\necho 'error: tuner not found' >&2\nexit 3\n")
    box.chmod(0o755)
    code, data = _run(kit, tmp_path / "res", "--box", str(box))
    assert code == int(Exit.MISMATCH)
    assert len(data["failures"]) == 20
    assert {f["seen"] for f in data["failures"]} == {"NOT_REPORTED"}
    assert data["failures"][0]["message"] == "the box exited 3: error: tuner not found"


def test_html_report_in_a_real_browser_lists_failures_first(kit: Path, tmp_path: Path,
                                                           page: Any) -> None:
    box = tmp_path / "open-box.sh"
    box.write_text("#!/bin/sh\nfor c in 1 2 21 24 27; do\n"
                   "  echo '{\"channel\": '$c', \"reason\": \"OPEN\", \"message\": \"all good\"}'\n"
                   "done\n")
    box.chmod(0o755)
    _run(kit, tmp_path / "res", "--box", str(box))
    page.goto((tmp_path / "res" / "report.html").as_uri())
    assert "fail" in page.title()
    headings = page.locator("h2").all_inner_texts()
    assert headings == ["Failures", "Steps"]
    rows = page.locator("#failures-table tbody tr")
    assert rows.count() == 15
    first = rows.nth(0).locator("td").all_inner_texts()
    assert first[-1] == "FAIL" and first[4] == "OPEN" and first[5] == "all good"
    assert page.locator("#step-1-table tbody tr.pass").count() == 2
    assert page.locator("#step-2-table tbody tr").count() == 10


def test_run_refuses_what_is_not_a_kit_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["kit", "run", str(tmp_path), "-o", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert result.output == f"error: {tmp_path} is not a kit: no timeline.json (timeline)\n"
    (tmp_path / "timeline.json").write_text('{"format": 99}')
    result = CliRunner().invoke(cli, ["kit", "run", str(tmp_path), "-o", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "not a kit of format 1" in result.output and "\n" not in result.output.rstrip()


def test_run_refuses_a_box_command_that_does_not_exist(kit: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["kit", "run", str(kit), "--box", "/nonexistent/box",
                                      "-o", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert result.output.strip().endswith("error: box command not found: /nonexistent/box")
