"""Each fault injected into the stub makes the kit fail on the steps it should, naming the
step, the box, the channel, what was expected and what the box showed; the stub without a
fault passes the same kit."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cas.cli.app import Exit
from cas.cli.main import cli
from firmware_stub.faults import Fault

SCENARIO = Path(__file__).with_name("faults.toml")
STB = str(Path(sys.executable).with_name("stb"))


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("faults") / "kit"
    result = CliRunner().invoke(cli, ["kit", "build", str(SCENARIO), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _grade(kit: Path, out: Path, fault: Fault | None) -> tuple[int, list[dict[str, Any]]]:
    box = f"{STB} scan --report-protocol kit" + (f" --fault {fault.value}" if fault else "")
    result = CliRunner().invoke(cli, ["--json", "kit", "run", str(kit), "--box", box,
                                      "-o", str(out)])
    data = json.loads(result.output)
    return result.exit_code, data["failures"]


def _where(failures: list[dict[str, Any]]) -> set[tuple[str, str, int, str, str]]:
    return {(f["step_name"], f["box"], f["channel"], f["expected"], f["seen"])
            for f in failures}


def test_without_a_fault_the_stub_passes(kit: Path, tmp_path: Path) -> None:
    assert _grade(kit, tmp_path, None) == (0, [])


def test_ignore_emms_fails_where_rights_should_have_arrived(kit: Path, tmp_path: Path) -> None:
    code, failures = _grade(kit, tmp_path, Fault.IGNORE_EMMS)
    assert code == int(Exit.MISMATCH)
    where = _where(failures)
    assert ("paid", "kids", 1, "OPEN", "CARD_NOT_ACTIVE") in where
    assert ("paid", "mover", 2, "OPEN", "CARD_NOT_ACTIVE") in where
    assert {f["box"] for f in failures} == {"kids", "mover", "spare"}
    assert not any(f["box"] == "spare" and f["step_name"] == "paid" for f in failures)


def test_wrong_cw_parity_fails_every_open_channel(kit: Path, tmp_path: Path) -> None:
    code, failures = _grade(kit, tmp_path, Fault.WRONG_CW_PARITY)
    assert code == int(Exit.MISMATCH)
    assert {(s, b, c, e) for s, b, c, e, _ in _where(failures)} == {
        (step, box, ch, "OPEN") for step, box in (("paid", "kids"), ("paid", "mover"),
                                                  ("moved", "kids"), ("key-rolled", "kids"))
        for ch in (1, 2)}
    assert {f["seen"] for f in failures} == {"NO_ECM"}
    assert "control words do not descramble" in failures[0]["message"]


def test_skip_maturity_fails_on_the_adult_channel_only(kit: Path, tmp_path: Path) -> None:
    code, failures = _grade(kit, tmp_path, Fault.SKIP_MATURITY)
    assert code == int(Exit.MISMATCH)
    assert _where(failures) == {(step, "kids", 27, "MATURITY_LOCKED", "OPEN")
                                for step in ("paid", "moved", "key-rolled")}


def test_stale_ecm_key_fails_after_the_rollover(kit: Path, tmp_path: Path) -> None:
    code, failures = _grade(kit, tmp_path, Fault.STALE_ECM_KEY)
    assert code == int(Exit.MISMATCH)
    where = _where(failures)
    assert ("key-rolled", "kids", 1, "OPEN", "ECM_KEY_UNKNOWN") in where
    assert ("key-rolled", "spare", 1, "PAIRING_MISMATCH", "ECM_KEY_UNKNOWN") in where
    assert not any(f["step_name"] == "moved" for f in failures)


def test_ignore_pairing_fails_on_the_moved_card(kit: Path, tmp_path: Path) -> None:
    code, failures = _grade(kit, tmp_path, Fault.IGNORE_PAIRING)
    assert code == int(Exit.MISMATCH)
    assert _where(failures) == {(step, "spare", ch, "PAIRING_MISMATCH", "OPEN")
                                for step in ("moved", "key-rolled") for ch in (1, 2)}
    messages = {f.get("message") for f in
                ET.parse(tmp_path / "junit.xml").getroot().iter("failure")}
    assert "step 2 'moved', box spare, channel 1: expected PAIRING_MISMATCH, seen OPEN" in messages
