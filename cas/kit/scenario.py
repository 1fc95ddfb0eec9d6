"""Kit scenario files: TOML read into frozen declarations, every error one line naming the
file, the line and the key (docs/kit.md, "Scenario format").

A scenario is an operator (profile and lineup), subscribers with their cards and boxes, and a
timeline of steps.  Each step applies events on the simulation clock, then the stream of that
step is played and every (box, channel) must show the step's expected state.

The rules, in the order :func:`parse_scenario` checks them:

1. the file is TOML (tomllib's own line and column are kept);
2. ``[kit]`` has ``name`` (a slug), ``seed`` (int); ``profile``/``lineup`` are a shipped name
   or a path relative to the scenario; ``start`` is a UTC date-time;
3. every ``[[subscriber]]`` has a unique ``key``; ``box`` names another subscriber;
4. every ``[[step]]`` has a unique ``name``; its events are of a known kind with the fields
   that kind needs, naming known subscribers;
5. ``[step.expect.BOX]`` names a known box, its channels are numbers (or ``default``) and its
   values are :class:`cas.reasons.Reason` names;
6. ``[step.check.BOX]`` (optional) names a known box and only the checks of :data:`CHECKS`
   (on-screen messages, fingerprint, purchase report billed, card sharing), each of its type.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from cas.errors import ConfigError, UsageError
from cas.formats.emm import EmmCommand
from cas.headend.osd import sharing_commands
from cas.i18n import Msg
from cas.reasons import Reason
from cas.sharing import DEFAULT_RATE_TOLERANCE, DEFAULT_TUNERS, DEFAULT_WINDOW_S, SharingPolicy

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")
DEFAULT_START = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


class ScenarioError(ConfigError):
    """A scenario file that cannot be used; the message is ``FILE:LINE: KEY: problem``."""


class EventKind(StrEnum):
    """What can happen on the simulation clock between two steps of stream."""

    PAY = "pay"                  # amount (major units)
    SUBSCRIBE = "subscribe"      # package
    SWITCH = "switch"            # package
    RENEWAL = "renewal"          # on
    SUSPEND = "suspend"          # days
    RESUME = "resume"
    PROMISE = "promise"          # promised payment
    REGION = "region"            # region
    KIDS = "kids"                # on
    PIN = "pin"                  # pin ("" to stop entering one)
    MOVE_CARD = "move-card"      # to (a box key, "" to take the card out)
    KILL = "kill"
    UNLINK_CARD = "unlink-card"  # the card is taken off its account
    ADVANCE = "advance"          # days (the clock; renewals, expiries and blocks run)
    DROP_EMM = "drop-emm"        # this step's stream carries no EMMs
    REPLAY_EMM = "replay-emm"    # step: this step's stream carries that earlier step's EMMs
    TAMPER_EMM = "tamper-emm"    # this step's EMMs have one byte of their sealed body changed
    LOSE_ECM = "lose-ecm"        # channels: their ECM PIDs carry nothing in this step
    ECM_KEY = "ecm-key"          # index: ECMs are sealed with this ECM key from now on
    SEND_ECM_KEY = "send-ecm-key"  # index: this step's stream delivers that key (global EMM)
    OTHER_CARD_EMM = "other-card-emm"  # a unique EMM for a card in no box of the kit
    # pay-per-view (docs/ppv.md)
    PPV_EVENT = "ppv-event"      # event, channel, start_s, duration_s, price: in the catalogue
    BOOK = "book"                # event: pre-booked, billed, its right sent by EMM
    TOP_UP = "top-up"            # tokens, credit_limit: a purse top-up EMM
    BUY = "buy"                  # channel, event, pin: the viewer buys on the box (box action)
    UPLOAD_REPORT = "upload-report"  # mode: the box's purchase report to the head-end (box action)
    # on-screen messages, fingerprints (docs/osd.md)
    MESSAGE = "message"          # address, id, priority, duration_s, text
    FINGERPRINT = "fingerprint"  # address, kind (overt/covert), duration_s
    # card sharing (docs/sharing.md)
    SHARE_CARD = "share-card"    # boxes: clones of the card answer in those boxes too
    BLOCK = "block"              # the card is blocked (sharing found), sent by EMM
    SHARING_POLICY = "sharing-policy"  # policy, tuners, window_s: the card's own check, by EMM


#: Fields each event kind needs (besides ``do``, and ``who`` except for the clock and the stream).
_NEEDS: dict[EventKind, dict[str, type]] = {
    EventKind.PAY: {"amount": int},
    EventKind.SUBSCRIBE: {"package": str},
    EventKind.SWITCH: {"package": str},
    EventKind.RENEWAL: {"on": bool},
    EventKind.SUSPEND: {"days": int},
    EventKind.RESUME: {},
    EventKind.PROMISE: {},
    EventKind.REGION: {"region": int},
    EventKind.KIDS: {"on": bool},
    EventKind.PIN: {"pin": str},
    EventKind.MOVE_CARD: {"to": str},
    EventKind.KILL: {},
    EventKind.UNLINK_CARD: {},
    EventKind.ADVANCE: {"days": int},
    EventKind.DROP_EMM: {},
    EventKind.REPLAY_EMM: {"step": str},
    EventKind.TAMPER_EMM: {},
    EventKind.LOSE_ECM: {"channels": list},
    EventKind.ECM_KEY: {"index": int},
    EventKind.SEND_ECM_KEY: {"index": int},
    EventKind.OTHER_CARD_EMM: {},
    EventKind.PPV_EVENT: {"event": int, "channel": int, "start_s": int, "duration_s": int,
                          "price": int},
    EventKind.BOOK: {"event": int},
    EventKind.TOP_UP: {"tokens": int, "credit_limit": int},
    EventKind.BUY: {"channel": int, "event": int, "pin": str},
    EventKind.UPLOAD_REPORT: {},
    EventKind.MESSAGE: {"address": str, "id": int, "priority": int, "duration_s": int,
                        "text": str},
    EventKind.FINGERPRINT: {"address": str, "kind": str, "duration_s": int},
    EventKind.SHARE_CARD: {"boxes": list},
    EventKind.BLOCK: {},
    EventKind.SHARING_POLICY: {"policy": str},
}
#: Optional fields and their defaults.
_OPTIONAL: dict[EventKind, dict[str, tuple[type, Any]]] = {
    EventKind.PPV_EVENT: {"impulse": (bool, True)},
    EventKind.UPLOAD_REPORT: {"mode": (str, "fresh")},
    EventKind.FINGERPRINT: {"x": (int, 90), "y": (int, 90)},
    # the defaults of `cas card sharing-policy`
    EventKind.SHARING_POLICY: {"tuners": (int, DEFAULT_TUNERS),
                               "rate_tolerance": (int, DEFAULT_RATE_TOLERANCE),
                               "window_s": (int, int(DEFAULT_WINDOW_S)),
                               "clear": (bool, False)},
}
#: What the runner makes the box do (file mode), rather than the head-end or the stream.
BOX_ACTIONS = frozenset({EventKind.BUY, EventKind.UPLOAD_REPORT, EventKind.SHARE_CARD})
#: How a purchase report reaches the head-end: as the box read it, the last one again, or
#: with one byte changed on the way.
REPORT_MODES = ("fresh", "replayed", "forged")
#: Addresses of an on-screen message or fingerprint EMM: the box's card, its group, everyone.
ADDRESSES = ("unique", "shared", "global")
FINGERPRINT_KINDS = ("overt", "covert")
#: The card's sharing policies (``sharing-policy`` event), as ``cas card sharing-policy`` names them.
SHARING_POLICIES = {p.name.lower(): p for p in SharingPolicy}
#: ``[step.check.BOX]`` keys and the TOML types they take (docs/kit.md, "Checks").
CHECKS: dict[str, tuple[type, ...]] = {
    "messages": (list,),      # message ids the box showed (and acknowledged), in order
    "fingerprint": (str,),    # "overt", "covert" (with the card's serial) or "none"
    "report": (int, str),     # the head-end billed this (major units), or refused it (code)
    "sharing": (bool,),       # cas diag sharing flags the box's card on this step's ECM log
    "tuners": (int,),         # the tuner count for "sharing" (default 2)
}
REPORT_REFUSALS = ("PPV_REPORT_REPLAYED", "PPV_REPORT_FORGED")

#: Events of the stream or the clock, not of one subscriber.
STREAM_EVENTS = frozenset({EventKind.DROP_EMM, EventKind.REPLAY_EMM, EventKind.TAMPER_EMM,
                           EventKind.LOSE_ECM, EventKind.ECM_KEY, EventKind.SEND_ECM_KEY,
                           EventKind.OTHER_CARD_EMM})
_NO_WHO = {EventKind.ADVANCE, EventKind.PPV_EVENT, *STREAM_EVENTS}
#: ``who`` is needed unless the address is global.
_WHO_UNLESS_GLOBAL = {EventKind.MESSAGE, EventKind.FINGERPRINT}


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    kind: EventKind
    who: str | None = None
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriberSpec:
    key: str
    name: str
    #: None: the operator's home region
    region: int | None = None
    card: bool = True
    #: The subscriber whose box holds this subscriber's card at the start (default: own).
    box: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Expectation:
    """One box's expected reasons: per channel, else ``default``."""

    default: Reason
    channels: Mapping[int, Reason]

    def reason(self, channel: int) -> Reason:
        return self.channels.get(channel, self.default)


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    name: str
    title: str
    events: tuple[Event, ...]
    expect: Mapping[str, Expectation]
    #: The stream clock against the simulation clock: ECMs are stamped at now + this.
    stream_offset_s: int = 0
    #: Per box, the checks besides the channels (``[step.check.BOX]``, :data:`CHECKS`).
    checks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def box_actions(self) -> bool:
        return any(e.kind in BOX_ACTIONS for e in self.events)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    name: str
    title: str
    seed: int
    profile: str
    lineup: str | None
    start: datetime
    covers: tuple[str, ...]
    subscribers: tuple[SubscriberSpec, ...]
    steps: tuple[Step, ...]
    source: Path
    text: str


