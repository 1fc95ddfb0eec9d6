"""The times and durations the wire formats can carry, and the one check for them.

Every time on the wire is a ``u32`` count of seconds since 1970-01-01 UTC: the EMM's
``not_after_s`` and ADD_ENTITLEMENT ``start_s``/``end_s`` (``cas/formats/emm.py``), the
ECM's ``timestamp_s`` (``cas/formats/ecm.py``), the card record's ``personalised_s``,
``expiry_s``, entitlement slots and ``last_ecm_s`` (``cas/formats/records.py``).  So wire
time runs from 1970-01-01 00:00:00 to 2106-02-07 06:28:15 UTC, and nothing outside it can be
sent.  A time or a duration that would leave it is refused here, with a
:class:`~cas.errors.TimeRangeError` (one line, exit 2), before anything is written — never
found out by ``struct`` half-way through an EMM run.

Three limits:

* :data:`WIRE_TIME_MAX_S` — the last second a ``u32`` carries;
* :data:`MAX_DURATION_S` — ``2**31 - 1`` s (about 68 years): a duration (an EMM validity, a
  period) is at most half the wire's range, so "a time plus a duration" stays meaningful and
  fits a signed 32-bit field;
* :data:`CLOCK_MAX_S` — the head-end's simulation clock stops a year before the end of wire
  time: every EMM run, ECM and subscription period is derived from "now" plus something (the
  default EMM validity is 7 days, a subscription period at most a year), and a clock that
  left no room for those would make the store unable to generate EMMs ever again (it never
  goes back).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from cas.errors import TimeRangeError

WIRE_TIME_MIN_S = 0
WIRE_TIME_MAX_S = 0xFFFF_FFFF
MAX_DURATION_S = 0x7FFF_FFFF
CLOCK_HEADROOM_S = 366 * 24 * 3600
CLOCK_MAX_S = WIRE_TIME_MAX_S - CLOCK_HEADROOM_S


def _text(seconds: int) -> str:
    return f"{datetime.fromtimestamp(seconds, tz=UTC):%Y-%m-%d %H:%M:%S} UTC"


def _seconds(at: datetime | int, what: str) -> int:
    if isinstance(at, bool):
        raise TimeRangeError(f"{what}: not a time").with_id("wiretime.not_time", what=what)
    if isinstance(at, int):
        return at
    if at.tzinfo is None or at.utcoffset() is None:
        raise TimeRangeError(f"{what}: times must be timezone-aware (UTC)").with_id(
            "wiretime.times_timezone_aware_utc", what=what)
    # The wire keeps whole seconds; floor, so 1969-12-31 23:59:59.5 is still before 1970.
    return math.floor(at.timestamp())


def wire_time_s(at: datetime | int, what: str, *, latest_s: int = WIRE_TIME_MAX_S) -> int:
    """``at`` as wire seconds; :class:`TimeRangeError` unless 1970 <= at <= ``latest_s``.

    ``what`` names the value for the message (``"--at"``, ``"EMM expiry"``...).
    """
    seconds = _seconds(at, what)
    if seconds < WIRE_TIME_MIN_S:
        raise TimeRangeError(f"{what}: {_describe(at)} is before 1970-01-01 00:00:00 UTC, "
                             "the start of the wire's time (u32 seconds since 1970)").with_id(
            "wiretime.before_utc_start_wire", what=what, at=_describe(at))
    if seconds > latest_s:
        limit = ("the end of the wire's time (u32 seconds since 1970)"
                 if latest_s == WIRE_TIME_MAX_S else
                 "the latest the simulation clock may be (a year before the end of the "
                 "wire's u32 time, for what is derived from it)")
        raise TimeRangeError(f"{what}: {_describe(at)} is after {_text(latest_s)}, {limit}").with_id(
            "wiretime.after", what=what, at=_describe(at), latest_s=_text(latest_s), limit=limit)
    return seconds


def clock_time_s(at: datetime | int, what: str = "clock") -> int:
    """A time the head-end's simulation clock may be set to (see :data:`CLOCK_MAX_S`)."""
    return wire_time_s(at, what, latest_s=CLOCK_MAX_S)


def wire_duration_s(value: int, what: str, *, minimum_s: int = 0) -> int:
    """A duration in seconds, ``minimum_s`` <= value <= :data:`MAX_DURATION_S`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TimeRangeError(f"{what}: a whole number of seconds").with_id(
            "wiretime.whole_number_seconds", what=what)
    if not minimum_s <= value <= MAX_DURATION_S:
        raise TimeRangeError(f"{what}: {value} s is outside {minimum_s}..{MAX_DURATION_S} s").with_id(
            "wiretime.outside", what=what, value=value, minimum_s=minimum_s,
            max_duration_s=MAX_DURATION_S)
    return value


def wire_end_s(start: datetime | int, duration_s: int, what: str) -> int:
    """``start + duration_s`` as wire seconds, both checked (e.g. an EMM's expiry)."""
    start_s = wire_time_s(start, what)
    wire_duration_s(duration_s, what)
    end_s = start_s + duration_s
    if end_s > WIRE_TIME_MAX_S:
        raise TimeRangeError(f"{what}: {_text(start_s)} + {duration_s} s is after "
                             f"{_text(WIRE_TIME_MAX_S)}, the end of the wire's time "
                             "(u32 seconds since 1970)").with_id(
            "wiretime.after_end_wire_time", what=what, start_s=_text(start_s),
            duration_s=duration_s, wire_time_max_s=_text(WIRE_TIME_MAX_S))
    return end_s


def _describe(at: datetime | int) -> str:
    if isinstance(at, datetime):
        return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    if WIRE_TIME_MIN_S <= at <= WIRE_TIME_MAX_S:
        return _text(at)
    return f"{at} s since 1970"
