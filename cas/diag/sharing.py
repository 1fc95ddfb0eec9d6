"""Card-sharing detection at the head-end (``cas diag sharing``, docs/sharing.md).

Input: a JSON-lines log of ECM requests a card answered, one object a line::

    {"time": "2026-12-03T12:00:00.250+00:00", "card": 1000001, "channel": 3}

(``time`` ISO 8601 with its UTC offset, or ``time_s`` Unix seconds; ``card`` the serial;
``channel`` the channel id the ECM is for; other keys are kept out of the decision).

Rule, per card, per window of one crypto-period: :mod:`cas.sharing` (the card applies the
same one to the ECMs it answers).  A card that breaks either rule in any window is flagged.
Pure (no I/O) except :func:`read_log`, which reads the file.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cas.errors import FormatError, UsageError
from cas.sharing import (
    DEFAULT_RATE_TOLERANCE,
    DEFAULT_TUNERS,
    DEFAULT_WINDOW_S,
    SharingLimits,
    SharingRule,
    rules_broken,
)

__all__ = [
    "DEFAULT_RATE_TOLERANCE",
    "DEFAULT_TUNERS",
    "DEFAULT_WINDOW_S",
    "CardFinding",
    "EcmObservation",
    "SharingLimits",
    "SharingRule",
    "detect",
    "flagged_cards",
    "parse_log",
    "read_log",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class EcmObservation:
    """One ECM request answered by a card."""

    time_s: float
    card: int
    channel: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CardFinding:
    """One card's worst window for each rule, and the rules it broke."""

    card: int
    requests: int
    channels: tuple[int, ...]
    max_services: int
    max_services_at_s: float
    max_rate: int
    max_rate_at_s: float
    rules: tuple[SharingRule, ...] = field(default=())

    @property
    def flagged(self) -> bool:
        return bool(self.rules)

    def to_json(self) -> dict[str, Any]:
        return {"card": self.card, "flagged": self.flagged,
                "rules": [r.value for r in self.rules], "requests": self.requests,
                "channels": list(self.channels), "max_services": self.max_services,
                "max_services_at": _iso(self.max_services_at_s),
                "max_rate": self.max_rate, "max_rate_at": _iso(self.max_rate_at_s)}


def _iso(time_s: float) -> str:
    return datetime.fromtimestamp(time_s, UTC).isoformat()


def detect(observations: Iterable[EcmObservation],
           limits: SharingLimits | None = None) -> list[CardFinding]:
    """Every card in ``observations`` with its finding, by serial."""
    limits = limits or SharingLimits()
    windows: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for obs in observations:
        windows[obs.card][limits.window_of(obs.time_s)].append(obs.channel)
    findings = []
    for card in sorted(windows):
        per_window = windows[card]
        services_w = max(per_window, key=lambda w: (len(set(per_window[w])), -w))
        rate_w = max(per_window, key=lambda w: (len(per_window[w]), -w))
        max_services = len(set(per_window[services_w]))
        max_rate = len(per_window[rate_w])
        # each rule reads one count, so the worst window of each decides it
        rules = rules_broken(max_services, max_rate, limits)
        findings.append(CardFinding(
            card=card, requests=sum(len(v) for v in per_window.values()),
            channels=tuple(sorted({c for v in per_window.values() for c in v})),
            max_services=max_services, max_services_at_s=services_w * limits.window_s,
            max_rate=max_rate, max_rate_at_s=rate_w * limits.window_s, rules=rules))
    return findings


def flagged_cards(findings: Sequence[CardFinding]) -> list[int]:
    return [f.card for f in findings if f.flagged]


# --- the log --------------------------------------------------------------------------------
def _int_field(obj: dict[str, Any], key: str, where: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FormatError(f"{key!r} must be a non-negative integer", path=where).with_id(
            "diag.non_negative_integer", field=where, key=f"{key!r}")
    return value


def _time_field(obj: dict[str, Any], where: str) -> float:
    if "time_s" in obj:
        value = obj["time_s"]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise FormatError("'time_s' must be non-negative Unix seconds", path=where).with_id(
                "diag.time_non_negative_unix", field=where)
        return float(value)
    text = obj.get("time")
    if not isinstance(text, str):
        raise FormatError("'time' (ISO 8601 with UTC offset) or 'time_s' is required",
                          path=where).with_id("diag.time_iso_utc_offset", field=where)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise FormatError(f"'time' {text[:40]!r} is not ISO 8601", path=where).with_id(
            "diag.time_not_iso", field=where, text=f"{text[:40]!r}") from None
    if at.tzinfo is None:
        raise FormatError(f"'time' {text[:40]!r} has no UTC offset", path=where).with_id(
            "diag.time_no_utc_offset", field=where, text=f"{text[:40]!r}")
    return at.timestamp()


def parse_log(lines: Iterable[str], name: str = "log") -> list[EcmObservation]:
    """Observations from JSON lines (blank lines skipped); :class:`FormatError` naming the
    line on the first bad one."""
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FormatError(f"not JSON ({exc.msg})", path=where).with_id(
                "diag.not_json", field=where, msg=exc.msg) from None
        if not isinstance(obj, dict):
            raise FormatError("a line must be a JSON object", path=where).with_id(
                "diag.line_json_object", field=where)
        out.append(EcmObservation(time_s=_time_field(obj, where),
                                  card=_int_field(obj, "card", where),
                                  channel=_int_field(obj, "channel", where)))
    return out


def read_log(path: Path) -> list[EcmObservation]:
    try:
        with path.open(encoding="utf-8") as f:
            return parse_log(f, path.name)
    except UnicodeDecodeError:
        raise FormatError("not UTF-8 text", path=path.name).with_id(
            "diag.not_utf_text", field=path.name) from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}").with_id(
            "sharing_log_unreadable", path=str(path)) from None
