"""The kit report protocol: how a box under test tells the runner what it shows
(docs/kit.md, "Report protocol").

The runner starts the box command once per (step, box) with the step's stream path as its
last argument and the box's files in ``KIT_*`` environment variables (:data:`ENV_VARS`).  The
box prints JSON lines on stdout, one per channel::

    {"channel": 27, "state": "LOCKED", "reason": "MATURITY_LOCKED", "message": "..."}

``channel`` is the number the viewer tunes (the LCN); ``reason`` is a code of
:class:`cas.reasons.Reason` (``OPEN`` for an open channel); ``state`` and ``message`` are
optional (``message`` is shown in the report).  Other lines are ignored unless they are one
JSON document with a ``channels`` list (the ``stb scan --json`` report), which is read the
same way.  A box that exits non-zero and reports nothing fails every channel of its step.

Event lines (added for the pay-per-view, on-screen and fingerprint checks; a box that does
not print them simply fails those checks) carry an ``event`` of :data:`EVENT_KINDS`::

    {"event": "purchase", "channel": 24, "event_id": 7001, "reason": "OPEN", "purse_tokens": 50}
    {"event": "message_shown", "message_id": 2, "priority": 5, "text": "..."}
    {"event": "fingerprint_shown", "kind": "overt", "serial": "2256884700"}
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cas.errors import CasError

#: The environment a box command is started with (the values are paths unless said).
ENV_VARS: dict[str, str] = {
    "KIT_STEP": "the step's index (1, 2, ...)",
    "KIT_STEP_NAME": "the step's name",
    "KIT_BOX": "the box's key in the scenario",
    "KIT_STREAM": "the step's stream (also the last argument)",
    "KIT_CHIP_RECORD": "the vendor's Chip ID batch holding the box's record",
    "KIT_CHIP_ID": "the box's chip id (8 hex digits)",
    "KIT_VENDOR_KEY": "the chipset vendor key file (32 hex digits)",
    "KIT_NVRAM": "the box's NVRAM file, kept from step to step",
    "KIT_CARD_IMAGE": "the EEPROM image of the card in the box (unset: no card)",
    "KIT_ROM_KEY_FILE": "the in-process cards' ROM key file",
    "KIT_PIN": "the parental PIN the viewer enters (unset: none)",
    "KIT_REPORT_URL": "with --report http: where to POST the report lines (not a path)",
}

#: The Content-Type of a POSTed report (JSON lines).
NDJSON = "application/x-ndjson"


class ReportPostError(CasError):
    """The report could not be POSTed (the runner's endpoint refused it or is not there)."""

    exit_code = 2



@dataclass(frozen=True, slots=True, kw_only=True)
class Seen:
    """What the box reported for one channel."""

    channel: int
    reason: str
    message: str = ""


def channel_line(channel: int, reason: str, message: str) -> str:
    """One protocol line (what ``stb scan --report-protocol kit`` prints per channel)."""
    state = "OPEN" if reason == "OPEN" else "LOCKED"
    return json.dumps({"channel": channel, "state": state, "reason": reason,
                       "message": message}, ensure_ascii=False, sort_keys=True)


def _from_obj(obj: Any) -> list[Seen]:
    if not isinstance(obj, dict):
        return []
    if isinstance(obj.get("channels"), list):
        return [s for item in obj["channels"] for s in _from_obj(item)]
    channel, reason = obj.get("channel"), obj.get("reason")
    if isinstance(channel, int) and not isinstance(channel, bool) and isinstance(reason, str):
        message = obj.get("message") or obj.get("detail") or ""
        return [Seen(channel=channel, reason=reason, message=str(message))]
    return []


#: The event lines of the protocol (module doc).
EVENT_KINDS = ("purchase", "message_shown", "fingerprint_shown")


def purchase_line(channel: int, event_id: int, reason: str, purse_tokens: int | None) -> str:
    """The box's purchase answer (``stb buy`` with the viewer's PIN)."""
    return json.dumps({"event": "purchase", "channel": channel, "event_id": event_id,
                       "reason": reason, "purse_tokens": purse_tokens}, sort_keys=True)


def message_line(message_id: int, priority: int, text: str) -> str:
    """An on-screen message the box showed to its end (and acknowledged on the card)."""
    return json.dumps({"event": "message_shown", "message_id": message_id,
                       "priority": priority, "text": text}, ensure_ascii=False, sort_keys=True)


def fingerprint_line(kind: str, serial: int) -> str:
    """A fingerprint the box showed: ``overt`` or ``covert``, with the card's serial."""
    return json.dumps({"event": "fingerprint_shown", "kind": kind, "serial": f"{serial:010d}"},
                      sort_keys=True)


def parse_events(text: str) -> list[dict[str, Any]]:
    """The event lines of a report, in order (malformed or other lines are skipped)."""
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and obj.get("event") in EVENT_KINDS:
            out.append(obj)
    return out


def shown_messages(events: Sequence[Mapping[str, Any]]) -> list[int]:
    """The ids of the messages shown, in order."""
    return [e["message_id"] for e in events if e.get("event") == "message_shown"
            and isinstance(e.get("message_id"), int)]


def shown_fingerprints(events: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(kind, serial) of every fingerprint shown."""
    return [(str(e.get("kind")), str(e.get("serial"))) for e in events
            if e.get("event") == "fingerprint_shown"]


def parse_line(line: str) -> list[Seen]:
    """The verdicts of one line (live mode reads the box's lines as they come)."""
    line = line.strip()
    if not line.startswith("{"):
        return []
    try:
        return _from_obj(json.loads(line))
    except json.JSONDecodeError:
        return []


def parse_report(stdout: str) -> dict[int, Seen]:
    """The box's verdicts by channel (the last line about a channel wins)."""
    seen: list[Seen] = []
    text = stdout.strip()
    if text.startswith("{") and "\n" in text:
        try:
            seen = _from_obj(json.loads(text))
        except json.JSONDecodeError:
            seen = []
    if not seen:
        for line in text.splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                seen.extend(_from_obj(json.loads(line)))
            except json.JSONDecodeError:
                continue
    return {s.channel: s for s in seen}


def post_report(url: str, lines: Sequence[str], *, timeout_s: float = 30.0) -> None:
    """POST report lines to the runner's endpoint (``KIT_REPORT_URL``); one request, the
    lines as the body (``application/x-ndjson``), 204 expected."""
    if not url.startswith(("http://", "https://")):
        raise ReportPostError(f"--report-url: {url!r} is not an http:// URL").with_id(
            "formats.report_url_not_http", url=f"{url!r}")
    body = "".join(line + "\n" for line in lines).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": NDJSON})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            status = answer.status
    except urllib.error.HTTPError as exc:
        why = exc.read().decode("utf-8", "replace").strip().splitlines() or [exc.reason]
        raise ReportPostError(f"the report endpoint answered {exc.code}: {why[0]}").with_id(
            "formats.report_endpoint_answered", code=exc.code, why=why[0]) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ReportPostError(f"cannot POST the report to {url}: {reason}").with_id(
            "formats.cannot_post_report", url=url, reason=reason) from None
    if status not in (200, 201, 202, 204):
        raise ReportPostError(f"the report endpoint answered {status}").with_id(
            "formats.report_endpoint_answered_2", status=status)
