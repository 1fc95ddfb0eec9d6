"""The expected lock matrix of a kit: ``expected.json`` for machines, ``expected.txt`` for
people.  One row per (step, box, channel): OPEN, or LOCKED with the reason code."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cas.kit.scenario import Scenario
from cas.reasons import Reason


def state_of(reason: Reason) -> str:
    return "OPEN" if reason is Reason.OPEN else "LOCKED"


def expected_matrix(scenario: Scenario, channels: Sequence[Mapping[str, Any]],
                    steps: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    out_steps = []
    for step, built in zip(scenario.steps, steps, strict=True):
        boxes: dict[str, Any] = {}
        for sub in scenario.subscribers:
            exp = step.expect[sub.key]
            boxes[sub.key] = {
                str(ch["number"]): {"state": state_of(exp.reason(ch["number"])),
                                    "reason": exp.reason(ch["number"]).value}
                for ch in channels}
        row: dict[str, Any] = {"index": built["index"], "name": step.name,
                               "title": step.title, "at": built["at"], "boxes": boxes}
        if built.get("checks"):
            # per box, the checks besides the channels (docs/kit.md, "Checks")
            row["checks"] = built["checks"]
        out_steps.append(row)
    return {"kit": scenario.name, "channels": list(channels), "steps": out_steps}


def render_table(matrix: Mapping[str, Any]) -> str:
    """A fixed-width table: a block per step, a row per box, a column per channel."""
    numbers = [str(ch["number"]) for ch in matrix["channels"]]
    width = max([len(r.value) for r in Reason] + [6])
    lines = [f"Expected lock matrix: {matrix['kit']}", ""]
    for step in matrix["steps"]:
        lines.append(f"Step {step['index']}: {step['name']} ({step['at']}) - {step['title']}")
        box_w = max(len(b) for b in step["boxes"]) + 2
        lines.append("box".ljust(box_w) + " ".join(f"ch {n}".ljust(width) for n in numbers))
        for box, row in step["boxes"].items():
            cells = [row[n]["reason"] for n in numbers]
            lines.append(box.ljust(box_w) + " ".join(c.ljust(width) for c in cells).rstrip())
        for box, checks in step.get("checks", {}).items():
            for name, check in checks.items():
                lines.append(f"{box.ljust(box_w)}{name}: {check['expected']}")
        lines.append("")
    return "\n".join(lines)


def write_matrix(out: Path, scenario: Scenario, channels: Sequence[Mapping[str, Any]],
                 steps: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    matrix = expected_matrix(scenario, channels, steps)
    (out / "expected.json").write_text(
        json.dumps(matrix, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
        encoding="utf-8")
    (out / "expected.txt").write_text(render_table(matrix), encoding="utf-8")
    return matrix
