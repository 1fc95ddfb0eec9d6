"""The ``other-card-emm`` event: the step's stream carries a unique EMM for a card in no
box of the kit (granting every package); the box must leave it to its owner and show what
it showed before."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from cas.cli.main import cli
from cas.kit.run import stub_command

SCENARIO = """\
[kit]
name = "foreign"
seed = 5
profile = "demo"

[[subscriber]]
key = "viewer"

[[step]]
name = "start"
events = [
  {do = "pay", who = "viewer", amount = 2490},
  {do = "subscribe", who = "viewer", package = "start"},
]
[step.expect.viewer]
default = "CHANNEL_NOT_IN_PACKAGE"
1 = "OPEN"
2 = "OPEN"

[[step]]
name = "foreign"
events = [{do = "other-card-emm"}]
[step.expect.viewer]
default = "CHANNEL_NOT_IN_PACKAGE"
1 = "OPEN"
2 = "OPEN"
"""


def _scan(kit: Path, stream: str, work: Path) -> dict[str, Any]:
    """``stb --json scan`` on one stream with the kit's box files (its NVRAM of its own)."""
    timeline = json.loads((kit / "timeline.json").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIT_")}
    env.update({"KIT_CHIP_RECORD": str(kit / timeline["chip_batch"]),
                "KIT_CHIP_ID": timeline["boxes"]["viewer"]["chip_id"],
                "KIT_VENDOR_KEY": str(kit / timeline["vendor_key"]),
                "KIT_NVRAM": str(work / "viewer.nvram"),
                "KIT_ROM_KEY_FILE": str(kit / timeline["rom_key"]),
                "KIT_CARD_IMAGE": str(work / "card.img")})
    head = stub_command()[:-3]  # the stb command without "scan --report-protocol kit"
    done = subprocess.run([*head, "--json", "scan", str(kit / stream)], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_a_box_leaves_an_emm_for_another_card_alone(tmp_path: Path) -> None:
    (tmp_path / "foreign.toml").write_text(SCENARIO)
    built = CliRunner().invoke(cli, ["kit", "build", str(tmp_path / "foreign.toml"),
                                     "-o", str(tmp_path / "kit")])
    assert built.exit_code == 0, built.output
    kit = tmp_path / "kit"
    timeline = json.loads((kit / "timeline.json").read_text())
    assert timeline["steps"][1]["events"] == [{"do": "other-card-emm"}]

    # The stream of the step carries unique EMMs the viewer's box filters out as another
    # card's; the step before carries none.
    image = kit / timeline["cards"]["viewer"]["image"]
    (tmp_path / "card.img").write_bytes(image.read_bytes())
    before = _scan(kit, timeline["steps"][0]["stream"], tmp_path)
    after = _scan(kit, timeline["steps"][1]["stream"], tmp_path)
    assert before["emm"].get("filtered_unique", 0) == 0
    assert after["emm"]["filtered_unique"] >= 1
    adult = next(c for c in after["channels"] if c["channel"] == 27)
    assert adult["reason"] == "CHANNEL_NOT_IN_PACKAGE"

    run = CliRunner().invoke(cli, ["--json", "kit", "run", str(kit), "-o", str(tmp_path / "r")])
    data = json.loads(run.output)
    assert run.exit_code == 0, data["failures"]
    assert data["cases"] == 2 * 5


def test_the_event_takes_no_fields(tmp_path: Path) -> None:
    """Not even ``who``: a stream event is not one subscriber's (it used to be ignored)."""
    bad = SCENARIO.replace('{do = "other-card-emm"}', '{do = "other-card-emm", who = "viewer"}')
    (tmp_path / "bad.toml").write_text(bad)
    result = CliRunner().invoke(cli, ["kit", "build", str(tmp_path / "bad.toml"),
                                      "-o", str(tmp_path / "kit")])
    assert result.exit_code == 2
    assert "step[1].events[0].who: unknown field for 'other-card-emm'" in result.output
