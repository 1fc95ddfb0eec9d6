"""EMM sequence numbers with a full refresh's epoch (cas.store.emmseq), on SQLite and
PostgreSQL: the epoch is above every number handed out, every later number is above the
epoch's floor, floors never go down, and an epoch a new card would refuse is refused."""

from __future__ import annotations

import pytest

from cas.errors import UsageError
from cas.store.emmseq import (
    SHARED,
    UNIQUE,
    floor,
    last_epoch,
    next_seq_range,
    next_seqs,
    reserve_epoch,
    set_floor,
    take_seq,
)
from cas.store.engine import Store


def test_without_an_epoch_numbers_start_at_one_and_count_per_address(store: Store) -> None:
    with store.transaction() as s:
        assert floor(s, UNIQUE) == 1 and last_epoch(s, UNIQUE) == 0
        assert [take_seq(s, UNIQUE, 5) for _ in range(3)] == [1, 2, 3]
        assert take_seq(s, UNIQUE, 6) == 1
        assert take_seq(s, "global", 0) == 1
        assert next_seqs(s, UNIQUE, [5, 6, 7]) == {5: 4, 6: 2, 7: 1}


def test_an_epoch_is_above_every_number_and_later_numbers_above_its_floor(
        store: Store) -> None:
    with store.transaction() as s:
        for _ in range(9):
            take_seq(s, UNIQUE, 5)  # card 5 is at 10
        take_seq(s, SHARED, 300)
        base = reserve_epoch(s, UNIQUE, 16)
        sbase = reserve_epoch(s, SHARED, 128)
    assert (base, sbase) == (10, 2)
    with store.transaction() as s:
        assert floor(s, UNIQUE) == 26 and last_epoch(s, UNIQUE) == 10
        assert floor(s, SHARED) == 130
        # Any card, with a row or not, takes its next number above the epoch.
        assert take_seq(s, UNIQUE, 5) == 26
        assert take_seq(s, UNIQUE, 99) == 26
        assert take_seq(s, UNIQUE, 99) == 27
        assert take_seq(s, SHARED, 300) == 130
        assert take_seq(s, "global", 0) == 1  # global numbers have no epoch
        assert next_seqs(s, UNIQUE, [5, 99, 7]) == {5: 27, 99: 28, 7: 26}
        assert next_seq_range(s, UNIQUE, 0, 1000) == (26, {5: 27, 99: 28})
        # The next epoch starts above what was taken since.
        assert reserve_epoch(s, UNIQUE, 16) == 28
        assert floor(s, UNIQUE) == 44


def test_a_floor_never_goes_down(store: Store) -> None:
    with store.transaction() as s:
        set_floor(s, UNIQUE, 500)
        set_floor(s, UNIQUE, 40)
        assert floor(s, UNIQUE) == 500
        assert floor(s, SHARED) == 1


def test_an_epoch_beyond_a_new_cards_window_is_refused(store: Store) -> None:
    with store.transaction() as s:
        set_floor(s, UNIQUE, (1 << 24) - 10)
    with pytest.raises(UsageError, match="sequence epoch would pass"), \
            store.transaction() as s:
        reserve_epoch(s, UNIQUE, 16)
    with store.reader() as s:
        assert floor(s, UNIQUE) == (1 << 24) - 10  # nothing reserved
