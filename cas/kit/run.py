"""``cas kit run``: play a kit to a box under test and grade what it shows.

File mode: for every step in order, for every box of the scenario, the box command is started
on the step's stream with the box's files in ``KIT_*`` variables (:mod:`cas.formats.boxreport`).
The runner works on copies of the kit's card images and on NVRAM files of its own, kept from
one step to the next, so EMMs a card took in step 1 are still there in step 2 and the kit
directory itself is never written to.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any

from cas.errors import ConfigError, UsageError
from cas.formats.boxreport import Seen, parse_events, parse_report
from cas.kit.build import KIT_FORMAT
from cas.kit.checks import (
    HeadEnd,
    clone_card,
    seen_fingerprint,
    seen_messages,
    sharing_verdict,
)
from cas.kit.httpreport import ReportServer
from cas.kit.scenario import load_scenario

#: ``--box stub``: our own set-top-box stub speaking the kit protocol.
STUB = "stub"
BOX_TIMEOUT_S = 300.0


def stub_command() -> list[str]:
    """The stub's command line (without the stream, which the runner appends)."""
    stb = Path(sys.executable).with_name("stb")
    head = [str(stb)] if stb.exists() else [sys.executable, "-m", "firmware_stub.cli"]
    return [*head, "scan", "--report-protocol", "kit"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseResult:
    """One (step, box, channel) graded."""

    step: int
    step_name: str
    step_title: str
    box: str
    channel: int
    channel_name: str
    expected: str
    seen: str
    message: str
    #: why this check was not made (live mode: an event it cannot play); "" = graded
    skipped: str = ""
    #: a check besides the channels (``messages``, ``fingerprint``, ``report``, ``sharing``;
    #: ``channel`` is then 0); "" = a channel's verdict
    check: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.skipped) or self.expected == self.seen

    @property
    def what(self) -> str:
        """``channel N`` or the check's name."""
        return self.check or f"channel {self.channel}"

    def failure_text(self) -> str:
        return (f"step {self.step} '{self.step_name}', box {self.box}, {self.what}: "
                f"expected {self.expected}, seen {self.seen}")


@dataclass(slots=True)
class RunResult:
    kit: str
    box_command: str
    cases: list[CaseResult] = field(default_factory=list)
    duration_s: float = 0.0
    #: when grading began (UTC), for the JUnit ``timestamp``
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def failures(self) -> list[CaseResult]:
        return [c for c in self.cases if not c.ok]

    @property
    def skipped(self) -> list[CaseResult]:
        return [c for c in self.cases if c.skipped]

    @property
    def ok(self) -> bool:
        return bool(self.cases) and not self.failures

    def to_json(self) -> dict[str, Any]:
        return {"kit": self.kit, "ok": self.ok, "cases": len(self.cases),
                "skipped": [{"step": c.step, "step_name": c.step_name, "box": c.box,
                             "channel": c.channel, "reason": c.skipped}
                            for c in self.skipped],
                "failures": [{"step": c.step, "step_name": c.step_name, "box": c.box,
                              "channel": c.channel, "expected": c.expected, "seen": c.seen,
                              "message": c.message, **({"check": c.check} if c.check else {})}
                             for c in self.failures]}


def _load(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path.parent} is not a kit: no {path.name} ({what})").with_id(
            "kit.not_kit_no", parent=path.parent, name=path.name, what=what) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc}").with_id(
            "kit.cannot_read", path=path, what=what, exc=exc) from None