class _Where:
    """Finds the line of a key in the source text, for the one-line errors."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def line_of(self, key: str, *, after: int = 0) -> int:
        after = self._narrow(key, after)
        leaf = key.rsplit(".", 1)[-1]
        pattern = re.compile(rf"(^|[\s{{,\[])\"?{re.escape(leaf)}\"?\s*=")
        for i in range(after, len(self.lines)):
            if pattern.search(self.lines[i]):
                return i + 1
        return after + 1 if after else 1

    def _narrow(self, key: str, after: int) -> int:
        """Start the search at the event or the ``[step.expect.BOX]`` table ``key`` is in."""
        event = re.search(r"\.events\[(\d+)\]", key)
        if event:
            seen = -1
            for i in range(after, len(self.lines)):
                seen += self.lines[i].count("{")
                if seen >= int(event.group(1)):
                    return i
        box = re.search(r"\.expect\.([^.]+)", key)
        if box:
            for i in range(after, len(self.lines)):
                if self.lines[i].strip() == f"[step.expect.{box.group(1)}]":
                    return i
        return after

    def header_line(self, header: str, index: int) -> int:
        """The line of the ``index``-th ``[[header]]`` table (0-based)."""
        seen = -1
        for i, line in enumerate(self.lines):
            if line.strip() == f"[[{header}]]":
                seen += 1
                if seen == index:
                    return i + 1
        return 1

    def error(self, key: str, problem: str, words: Msg, *, after: int = 0) -> ScenarioError:
        """``path:line: key: problem``; ``words`` is ``problem`` as a catalogue message."""
        line = self.line_of(key, after=after)
        return ScenarioError(f"{self.path}:{line}: {key}: {problem}").with_id(
            "kit.scenario_field", path=self.path, line=line, key=key, problem=words)


def load_scenario(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}").with_id(
            "kit.cannot_read_2", path=path, strerror=exc.strerror) from exc
    except UnicodeDecodeError:
        raise ScenarioError(f"{path}:1: not UTF-8 text").with_id(
            "kit.not_utf_text", path=path) from None
    return parse_scenario(text, path)


def parse_scenario(text: str, path: Path) -> Scenario:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        line = m.group(1) if m else "1"
        raise ScenarioError(f"{path}:{line}: not valid TOML: {str(exc).split(' (at')[0]}").with_id(
            "kit.not_valid_toml", path=path, line=line, value=str(exc).split(" (at")[0]) from None
    where = _Where(path, text)
    kit = doc.get("kit")
    if not isinstance(kit, dict):
        raise ScenarioError(f"{path}:1: kit: the [kit] table is missing").with_id(
            "kit.kit_kit_table_missing", path=path)
    unknown = set(doc) - {"kit", "subscriber", "step"}
    if unknown:
        key = sorted(unknown)[0]
        raise where.error(key, "unknown table (use kit, subscriber, step)",
            Msg("errors.kit.problem.unknown_table_use_kit"))
    kit_line = _table_line(where, "[kit]")
    name = _get(where, kit, "kit.name", str, after=kit_line)
    if not _SLUG.match(name):
        raise where.error("kit.name", "use lower-case letters, digits and '-'",
            Msg("errors.kit.problem.use_lower_case_letters"), after=kit_line)
    seed = _get(where, kit, "kit.seed", int, after=kit_line)
    profile = _get(where, kit, "kit.profile", str, default="demo", after=kit_line)
    lineup = _get(where, kit, "kit.lineup", str, default="", after=kit_line) or None
    start = _get(where, kit, "kit.start", datetime, default=DEFAULT_START, after=kit_line)
    if start.tzinfo is None or start.utcoffset() != UTC.utcoffset(None):
        raise where.error("kit.start", "give a UTC date-time ending in Z",
            Msg("errors.kit.problem.give_utc_date_time"), after=kit_line)
    covers = tuple(_get(where, kit, "kit.covers", list, default=[], after=kit_line))
    subscribers = _subscribers(where, doc.get("subscriber", []))
    keys = {s.key for s in subscribers}
    steps = _steps(where, doc.get("step", []), keys)
    return Scenario(name=name, title=_get(where, kit, "kit.title", str, default=name,
                                          after=kit_line),
                    seed=seed, profile=profile, lineup=lineup, start=start.astimezone(UTC),
                    covers=tuple(str(c) for c in covers), subscribers=subscribers,
                    steps=steps, source=path, text=text)


def _table_line(where: _Where, header: str) -> int:
    for i, line in enumerate(where.lines):
        if line.strip() == header:
            return i
    return 0


def _get(where: _Where, table: Mapping[str, Any], key: str, kind: type, *,
         default: Any = None, after: int = 0) -> Any:
    leaf = key.rsplit(".", 1)[-1]
    if leaf not in table:
        if default is not None:
            return default
        raise ScenarioError(f"{where.path}:{after + 1}: {key}: missing").with_id(
            "kit.missing", path=where.path, value=after + 1, key=key)
    value = table[leaf]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise where.error(key, f"expected {kind.__name__}, got {type(value).__name__}",
                          Msg("errors.kit.problem.expected_got",
                              {"name__": kind.__name__, "name__2": type(value).__name__}),
                          after=after)
    return value


def _entry(where: _Where, item: Any, table: str, i: int, id_key: str, allowed: set[str],
           taken: set[str]) -> tuple[str, int]:
    """Entry ``i`` of ``[[table]]``: its id (a slug not used before), checked with no unknown
    key, and the line its table starts after (for error lines)."""
    at = where.header_line(table, i) - 1
    ident = _get(where, item, f"{table}[{i}].{id_key}", str, after=at)
    if not _SLUG.match(ident):
        raise where.error(f"{table}[{i}].{id_key}", "use lower-case letters, digits and '-'",
            Msg("errors.kit.problem.use_lower_case_letters"),
                          after=at)
    if ident in taken:
        raise where.error(f"{table}[{i}].{id_key}", f"{ident!r} is used twice",
            Msg("errors.kit.problem.used_twice", {"ident": f"{ident!r}"}), after=at)
    extra = set(item) - allowed
    if extra:
        raise where.error(f"{table}[{i}].{sorted(extra)[0]}", "unknown key",
            Msg("errors.kit.problem.unknown_key"), after=at)
    return ident, at


def _subscribers(where: _Where, items: Any) -> tuple[SubscriberSpec, ...]:
    if not isinstance(items, list) or not items:
        raise ScenarioError(f"{where.path}:1: subscriber: give at least one [[subscriber]]").with_id(
            "kit.subscriber_give_least_one", path=where.path)
    out: list[SubscriberSpec] = []
    for i, item in enumerate(items):
        key, at = _entry(where, item, "subscriber", i, "key",
                         {"key", "name", "region", "card", "box"}, {s.key for s in out})
        out.append(SubscriberSpec(
            key=key, name=_get(where, item, f"subscriber[{i}].name", str, default=key, after=at),
            region=(_get(where, item, f"subscriber[{i}].region", int, after=at)
                    if "region" in item else None),
            card=_get(where, item, f"subscriber[{i}].card", bool, default=True, after=at),
            box=_get(where, item, f"subscriber[{i}].box", str, default="", after=at) or None))
    keys = {s.key for s in out}
    for i, s in enumerate(out):
        if s.box is not None and s.box not in keys:
            raise where.error(f"subscriber[{i}].box", f"no subscriber {s.box!r}",
                Msg("errors.kit.problem.no_subscriber", {"box": f"{s.box!r}"}),
                              after=where.header_line("subscriber", i) - 1)
    return tuple(out)


def _steps(where: _Where, items: Any, boxes: set[str]) -> tuple[Step, ...]:
    if not isinstance(items, list) or not items:
        raise ScenarioError(f"{where.path}:1: step: give at least one [[step]]").with_id(
            "kit.step_give_least_one", path=where.path)
    out: list[Step] = []
    for i, item in enumerate(items):
        name, at = _entry(where, item, "step", i, "name",
                          {"name", "title", "events", "expect", "stream_offset_s", "check"},
                          {s.name for s in out})
        events = tuple(_event(where, e, f"step[{i}].events[{j}]", boxes, at,
                              earlier={s.name for s in out})
                       for j, e in enumerate(_get(where, item, f"step[{i}].events", list,
                                                  default=[], after=at)))
        expect_raw = _get(where, item, f"step[{i}].expect", dict, after=at)
        expect: dict[str, Expectation] = {}
        for box, table in expect_raw.items():
            key = f"step[{i}].expect.{box}"
            if box not in boxes:
                raise where.error(key, f"no subscriber {box!r}",
                    Msg("errors.kit.problem.no_subscriber", {"box": f"{box!r}"}), after=at)
            if not isinstance(table, dict):
                raise where.error(key, "expected a table of channel = REASON",
                    Msg("errors.kit.problem.expected_table_channel_reason"), after=at)
            expect[box] = _expectation(where, table, key, at)
        missing = sorted(boxes - set(expect))
        if missing:
            raise where.error(f"step[{i}].expect", f"no expectation for box {missing[0]!r}",
                Msg("errors.kit.problem.no_expectation_box", {"missing": f"{missing[0]!r}"}),
                              after=at)
        checks = _checks(where, _get(where, item, f"step[{i}].check", dict, default={},
                                     after=at), f"step[{i}].check", boxes, at)
        out.append(Step(name=name, title=_get(where, item, f"step[{i}].title", str,
                                              default=name, after=at),
                        events=events, expect=expect, checks=checks,
                        stream_offset_s=_get(where, item, f"step[{i}].stream_offset_s", int,
                                             default=0, after=at)))
    return tuple(out)


def _reason(where: _Where, value: Any, key: str, at: int) -> Reason:
    try:
        return Reason(value)
    except ValueError:
        raise where.error(key, f"{value!r} is not a reason code "
                               f"({', '.join(r.value for r in Reason)})",
                          Msg("errors.kit.problem.not_reason_code",
                              {"value": f"{value!r}", "value2": ", ".join(r.value for r in Reason)}),
                          after=at) from None


def _expectation(where: _Where, table: Mapping[str, Any], key: str, at: int) -> Expectation:
    default = _reason(where, table.get("default", "OPEN"), f"{key}.default", at)
    channels: dict[int, Reason] = {}
    for ch, value in table.items():
        if ch == "default":
            continue
        if not ch.isascii() or not ch.isdigit():
            raise where.error(f"{key}.{ch}", "a channel is a number (or 'default')",
                Msg("errors.kit.problem.channel_number_default"), after=at)
        channels[int(ch)] = _reason(where, value, f"{key}.{ch}", at)
    return Expectation(default=default, channels=channels)


def _checks(where: _Where, raw: Mapping[str, Any], key: str, boxes: set[str],
            at: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for box, table in raw.items():
        here = f"{key}.{box}"
        if box not in boxes:
            raise where.error(here, f"no subscriber {box!r}",
                              Msg("errors.kit.problem.no_subscriber", {"box": f"{box!r}"}),
                              after=at)
        if not isinstance(table, dict):
            raise where.error(here, "expected a table of checks",
                              Msg("errors.kit.problem.expected_table_checks"), after=at)
        for name, value in table.items():
            if name not in CHECKS:
                raise where.error(f"{here}.{name}", f"unknown check (use {', '.join(CHECKS)})",
                                  Msg("errors.kit.problem.unknown_check",
                                      {"checks": ", ".join(CHECKS)}), after=at)
            kinds = CHECKS[name]
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                names = [k.__name__ for k in kinds]
                got = type(value).__name__
                raise where.error(
                    f"{here}.{name}", f"expected {' or '.join(names)}, got {got}",
                    Msg("errors.kit.problem.expected_got", {"name__": names[0], "name__2": got})
                    if len(names) == 1 else
                    Msg("errors.kit.problem.expected_either_got",
                        {"first": names[0], "second": " / ".join(names[1:]), "got": got}),
                    after=at)
        messages = table.get("messages", [])
        if not all(isinstance(m, int) and not isinstance(m, bool) and 1 <= m <= 0xFFFF
                   for m in messages):
            raise where.error(f"{here}.messages", "a list of message ids (1..65535)",
                              Msg("errors.kit.problem.list_message_ids"), after=at)
        if table.get("fingerprint", "none") not in (*FINGERPRINT_KINDS, "none"):
            raise where.error(f"{here}.fingerprint", "overt, covert or none",
                              Msg("errors.kit.problem.fingerprint_check"), after=at)
        report = table.get("report", 0)
        if isinstance(report, str) and report not in REPORT_REFUSALS:
            raise where.error(f"{here}.report", "major units billed, or "
                              + " / ".join(REPORT_REFUSALS),
                              Msg("errors.kit.problem.report_check",
                                  {"refusals": " / ".join(REPORT_REFUSALS)}), after=at)
        if "tuners" in table and ("sharing" not in table or not 1 <= table["tuners"] <= 64):
            raise where.error(f"{here}.tuners", "1..64, with a sharing check",
                              Msg("errors.kit.problem.tuners_check"), after=at)
        out[box] = dict(table)
    return out


def _event(where: _Where, raw: Any, key: str, boxes: set[str], at: int, *,
           earlier: set[str]) -> Event:
    if not isinstance(raw, dict):
        raise where.error(key, "an event is an inline table {do = ..., ...}",
            Msg("errors.kit.problem.event_inline_table"), after=at)
    try:
        kind = EventKind(str(raw.get("do")))
    except ValueError:
        raise where.error(f"{key}.do", f"{raw.get('do')!r} is not an event "
                                       f"({', '.join(k.value for k in EventKind)})",
                          Msg("errors.kit.problem.not_event",
                              {"value": f"{raw.get('do')!r}",
                               "value2": ", ".join(k.value for k in EventKind)}),
                          after=at) from None
    who: str | None = None
    needs = _NEEDS[kind]
    optional = _OPTIONAL.get(kind, {})
    args = {name: _get(where, raw, f"{key}.{name}", t, after=at) for name, t in needs.items()}
    args.update({name: _get(where, raw, f"{key}.{name}", t, after=at) if name in raw else d
                 for name, (t, d) in optional.items()})
    if kind not in _NO_WHO and not (kind in _WHO_UNLESS_GLOBAL and args["address"] == "global"):
        who = _get(where, raw, f"{key}.who", str, after=at)
        if who not in boxes:
            raise where.error(f"{key}.who", f"no subscriber {who!r}",
                Msg("errors.kit.problem.no_subscriber_2", {"who": f"{who!r}"}), after=at)
    extra = (set(raw) - set(needs) - set(optional) - {"do"}
             - ({"who"} if who is not None else set()))
    if extra:
        raise where.error(f"{key}.{sorted(extra)[0]}", f"unknown field for {kind.value!r}",
            Msg("errors.kit.problem.unknown_field", {"value": f"{kind.value!r}"}),
                          after=at)
    if kind is EventKind.LOSE_ECM and not all(
            isinstance(c, int) and not isinstance(c, bool) for c in args["channels"]):
        raise where.error(f"{key}.channels", "a list of channel numbers",
            Msg("errors.kit.problem.list_channel_numbers"), after=at)
    if kind in (EventKind.ECM_KEY, EventKind.SEND_ECM_KEY) and not 0 <= args["index"] <= 0xFF:
        raise where.error(f"{key}.index", "an ECM key index is 0..255",
            Msg("errors.kit.problem.ecm_key_index"), after=at)
    if kind is EventKind.REPLAY_EMM and args["step"] not in earlier:
        raise where.error(f"{key}.step", f"no earlier step {args['step']!r}",
            Msg("errors.kit.problem.no_earlier_step", {"args": f"{args['step']!r}"}), after=at)
    if kind is EventKind.MOVE_CARD and args["to"] and args["to"] not in boxes:
        raise where.error(f"{key}.to", f"no box {args['to']!r}",
            Msg("errors.kit.problem.no_box", {"args": f"{args['to']!r}"}), after=at)
    _check_new_event(where, kind, args, key, boxes, at, who)
    return Event(kind=kind, who=who, args=args)


def _check_new_event(where: _Where, kind: EventKind, args: Mapping[str, Any], key: str,
                     boxes: set[str], at: int, who: str | None) -> None:
    """The ranges of the pay-per-view, on-screen and sharing events."""
    def bad(name: str, problem: str, words: Msg) -> ScenarioError:
        return where.error(f"{key}.{name}", problem, words, after=at)

    def one_of(name: str, choices: Iterable[str]) -> ScenarioError:
        listed = " / ".join(choices)
        return bad(name, listed, Msg("errors.kit.problem.one_of", {"choices": listed}))

    if "event" in args and not 1 <= args["event"] <= 0xFFFFFFFF:
        raise bad("event", "an event id is 1..4294967295",
                  Msg("errors.kit.problem.event_id_range"))
    if kind is EventKind.PPV_EVENT:
        if not 1 <= args["price"] <= 0xFFFF:
            raise bad("price", "a price is 1..65535 tokens", Msg("errors.kit.problem.price_range"))
        if args["duration_s"] < 1:
            raise bad("duration_s", "an event lasts at least 1 s",
                      Msg("errors.kit.problem.event_duration"))
    if kind is EventKind.TOP_UP and not (0 <= args["tokens"] <= 0xFFFFFFFF
                                         and 0 <= args["credit_limit"] <= 0xFFFFFFFF):
        raise bad("tokens", "tokens and credit limit are 0..4294967295",
                  Msg("errors.kit.problem.tokens_range"))
    if kind is EventKind.BUY and not (len(args["pin"]) == 4 and args["pin"].isdigit()):
        raise bad("pin", "a PIN is 4 digits", Msg("errors.kit.problem.pin_digits"))
    if kind is EventKind.UPLOAD_REPORT and args["mode"] not in REPORT_MODES:
        raise one_of("mode", REPORT_MODES)
    if kind in _WHO_UNLESS_GLOBAL and args["address"] not in ADDRESSES:
        raise one_of("address", ADDRESSES)
    if kind is EventKind.MESSAGE and not (1 <= args["id"] <= 0xFFFF
                                          and 0 <= args["priority"] <= 0xFF
                                          and 1 <= args["duration_s"] <= 0xFFFF
                                          and 0 < len(args["text"].encode()) <= 246):
        raise bad("id", "id 1..65535, priority 0..255, duration_s 1..65535, "
                        "text 1..246 bytes of UTF-8", Msg("errors.kit.problem.message_ranges"))
    if kind is EventKind.FINGERPRINT:
        if args["kind"] not in FINGERPRINT_KINDS:
            raise one_of("kind", FINGERPRINT_KINDS)
        if not (1 <= args["duration_s"] <= 0xFFFF and 0 <= args["x"] <= 100
                and 0 <= args["y"] <= 100):
            raise bad("duration_s", "duration_s 1..65535, x and y 0..100 %",
                      Msg("errors.kit.problem.fingerprint_ranges"))
    if kind is EventKind.SHARING_POLICY:
        if args["policy"] not in SHARING_POLICIES:
            raise one_of("policy", SHARING_POLICIES)
        try:
            sharing_event_commands(args)
        except UsageError as exc:
            # the message names the limit (tuners, rate tolerance or window)
            raise where.error(key, str(exc), Msg("errors.kit.problem.sharing_limit",
                                                 {"limit": exc}), after=at) from None
    if kind is EventKind.SHARE_CARD and (not args["boxes"] or not all(
            isinstance(b, str) and b in boxes and b != who for b in args["boxes"])):
        raise bad("boxes", "a list of other subscribers' boxes",
                  Msg("errors.kit.problem.other_boxes"))


def sharing_event_commands(args: Mapping[str, Any]) -> list[EmmCommand]:
    """The EMM commands of a ``sharing-policy`` event: those of ``cas card sharing-policy
    POLICY --tuners … --rate-tolerance … --window-s … [--clear]``."""
    return sharing_commands(SHARING_POLICIES[str(args["policy"])], tuners=int(args["tuners"]),
                            rate_tolerance=int(args["rate_tolerance"]),
                            window_s=int(args["window_s"]), clear=bool(args["clear"]))
