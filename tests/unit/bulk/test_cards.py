"""Runs of cards (``cas.bulk.cards``): consecutive serials at consecutive slots."""

from __future__ import annotations

import pytest

from cas.bulk.cards import RunSlots, SlotRun, runs_of
from cas.store.repo import CardSlot


def test_runs_of_breaks_where_the_slots_jump() -> None:
    slots = [(1, 254), (1, 255), (2, 0), (2, 7), (2, 8), (9, 0)]
    assert runs_of(slots, 100, True) == [
        SlotRun(100, 3, 1 * 256 + 254), SlotRun(103, 2, 2 * 256 + 7), SlotRun(105, 1, 9 * 256)]
    assert runs_of([], 1, False) == []


def test_run_slots_is_the_sequence_of_their_cards() -> None:
    runs = [SlotRun(10, 3, 1 * 256 + 254), SlotRun(500, 2, 7 * 256, False)]
    slots = RunSlots(runs)
    expected = [CardSlot(serial=s, shared_address=a, member_position=p) for s, a, p in (
        (10, 1, 254), (11, 1, 255), (12, 2, 0), (500, 7, 0), (501, 7, 1))]
    assert len(slots) == 5
    assert list(slots) == expected
    assert slots[-1] == expected[-1] and slots[1:4] == expected[1:4]
    with pytest.raises(IndexError):
        slots[5]
    assert list(RunSlots([])) == []
