"""The checks of a kit step besides its channels (docs/kit.md, "Checks"): the messages and
the fingerprint the box showed, the purchase report the head-end billed, and whether the
card's ECM log is caught sharing.

The purchase report goes through a real head-end: the runner rebuilds the store the way
``cas kit build`` made it (:func:`rebuild_world`, also the live runner's), plays every
step's events into it in order, and imports each uploaded report with
:func:`cas.billing.ppv.import_report`, as ``cas ppv import-report`` and
``POST /api/v1/ppv/reports`` do.  The sharing check runs ``cas diag sharing`` on the step's
ECM log, as an operator would.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cas.billing.clock import clock_now
from cas.billing.ppv import PpvReportError, import_report
from cas.billing.txn import current_profile
from cas.crypto import OperatorKeys
from cas.crypto.keys import default_key_path
from cas.errors import CasError, ConfigError
from cas.formats.boxreport import shown_fingerprints, shown_messages
from cas.kit.build import (
    _Rng,
    _World,
    billed_text,
    fingerprint_text,
    message_ids_text,
    sharing_text,
)
from cas.kit.scenario import STREAM_EVENTS, Scenario, Step
from cas.store.engine import Store, open_store
from cas.store.repo import to_s

#: The kit's crypto-period: the sharing rule's window (one crypto-period, docs/sharing.md).
SHARING_WINDOW_S = 1
#: ``cas diag sharing`` exit code when a card is flagged (``Exit.RULE``).
SHARING_FLAGGED_EXIT = 7


def rebuild_world(kit: Path, scenario: Scenario, data_dir: Path,
                  scratch: Path) -> tuple[_World, Store, OperatorKeys]:
    """The head-end's store for the kit, made the way ``cas kit build`` made it; refused in
    one line when the cards differ from the kit's."""
    rng = _Rng(scenario.seed)
    keys = OperatorKeys.generate(rng, now_s=to_s(scenario.start))
    keys.save(default_key_path(data_dir))
    store = open_store(data_dir=data_dir)
    world = _World(scenario, store, keys, scratch, rng)
    world.setup()
    batch = "cards/personalisation.batch"
    if (scratch / batch).exists() != (kit / batch).exists() or (
            (kit / batch).exists()
            and (scratch / batch).read_bytes() != (kit / batch).read_bytes()):
        store.dispose()
        raise ConfigError(f"{kit}: the cards do not match the kit's scenario.toml "
                          "(rebuild the kit with this cas kit build)").with_id(
            "kit.cards_do_not_match", kit=kit)
    return world, store, keys


def forge(report: bytes) -> bytes:
    """The report with one byte of its purchases changed on the way (its tag no longer
    matches)."""
    if not report:
        return report
    at = max(0, len(report) - 20)
    return report[:at] + bytes([report[at] ^ 0x01]) + report[at + 1:]


class HeadEnd:
    """The file-mode head-end: the rebuilt store, stepped along the timeline, taking the
    boxes' purchase reports."""

    def __init__(self, kit: Path, scenario: Scenario, work: Path) -> None:
        (work / "data").mkdir()
        (work / "scratch").mkdir()
        self.world, self.store, self.keys = rebuild_world(kit, scenario, work / "data",
                                                          work / "scratch")
        #: the last report each card's box read (what a replay uploads again)
        self.last_report: dict[str, bytes] = {}

    def close(self) -> None:
        self.store.dispose()

    def step(self, step: Step) -> None:
        """The step's events, committed as ``cas kit build`` committed them."""
        with self.store.transaction() as session:
            for j, event in enumerate(step.events):
                if event.kind not in STREAM_EVENTS:
                    self.world.apply(session, event, f"{step.name}-{j}")

    def upload(self, card: str, mode: str, fresh: bytes | None) -> str:
        """Upload the card's report (``fresh``: what the box read now); what the head-end
        did: ``billed N`` (major units) or the refusal code."""
        if mode == "replayed":
            data = self.last_report.get(card)
        else:
            data = fresh if mode == "fresh" else forge(fresh) if fresh else None
            if fresh:
                self.last_report[card] = fresh
        if not data:
            return "no report"
        try:
            with self.store.transaction() as session:
                now_s = to_s(clock_now(session))
                done = import_report(session, self.keys, data, now_s=now_s)
                minor = current_profile(session).minor_per_major
        except PpvReportError as exc:
            return exc.code
        except CasError as exc:
            return f"refused: {exc}"
        return billed_text(done.amount_minor // minor)


def seen_messages(events: Sequence[Mapping[str, Any]]) -> str:
    return message_ids_text(shown_messages(events))


def seen_fingerprint(events: Sequence[Mapping[str, Any]]) -> str:
    shown = shown_fingerprints(events)
    if not shown:
        return "none"
    kind, serial = shown[-1]
    return fingerprint_text(kind, int(serial)) if serial.isdigit() else f"{kind} {serial}"


def sharing_verdict(log: Path, tuners: int) -> tuple[str, str]:
    """``cas diag sharing LOG --tuners N --window 1``: (flagged or not, its one-line answer)."""
    if not log.exists():
        return sharing_text(False), "the card answered no ECM (no ECM log)"
    cas = Path(sys.executable).with_name("cas")
    head = [str(cas)] if cas.exists() else [sys.executable, "-m", "cas.cli.main"]
    done = subprocess.run([*head, "--json", "diag", "sharing", str(log), "--tuners",
                           str(tuners), "--window", str(SHARING_WINDOW_S)],
                          capture_output=True, text=True, timeout=120, check=False)
    if done.returncode not in (0, SHARING_FLAGGED_EXIT):
        last = (done.stderr.strip().splitlines() or [""])[-1]
        return f"cas diag sharing exited {done.returncode}", last
    return sharing_text(done.returncode == SHARING_FLAGGED_EXIT), _sharing_note(done.stdout)


def _sharing_note(answer: str) -> str:
    """One line from ``cas diag sharing --json``: the card's rules and worst windows."""
    try:
        cards = json.loads(answer).get("cards", [])
    except (json.JSONDecodeError, AttributeError):
        return ""
    return "; ".join(
        f"card {c.get('card')}: {c.get('requests')} ECMs, at most {c.get('max_services')} "
        f"channels and {c.get('max_rate')} requests in a window"
        + (f", rules broken: {', '.join(c.get('rules', []))}" if c.get("rules") else "")
        for c in cards if isinstance(c, dict))


def clone_card(image: Path, clone: Path) -> Path:
    """A copy of a card image and its side files (the PPV file): a cloned card."""
    clone.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(image, clone)
    for side in image.parent.glob(image.name + ".*"):
        shutil.copyfile(side, clone.parent / (clone.name + side.name[len(image.name):]))
    return clone