def box_env(kit: Path, timeline: Mapping[str, Any], work: Path, step: Mapping[str, Any],
             box: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIT_")}
    env.update({
        "KIT_STEP": str(step["index"]), "KIT_STEP_NAME": step["name"], "KIT_BOX": box,
        "KIT_STREAM": str(kit / step["stream"]),
        "KIT_CHIP_RECORD": str(kit / timeline["chip_batch"]),
        "KIT_CHIP_ID": timeline["boxes"][box]["chip_id"],
        "KIT_VENDOR_KEY": str(kit / timeline["vendor_key"]),
        "KIT_NVRAM": str(work / "nvram" / f"{box}.nvram"),
        "KIT_ROM_KEY_FILE": str(kit / timeline["rom_key"]),
    })
    inside = step["boxes"][box]
    if inside.get("card"):
        env["KIT_CARD_IMAGE"] = str(work / timeline["cards"][inside["card"]]["image"])
    if inside.get("pin"):
        env["KIT_PIN"] = inside["pin"]
    return env


def action_env(work: Path, timeline: Mapping[str, Any], step: Mapping[str, Any],
               box: str) -> dict[str, str]:
    """File mode: the box actions of the step (docs/kit.md, "Box actions") and the card's
    ECM log on a step with a sharing check."""
    env: dict[str, str] = {}
    inside = step["boxes"][box]
    buy = inside.get("buy")
    if buy:
        env.update({"KIT_BUY_CHANNEL": str(buy["channel"]), "KIT_BUY_EVENT": str(buy["event"]),
                    "KIT_BUY_PIN": str(buy["pin"])})
    if inside.get("report"):
        env["KIT_PPV_REPORT"] = str(_report_path(work, step, box))
    card = inside.get("card")
    if card and inside.get("clone"):
        image = work / timeline["cards"][card]["image"]
        env["KIT_CARD_IMAGE"] = str(clone_card(
            image, work / "clones" / f"{step['index']:02d}-{box}" / image.name))
    if card and any("sharing" in c for c in step.get("checks", {}).values()):
        env["KIT_CARD_ECM_LOG"] = str(_ecm_log(work, step, card))
    return env


def _report_path(work: Path, step: Mapping[str, Any], box: str) -> Path:
    return work / "reports" / f"{step['index']:02d}-{box}.bin"


def _ecm_log(work: Path, step: Mapping[str, Any], card: str) -> Path:
    return work / "ecm-logs" / f"{step['index']:02d}-{card}.jsonl"


Events = list[dict[str, Any]]


def _play(command: Sequence[str], stream: Path, env: Mapping[str, str],
          posted: Callable[[], tuple[dict[int, Seen], Events]] | None = None,
          ) -> tuple[dict[int, Seen], str, Events]:
    """Run the box on one stream; its verdicts, when it failed why, and its event lines.
    ``posted``: the HTTP form, the lines come from the endpoint (its stdout is not read)."""
    try:
        done = subprocess.run([*command, str(stream)], env=dict(env), capture_output=True,
                              text=True, timeout=BOX_TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise UsageError(f"box command not found: {command[0]}").with_id(
            "kit.box_command_not_found", command=command[0]) from None
    except subprocess.TimeoutExpired:
        if posted is not None:
            posted()
        return {}, f"the box did not finish within {BOX_TIMEOUT_S:.0f} s", []
    seen, events = ((parse_report(done.stdout), parse_events(done.stdout)) if posted is None
                    else posted())
    problem = ""
    if done.returncode != 0 and not seen:
        last = (done.stderr.strip().splitlines() or [""])[-1]
        problem = f"the box exited {done.returncode}: {last}"
    return seen, problem, events


class ReportVia(StrEnum):
    """How the box reports (docs/kit.md, "Report protocol")."""

    STDOUT = "stdout"  # JSON lines on its stdout
    HTTP = "http"  # POSTs to KIT_REPORT_URL, an endpoint the runner opens on 127.0.0.1


def _take(server: ReportServer, step: int, box: str) -> tuple[dict[int, Seen], Events]:
    events = server.events(step, box)
    return server.take(step, box)[0], events


def open_kit(kit: Path, box: str) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """The kit's timeline and expected matrix, and the box command (refused in one line)."""
    timeline = _load(kit / "timeline.json", "timeline")
    if not isinstance(timeline, dict) or timeline.get("format") != KIT_FORMAT:
        raise ConfigError(f"{kit / 'timeline.json'}: not a kit of format {KIT_FORMAT} "
                          "(rebuild it with this cas kit build)").with_id(
            "kit.not_kit_format_rebuild", value=kit / "timeline.json", kit_format=KIT_FORMAT)
    expected = _load(kit / "expected.json", "expected matrix")
    command = stub_command() if box == STUB else shlex.split(box)
    if not command:
        raise UsageError("--box is empty: give a command, or 'stub'").with_id(
            "kit.box_empty_give_command")
    return timeline, expected, command


def run_kit(kit: Path, box: str, *, report: ReportVia = ReportVia.STDOUT,
            progress: Callable[[str], None] | None = None) -> RunResult:
    """Grade the box command ``box`` (``stub`` for ours) on every step of ``kit`` (file
    mode; live mode is :func:`cas.kit.live.run_kit_live`)."""
    say = progress or (lambda _m: None)
    timeline, expected, command = open_kit(kit, box)
    names = {ch["number"]: ch["name"] for ch in timeline["channels"]}
    result = RunResult(kit=timeline["kit"], box_command=box)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cas-kit-run-") as tmp, ExitStack() as stack:
        server = (stack.enter_context(ReportServer()) if report is ReportVia.HTTP else None)
        work = Path(tmp)
        for sub in ("nvram", "reports", "ecm-logs"):
            (work / sub).mkdir()
        shutil.copytree(kit / "cards", work / "cards")
        headend: HeadEnd | None = None
        if any(b.get("report") for st in timeline["steps"] for b in st["boxes"].values()):
            say("the head-end's store from the kit's scenario (purchase reports)")
            scenario = load_scenario(kit / "scenario.toml")
            (work / "headend").mkdir()
            headend = HeadEnd(kit, scenario, work / "headend")
            stack.callback(headend.close)
        for number, (step, exp) in enumerate(zip(timeline["steps"], expected["steps"],
                                                  strict=True)):
            say(f"step {step['index']}: {step['name']}")
            if headend is not None:
                headend.step(scenario.steps[number])
            uploads: dict[str, str] = {}
            shown: dict[str, Events] = {}
            for box_key, channels in exp["boxes"].items():
                env = {**box_env(kit, timeline, work, step, box_key),
                       **action_env(work, timeline, step, box_key)}
                posted: Callable[[], tuple[dict[int, Seen], Events]] | None = None
                if server is not None:
                    env["KIT_REPORT_URL"] = server.expect(step["index"], box_key)
                    posted = partial(_take, server, step["index"], box_key)
                seen, problem, shown[box_key] = _play(command, kit / step["stream"], env,
                                                      posted)
                mode = step["boxes"][box_key].get("report")
                if mode and headend is not None:
                    path = _report_path(work, step, box_key)
                    fresh = path.read_bytes() if path.exists() else None
                    uploads[box_key] = headend.upload(step["boxes"][box_key]["card"], mode,
                                                      fresh)
                for number, want in channels.items():
                    got = seen.get(int(number))
                    result.cases.append(CaseResult(
                        step=step["index"], step_name=step["name"], step_title=step["title"],
                        box=box_key, channel=int(number), channel_name=names.get(int(number), ""),
                        expected=want["reason"],
                        seen=got.reason if got is not None else "NOT_REPORTED",
                        message=got.message if got is not None else problem))
            for box_key, checks in exp.get("checks", {}).items():
                for name, check in checks.items():
                    seen_text, note = _check(name, check, work, step, box_key,
                                             shown.get(box_key, []), uploads)
                    result.cases.append(CaseResult(
                        step=step["index"], step_name=step["name"], step_title=step["title"],
                        box=box_key, channel=0, channel_name=name, check=name,
                        expected=str(check["expected"]), seen=seen_text, message=note))
    result.duration_s = time.monotonic() - t0
    return result


def _check(name: str, check: Mapping[str, Any], work: Path, step: Mapping[str, Any],
           box: str, events: Events, uploads: Mapping[str, str]) -> tuple[str, str]:
    """What the box (or the head-end, for its report and its card's ECM log) showed for one
    check, and a note for the report."""
    if name == "messages":
        return seen_messages(events), ""
    if name == "fingerprint":
        return seen_fingerprint(events), ""
    if name == "report":
        return uploads.get(box, "no report"), ""
    card = step["boxes"][box].get("card")
    if not card:
        return "no card", ""
    return sharing_verdict(_ecm_log(work, step, card), int(check.get("tuners", 2)))
