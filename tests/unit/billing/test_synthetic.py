"""The synthetic base (benchmarks, load tests): the right number of cards in groups of 256, a
realistic mix of states, and a store that keeps working normally afterwards."""

from __future__ import annotations

from collections.abc import Callable

from cas.access import CardStatus
from cas.billing import state
from cas.billing.synthetic import populate
from cas.store.repo import register_card
from tests.unit.billing.helpers import T0, Bench


def test_populate_then_stream_and_keep_using_the_store(bench: Callable[[str], Bench]) -> None:
    tv = bench("tvplus")
    with tv.tx() as s:
        base = populate(s, cards=1000, at=T0)
    assert base.cards == 1000 and 800 <= base.accounts < 1000
    with tv.store.reader() as s:
        states = list(state.iter_card_states(s, T0))
    assert len(states) == 1000
    assert [(x.shared_address, x.member_position) for x in states[:2]] == [(1, 0), (1, 1)]
    assert (states[-1].shared_address, states[-1].member_position) == (4, 1000 - 3 * 256 - 1)
    statuses = {x.rights.status for x in states}
    assert {CardStatus.ACTIVE, CardStatus.INACTIVE, CardStatus.SUSPENDED,
            CardStatus.FINANCIAL_BLOCK} <= statuses
    active = [x for x in states if x.rights.status == CardStatus.ACTIVE]
    assert all(any(e.covers(int(T0.timestamp())) for e in x.rights.entitlements) for x in active)
    # Ordinary operations after a bulk load: new accounts, new card slots.
    acc = tv.account()
    tv.card(acc)  # takes group 4, position 232: the first free slot after the bulk load
    with tv.tx() as s:
        slot = register_card(s, 77, at=T0)
    assert (slot.shared_address, slot.member_position) == (4, 1000 - 3 * 256 + 1)
