"""The EMMG outbox: positions, confirmation, rewind, persistence."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cas.errors import ConfigError
from cas.headend.simulcrypt.outbox import Outbox


def items(n: int) -> list[bytes]:
    return [i.to_bytes(4, "big") for i in range(n)]


def test_take_ack_rewind() -> None:
    box = Outbox(items(10))
    assert box.take(4, 1000) == items(4)
    assert (box.sent, box.acked, box.unconfirmed) == (4, 0, 4)
    assert box.ack(2) == 2
    assert box.take(100, 9) == items(6)[4:6]        # byte limit: 2 × 4 bytes fit in 9
    assert box.rewind() == 4                          # positions 2..5 go again
    assert box.take(100, 10_000) == items(10)[2:]
    assert not box.done
    assert box.ack(50) == 8                          # never beyond what was sent
    assert box.done and box.acked == 10


def test_take_returns_one_oversized_item() -> None:
    box = Outbox([bytes(50)])
    assert box.take(10, 5) == [bytes(50)]


def test_put_for_live_sources() -> None:
    box = Outbox()
    assert not box.has_unsent()
    assert box.put(b"a") == 0 and box.put(b"b") == 1
    assert box.take(10, 100) == [b"a", b"b"]
    with pytest.raises(ValueError):
        box.put(b"")


@given(st.lists(st.tuples(st.integers(1, 5), st.booleans(), st.booleans()), max_size=40))
def test_every_item_is_confirmed_once_in_order(steps: list[tuple[int, bool, bool]]) -> None:
    """Whatever the interleaving of sends, confirmations and reconnections, the confirmed
    sequence is the source, in order, without gaps or repeats."""
    source = items(30)
    box = Outbox(source)
    confirmed: list[bytes] = []
    for count, confirm, reconnect in steps:
        box.take(count, 1000)
        if confirm:
            start = box.acked
            box.ack(box.sent)
            confirmed.extend(source[start:box.acked])
        if reconnect:
            box.rewind()
    while not box.done:
        box.take(100, 10_000)
        start = box.acked
        box.ack(box.sent)
        confirmed.extend(source[start:box.acked])
    assert confirmed == source


def test_state_file_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "outbox.json"
    box = Outbox(items(10), state_path=state)
    box.take(6, 1000)
    box.ack(4)
    again = Outbox(items(10), state_path=state)
    assert again.acked == 4
    assert again.take(100, 1000) == items(10)[4:]
    with pytest.raises(ConfigError):
        Outbox(items(3), state_path=state)      # the source got shorter than what was acked
    state.write_text("garbage")
    with pytest.raises(ConfigError):
        Outbox(items(10), state_path=state)
