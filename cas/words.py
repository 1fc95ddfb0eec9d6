"""Counted nouns in messages: ``1 try left``, ``2 tries left`` — never ``1 tries left``."""

from __future__ import annotations


def count(n: int, one: str, many: str) -> str:
    """``count(1, "try", "tries")`` -> ``"1 try"``; any other number takes ``many``."""
    return f"{n} {one if n == 1 else many}"


def tries_left(n: int) -> str:
    """The parental-PIN counter in words: ``1 try left``, ``3 tries left``."""
    return f"{count(n, 'try', 'tries')} left"
