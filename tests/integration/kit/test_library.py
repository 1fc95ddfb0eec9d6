"""The shipped scenario library: together it expects every reason code a box can show on a
scanned stream and every seed operator's rules, and our stub passes all of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cas.cli.main import cli
from cas.kit.library import shipped_scenarios
from cas.kit.live import CHECKS_SKIP_REASON, FILE_MODE_ONLY_REASON, file_mode_from
from cas.kit.scenario import ADDRESSES, CHECKS, REPORT_MODES, EventKind, load_scenario
from cas.reasons import Reason

#: What a scan of a well-formed stream cannot show: a broken card (hardware) and a channel
#: missing from the PAT (the stream, not the CAS) — see docs/kit.md.
NOT_FROM_A_SCENARIO = {Reason.CARD_ERROR, Reason.UNKNOWN_CHANNEL}
#: The steps of pay-per-view, on-screen messages and card sharing (docs/kit.md).
NEW_KINDS = {EventKind.PPV_EVENT, EventKind.BOOK, EventKind.TOP_UP, EventKind.BUY,
             EventKind.UPLOAD_REPORT, EventKind.MESSAGE, EventKind.FINGERPRINT,
             EventKind.SHARE_CARD, EventKind.BLOCK, EventKind.SHARING_POLICY}
SEED_OPERATORS = {"000 TV+", "001 NTV Plus", "002 ATV+", "003 MTS", "004 Uzonline"}


def test_library_covers_every_reason_and_every_seed_operator() -> None:
    reasons: set[Reason] = set()
    covers: set[str] = set()
    for path in shipped_scenarios():
        sc = load_scenario(path)
        covers.update(sc.covers)
        for step in sc.steps:
            for exp in step.expect.values():
                reasons.add(exp.default)
                reasons.update(exp.channels.values())
    assert set(Reason) - NOT_FROM_A_SCENARIO - reasons == set()
    assert covers >= SEED_OPERATORS


def test_library_uses_every_pay_per_view_message_and_sharing_step_and_check() -> None:
    kinds: set[EventKind] = set()
    checks: set[str] = set()
    modes: set[str] = set()
    addresses: set[str] = set()
    for path in shipped_scenarios():
        for step in load_scenario(path).steps:
            kinds.update(e.kind for e in step.events)
            modes.update(str(e.args["mode"]) for e in step.events if "mode" in e.args)
            addresses.update(str(e.args["address"]) for e in step.events
                             if "address" in e.args)
            for table in step.checks.values():
                checks.update(table)
    assert kinds >= NEW_KINDS
    assert checks == set(CHECKS)
    assert modes == set(REPORT_MODES) and addresses == set(ADDRESSES)


@pytest.mark.parametrize("path", shipped_scenarios(), ids=lambda p: p.stem)
def test_the_stub_passes_every_shipped_scenario(path: Path, tmp_path: Path) -> None:
    build = CliRunner().invoke(cli, ["kit", "build", path.stem, "-o", str(tmp_path / "kit")])
    assert build.exit_code == 0, build.output
    run = CliRunner().invoke(cli, ["--json", "kit", "run", str(tmp_path / "kit"),
                                   "-o", str(tmp_path / "res")])
    data = json.loads(run.output)
    assert run.exit_code == 0, data["failures"][:5]
    assert data["ok"] and data["cases"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in shipped_scenarios() if p.stem != "stream-events"],
                         ids=lambda p: p.stem)
def test_the_stub_passes_every_shipped_scenario_live(path: Path, tmp_path: Path) -> None:
    """Through ``cas headend run`` (``--live``); stream-events is in test_live.py."""
    build = CliRunner().invoke(cli, ["kit", "build", path.stem, "-o", str(tmp_path / "kit")])
    assert build.exit_code == 0, build.output
    run = CliRunner().invoke(cli, ["--json", "kit", "run", str(tmp_path / "kit"), "--live",
                                   "-o", str(tmp_path / "res")])
    data = json.loads(run.output)
    assert run.exit_code == 0, data["failures"][:5]
    assert data["ok"] and data["cases"] > 0
    sc = load_scenario(path)
    if file_mode_from(sc) == len(sc.steps) and not any(st.checks for st in sc.steps):
        assert data["skipped"] == []
    else:
        # named, never silent: the steps from the first box action on, and the checks
        assert {s["reason"] for s in data["skipped"]} <= {FILE_MODE_ONLY_REASON,
                                                          CHECKS_SKIP_REASON}
        skipped_steps = {c["step"] for c in data["skipped"]}
        assert skipped_steps >= set(range(file_mode_from(sc) + 1, len(sc.steps) + 1))
