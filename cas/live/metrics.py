"""In-process metrics of the live head-end, rendered in the Prometheus text format 0.0.4.

Three kinds, one object, no dependency:

* ``inc(name, value, **labels)``: a counter (only goes up; ``value`` must be >= 0);
* ``set(name, value, **labels)``: a gauge;
* ``observe(name, seconds, **labels)``: a summary (``_sum``, ``_count`` and the 0.5/0.9/0.99
  quantiles of the last :data:`QUANTILE_WINDOW` observations).

Names are given without the ``cas_live_`` prefix (``inc("packets_sent_total", service="1")``);
the prefix is added when missing.  A name keeps the kind it was first used with; using it as
another kind is a :class:`~cas.errors.UsageError`, so is a name or label that Prometheus would
reject.  Every method is thread-safe: the playout thread, the carousel thread and the HTTP
handler share one instance.

The metric names the head-end publishes, with their meaning, are in :data:`HELP` and in
``docs/live-ops.md``.
"""

from __future__ import annotations

import math
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from cas.errors import UsageError

PREFIX = "cas_live_"

#: How many recent observations a summary keeps for its quantiles.
QUANTILE_WINDOW = 1024
QUANTILES = (0.5, 0.9, 0.99)

_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class MetricKind(Enum):
    COUNTER = "counter"
    GAUGE = "gauge"
    SUMMARY = "summary"


#: Help text of the metrics the head-end publishes (name without prefix -> help).
HELP: dict[str, str] = {
    "service_bitrate_bps": "Output bitrate of a service over the last second, bits per second.",
    "packets_sent_total": "TS packets sent for a service.",
    "ecm_sections_total": "ECM sections inserted for a service.",
    "emm_sections_total": "EMM sections aired, by kind (unique, shared, global, cycle).",
    "emm_generated_total": "EMMs generated from rights changes and stored in the outbox, by kind.",
    "carousel_queue_depth": "EMMs in the outbox that still have repeats to air.",
    "carousel_oldest_pending_seconds": "Age of the oldest EMM in the outbox not yet aired once.",
    "carousel_poll_seconds": "Time to read the rights journal and queue its EMMs.",
    "carousel_journal_cursor": "Highest rights-journal id the carousel has read.",
    "carousel_backlog_cards": "Cards with a rights change not yet turned into EMMs.",
    "late_datagrams_total": "Datagrams sent more than 5 ms behind their schedule.",
    "ecmg_round_trip_seconds": "ECM request to ECM response time at the ECMG, per service.",
    "cc_errors_total": "Continuity-counter discontinuities seen in a service's input.",
    "emmg_bytes_sent_total": "EMM section bytes sent to the external mux over EMMG/PDG<=>MUX.",
    "ecmg_up": "1 while a [[ca_system]]'s ECMG (primary or backup) is connected and set up.",
    "ecmg_failures_total": "A [[ca_system]]'s ECMG failed: refused or lost connection, error "
                           "message, answers late three times in a row.",
    "ecmg_switches_total": "A [[ca_system]] moved to its other ECMG (primary <-> backup).",
    "ecmg_failbacks_total": "A [[ca_system]] went back from its backup ECMG to the primary, "
                            "which answered again (also counted in ecmg_switches_total).",
    "ecmg_late_total": "CW_provisions a [[ca_system]]'s ECMG answered later than max_comp_time.",
    "ecmg_missed_ecms_total": "ECMs of a [[ca_system]] not ready when their broadcast was due "
                              "(nothing aired for that period).",
    "ecmg_ecm_sections_total": "ECM sections of a [[ca_system]] inserted in the multiplex.",
    "ecmg_response_seconds": "CW_provision to ECM_response time of a [[ca_system]]'s ECMG.",
    "mux_bytes_total": "Datagram bytes an external EMMG/PDG sent that the [mux] queued, per client.",
    "mux_sections_total": "Datagrams (sections or TS packets) the [mux] queued, per client.",
    "mux_dropped_total": "Datagrams the [mux] dropped because a client overran its queue.",
    "mux_packets_total": "TS packets the [mux] put on air on a client's PID.",
    "mux_clients_connected": "Open EMMG/PDG<=>MUX channels of a client.",
}


def _full_name(name: str) -> str:
    full = name if name.startswith(PREFIX) else PREFIX + name
    if not _NAME_RE.match(full):
        raise UsageError(f"invalid metric name {name!r}").with_id(
            "live.invalid_metric_name", name=f"{name!r}")
    return full


