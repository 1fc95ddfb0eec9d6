"""The kit's pay-per-view box actions and its checks besides the channels catch a box that
does not do its part: one that never shows on-screen messages or fingerprints
(``--fault ignore-osd``), a card that forgets its acknowledged messages between steps, one
that never offers the purchase, and one that never reads the card's purchase report; the
HTTP report form carries the event lines too."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cas.cli.app import Exit
from cas.cli.main import cli
from firmware_stub.faults import Fault

STB = str(Path(sys.executable).with_name("stb"))
BOX = f"{STB} scan --report-protocol kit"


def _build(tmp: pytest.TempPathFactory, name: str) -> Path:
    out = tmp.mktemp(name) / "kit"
    result = CliRunner().invoke(cli, ["kit", "build", name, "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def osd_kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory, "messages-and-fingerprints")


@pytest.fixture(scope="module")
def ppv_kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory, "ppv-and-ippv")


def _grade(kit: Path, out: Path, box: str, *extra: str) -> tuple[int, list[dict[str, Any]]]:
    result = CliRunner().invoke(cli, ["--json", "kit", "run", str(kit), "--box", box,
                                      "-o", str(out), *extra])
    data = json.loads(result.output)
    return result.exit_code, data["failures"]


def _where(failures: list[dict[str, Any]]) -> set[tuple[str, str, str, str, str]]:
    return {(f["step_name"], f["box"], f.get("check") or str(f["channel"]), f["expected"],
             f["seen"]) for f in failures}


def test_a_box_that_never_shows_messages_fails_the_message_and_fingerprint_checks(
        osd_kit: Path, tmp_path: Path) -> None:
    code, failures = _grade(osd_kit, tmp_path, f"{BOX} --fault {Fault.IGNORE_OSD.value}")
    assert code == int(Exit.MISMATCH)
    assert _where(failures) == {
        ("messages", "viewer", "messages", "2,1", "none"),
        ("messages", "neighbour", "messages", "2,3", "none"),
        ("shown-once", "viewer", "messages", "4", "none"),
        ("shown-once", "neighbour", "messages", "4", "none"),
        ("fingerprints", "viewer", "fingerprint", "overt 2256884700", "none"),
        ("fingerprints", "neighbour", "fingerprint", "covert 2256884701", "none"),
    }
    junit = (tmp_path / "junit.xml").read_text()
    assert "step 1 'messages', box viewer, messages: expected 2,1, seen none" in junit
    assert 'name="viewer messages"' in junit


def test_a_card_that_forgets_between_steps_shows_an_acknowledged_message_again(
        osd_kit: Path, tmp_path: Path) -> None:
    """The card's mailbox and acknowledged ids live in its image (docs/osd.md), which the
    kit keeps from step to step: "shown once" spans steps.  A lab whose card reader
    emulator presents the kit's first image at every step (the card's memory lost) shows
    message 4, acknowledged in step 2, again in step 3 — and only that fails."""
    adapter = tmp_path / "fresh-card-box.sh"
    adapter.write_text(
        "#!/bin/sh\n"
        f'cp "{osd_kit}/cards/$(basename "$KIT_CARD_IMAGE")" "$KIT_CARD_IMAGE.fresh"\n'
        f'KIT_CARD_IMAGE="$KIT_CARD_IMAGE.fresh" exec {BOX} "$@"\n')
    adapter.chmod(0o755)
    code, failures = _grade(osd_kit, tmp_path / "res", str(adapter))
    assert code == int(Exit.MISMATCH)
    assert _where(failures) == {
        ("fingerprints", "viewer", "messages", "none", "4"),
        ("fingerprints", "neighbour", "messages", "none", "4"),
    }


def test_the_http_form_carries_the_event_lines(osd_kit: Path, tmp_path: Path) -> None:
    assert _grade(osd_kit, tmp_path, BOX, "--report", "http") == (0, [])


def test_a_box_that_never_offers_the_purchase_fails_where_the_card_should_have_answered(
        ppv_kit: Path, tmp_path: Path) -> None:
    box = f"env -u KIT_BUY_CHANNEL -u KIT_BUY_EVENT -u KIT_BUY_PIN {BOX}"
    code, failures = _grade(ppv_kit, tmp_path, box)
    assert code == int(Exit.MISMATCH)
    assert _where(failures) == {
        ("refused", "buyer", "24", "PPV_PIN_WRONG", "PPV_NOT_PURCHASED"),
        ("refused", "broke", "24", "PURSE_EMPTY", "PPV_NOT_PURCHASED"),
        ("refused", "booker", "21", "PPV_NOT_ON_AIR", "CHANNEL_NOT_IN_PACKAGE"),
        ("bought", "buyer", "24", "OPEN", "PPV_NOT_PURCHASED"),
        ("bought", "buyer", "report", "billed 150", "billed 0"),
        ("report-refused", "buyer", "24", "OPEN", "PPV_NOT_PURCHASED"),
        ("ended", "buyer", "24", "PPV_EVENT_ENDED", "CHANNEL_NOT_IN_PACKAGE"),
    }


def test_a_box_that_never_reads_the_purchase_report_fails_the_report_checks(
        ppv_kit: Path, tmp_path: Path) -> None:
    code, failures = _grade(ppv_kit, tmp_path, f"env -u KIT_PPV_REPORT {BOX}")
    assert code == int(Exit.MISMATCH)
    assert _where(failures) == {
        ("bought", "buyer", "report", "billed 150", "no report"),
        ("report-refused", "buyer", "report", "PPV_REPORT_REPLAYED", "no report"),
        ("report-refused", "booker", "report", "PPV_REPORT_FORGED", "no report"),
    }


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_a_pay_per_view_kit_is_reproducible_and_names_its_box_actions_and_checks(
        ppv_kit: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    result = CliRunner().invoke(cli, ["kit", "build", "ppv-and-ippv", "-o", str(again)])
    assert result.exit_code == 0, result.output
    assert _files(again) == _files(ppv_kit)
    timeline = json.loads((ppv_kit / "timeline.json").read_text())
    refused = timeline["steps"][2]["boxes"]
    assert refused["buyer"]["buy"] == {"channel": 24, "event": 7001, "pin": "1111"}
    assert refused["booker"]["buy"] == {"channel": 21, "event": 7002, "pin": "0000"}
    assert "buy" not in timeline["steps"][1]["boxes"]["buyer"]
    assert timeline["steps"][3]["boxes"]["buyer"]["report"] == "fresh"
    expected = json.loads((ppv_kit / "expected.json").read_text())
    assert expected["steps"][3]["checks"] == {"buyer": {"report": {"expected": "billed 150"}}}
    assert expected["steps"][4]["checks"] == {
        "buyer": {"report": {"expected": "PPV_REPORT_REPLAYED"}},
        "booker": {"report": {"expected": "PPV_REPORT_FORGED"}}}
    assert "buyer   report: billed 150" in (ppv_kit / "expected.txt").read_text()
