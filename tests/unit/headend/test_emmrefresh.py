"""Work items of a multi-process EMM refresh: shared-address ranges that tile the u24 space
and never split a group; run names that cannot collide in a LIKE pattern."""

from __future__ import annotations

import pytest

from cas.errors import UsageError
from cas.headend.emmrefresh import check_run_name, cut_items


def test_items_tile_the_address_space_without_splitting_a_group() -> None:
    items = cut_items([(0, 256), (1, 256), (2, 100), (5, 256), (9, 3)], 300)
    assert items == [(0, 1), (2, 5), (6, 0xFF_FFFF)]
    assert cut_items([], 10) == [(0, 0xFF_FFFF)]
    # The last full item is stretched to the end of the space instead of an empty one.
    assert cut_items([(0, 256), (1, 256)], 256) == [(0, 0), (1, 0xFF_FFFF)]
    assert cut_items([(7, 5)], 100) == [(0, 0xFF_FFFF)]


@pytest.mark.parametrize("name", ["", "a_b", "a.b", "a%", "x" * 33, "r\n"])
def test_run_names_are_refused_when_they_could_match_other_keys(name: str) -> None:
    with pytest.raises(UsageError, match="run name"):
        check_run_name(name)


def test_plain_run_names_pass() -> None:
    assert check_run_name("2026-03-01") == "2026-03-01"