def _label_key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    for label, value in labels.items():
        if not _LABEL_RE.match(label) or label.startswith("__") or label == "quantile":
            raise UsageError(f"invalid metric label {label!r}").with_id(
                "live.invalid_metric_label", label=f"{label!r}")
        if not isinstance(value, str):
            raise UsageError(f"metric label {label!r} must be a string").with_id(
                "live.metric_label_string", label=f"{label!r}")
    return tuple(sorted(labels.items()))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_labels(key: tuple[tuple[str, str], ...], extra: tuple[str, str] | None = None) -> str:
    pairs = list(key) + ([extra] if extra else [])
    if not pairs:
        return ""
    return "{" + ",".join(f'{label}="{_escape(value)}"' for label, value in pairs) + "}"


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


@dataclass
class _Summary:
    total: float = 0.0
    count: int = 0
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=QUANTILE_WINDOW))

    def add(self, value: float) -> None:
        self.total += value
        self.count += 1
        self.recent.append(value)

    def quantile(self, q: float) -> float:
        if not self.recent:
            return math.nan
        ordered = sorted(self.recent)
        # nearest-rank quantile
        rank = max(0, math.ceil(q * len(ordered)) - 1)
        return ordered[rank]


@dataclass
class _Family:
    kind: MetricKind
    values: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)
    summaries: dict[tuple[tuple[str, str], ...], _Summary] = field(default_factory=dict)


class LiveMetrics:
    """Counters, gauges and summaries of one head-end process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._families: dict[str, _Family] = {}

    def __repr__(self) -> str:
        with self._lock:
            return f"LiveMetrics({len(self._families)} metrics)"

    def _family(self, full: str, kind: MetricKind) -> _Family:
        family = self._families.get(full)
        if family is None:
            family = self._families[full] = _Family(kind)
        elif family.kind is not kind:
            raise UsageError(f"metric {full} is a {family.kind.value}, not a {kind.value}").with_id(
                "live.metric_not", full=full, value=family.kind.value, value2=kind.value)
        return family

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        """Add ``value`` (>= 0) to a counter."""
        if not value >= 0:
            raise UsageError(f"counter {name} cannot go down (inc by {value})").with_id(
                "live.counter_cannot_go_down", name=name, value=value)
        full, key = _full_name(name), _label_key(labels)
        with self._lock:
            family = self._family(full, MetricKind.COUNTER)
            family.values[key] = family.values.get(key, 0.0) + value

    def set(self, name: str, value: float, **labels: str) -> None:
        """Set a gauge."""
        full, key = _full_name(name), _label_key(labels)
        with self._lock:
            self._family(full, MetricKind.GAUGE).values[key] = float(value)

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Record one observation (seconds, by convention) in a summary."""
        full, key = _full_name(name), _label_key(labels)
        with self._lock:
            family = self._family(full, MetricKind.SUMMARY)
            family.summaries.setdefault(key, _Summary()).add(float(value))

    def value(self, name: str, **labels: str) -> float:
        """Current value of a counter or gauge (0 if never touched); a summary's count."""
        full, key = _full_name(name), _label_key(labels)
        with self._lock:
            family = self._families.get(full)
            if family is None:
                return 0.0
            if family.kind is MetricKind.SUMMARY:
                summary = family.summaries.get(key)
                return float(summary.count) if summary else 0.0
            return family.values.get(key, 0.0)

    def render_prometheus(self) -> str:
        """The text exposition format 0.0.4 (``Content-Type: text/plain; version=0.0.4``)."""
        lines: list[str] = []
        with self._lock:
            for full in sorted(self._families):
                family = self._families[full]
                short = full[len(PREFIX) :] if full.startswith(PREFIX) else full
                help_text = HELP.get(short, short.replace("_", " "))
                lines.append(f"# HELP {full} {help_text.replace(chr(92), chr(92) * 2)}")
                lines.append(f"# TYPE {full} {family.kind.value}")
                if family.kind is MetricKind.SUMMARY:
                    for key in sorted(family.summaries):
                        summary = family.summaries[key]
                        for q in QUANTILES:
                            labels = _format_labels(key, ("quantile", str(q)))
                            lines.append(f"{full}{labels} {_format_value(summary.quantile(q))}")
                        labels = _format_labels(key)
                        lines.append(f"{full}_sum{labels} {_format_value(summary.total)}")
                        lines.append(f"{full}_count{labels} {summary.count}")
                else:
                    for key in sorted(family.values):
                        labels = _format_labels(key)
                        lines.append(f"{full}{labels} {_format_value(family.values[key])}")
        return "\n".join(lines) + "\n" if lines else ""
