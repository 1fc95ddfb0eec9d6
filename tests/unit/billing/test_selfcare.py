"""The pure parts of the portal's self-care rules (cas.billing.selfcare); the store-backed
ones run in tests/integration/web/test_portal.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cas.billing.profile import load_profile
from cas.billing.selfcare import parse_day, switch_lock
from cas.errors import ValidationError


def test_parse_day_is_midnight_utc() -> None:
    assert parse_day(" 2026-03-01 ") == datetime(2026, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize("text", ["01.03.2026", "2026-02-30", "", "tomorrow"])
def test_parse_day_refuses_other_forms(text: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_day(text)
    assert err.value.code == "BAD_DATE"


def test_switch_lock_dates_follow_the_profile() -> None:
    profile = load_profile("atvplus")
    last_s = int(datetime(2026, 3, 2, 9, tzinfo=UTC).timestamp())
    lock = switch_lock(profile, last_s)
    assert lock.days == profile.switch_lock_days == 30
    assert lock.last == datetime(2026, 3, 2, 9, tzinfo=UTC)
    assert lock.next_free == datetime(2026, 4, 1, 9, tzinfo=UTC)
