"""Counted nouns in messages (cas.words): one try, two tries — never "1 tries left"."""

from __future__ import annotations

from cas.card.errors import WrongPinError
from cas.words import count, tries_left


def test_count_and_tries_left() -> None:
    assert [tries_left(n) for n in (0, 1, 2, 15)] == [
        "0 tries left", "1 try left", "2 tries left", "15 tries left"]
    assert count(1, "attempt", "attempts") == "1 attempt"
    assert count(4, "attempt", "attempts") == "4 attempts"


def test_the_card_error_says_one_try() -> None:
    assert str(WrongPinError(0x63C1)).startswith("wrong PIN: 1 try left")
    assert str(WrongPinError(0x63C2)).startswith("wrong PIN: 2 tries left")
