"""The one check for times and durations the wire can carry (``cas/wiretime.py``): u32
seconds since 1970, durations up to 2**31 - 1 s, the simulation clock a year short of the
end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from cas.errors import TimeRangeError, UsageError
from cas.formats.emm import Emm, EmmHeader, UniqueAddress, build_emm, parse_emm
from cas.wiretime import (
    CLOCK_MAX_S,
    MAX_DURATION_S,
    WIRE_TIME_MAX_S,
    clock_time_s,
    wire_duration_s,
    wire_end_s,
    wire_time_s,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
END = datetime(2106, 2, 7, 6, 28, 15, tzinfo=UTC)


def test_the_limits_are_what_a_u32_carries() -> None:
    assert wire_time_s(EPOCH, "t") == 0
    assert wire_time_s(END, "t") == WIRE_TIME_MAX_S == 2**32 - 1
    # the last second is really carried by an EMM header's u32 not_after_s
    header = EmmHeader(address=UniqueAddress(serial=1), seq=1, not_after_s=WIRE_TIME_MAX_S,
                       nonce=bytes(12))
    section = build_emm(Emm(header=header, body=bytes(16)))
    assert parse_emm(section).header.not_after_s == WIRE_TIME_MAX_S


@pytest.mark.parametrize("bad", [
    EPOCH - timedelta(seconds=1),
    EPOCH - timedelta(microseconds=1),          # floors to -1 s: still before 1970
    END + timedelta(seconds=1),
    datetime(2107, 1, 1, tzinfo=UTC),
    datetime(1969, 1, 1, tzinfo=UTC),
    -1,
    WIRE_TIME_MAX_S + 1,
])
def test_times_outside_the_wire_are_refused_with_a_typed_one_line_error(
        bad: datetime | int) -> None:
    with pytest.raises(TimeRangeError) as exc:
        wire_time_s(bad, "--at")
    assert isinstance(exc.value, UsageError) and exc.value.exit_code == 2
    assert exc.value.code == "TIME_OUT_OF_RANGE"
    text = str(exc.value)
    assert text.startswith("--at: ") and "\n" not in text and "u32" in text


def test_offsets_and_naive_times() -> None:
    plus5 = timezone(timedelta(hours=5))
    assert wire_time_s(datetime(1970, 1, 1, 5, tzinfo=plus5), "t") == 0
    with pytest.raises(TimeRangeError):
        wire_time_s(datetime(1970, 1, 1, 4, 59, 59, tzinfo=plus5), "t")
    with pytest.raises(TimeRangeError, match="timezone-aware"):
        wire_time_s(datetime(2026, 1, 1), "t")


def test_the_clock_keeps_a_year_of_room() -> None:
    assert clock_time_s(CLOCK_MAX_S) == CLOCK_MAX_S
    assert WIRE_TIME_MAX_S - CLOCK_MAX_S >= 365 * 86400
    with pytest.raises(TimeRangeError, match="clock"):
        clock_time_s(CLOCK_MAX_S + 1)
    with pytest.raises(TimeRangeError):
        clock_time_s(datetime(2107, 1, 1, tzinfo=UTC), "cas clock set")


def test_durations_and_ends() -> None:
    assert wire_duration_s(MAX_DURATION_S, "d") == 2**31 - 1
    for bad in (2**31, -1):
        with pytest.raises(TimeRangeError):
            wire_duration_s(bad, "d")
    with pytest.raises(TimeRangeError):
        wire_duration_s(0, "EMM validity", minimum_s=1)
    with pytest.raises(TimeRangeError):
        wire_duration_s(True, "d")
    assert wire_end_s(END - timedelta(seconds=10), 10, "e") == WIRE_TIME_MAX_S
    with pytest.raises(TimeRangeError, match="end of the wire"):
        wire_end_s(END - timedelta(seconds=10), 11, "e")
