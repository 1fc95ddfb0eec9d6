"""The fast card registration path (``cas card personalise``) keeps register_card's rules on
SQLite and PostgreSQL: slots continue the groups, a re-run returns the same slots and writes
nothing, a clashing slot registers nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from cas.bulk.cards import NewCard
from cas.bulk.register import register_cards
from cas.store.engine import Store
from cas.store.errors import RecordConflict
from cas.store.repo import register_card


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    st = Store.open(db_url)
    yield st
    st.dispose()


def _count(store: Store, table: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


def test_bulk_slots_continue_after_the_per_card_path(store: Store) -> None:
    with store.transaction() as session:
        for serial in (10, 11, 12):
            register_card(session, serial, at=datetime(2026, 11, 1, tzinfo=UTC))
    slots = register_cards(store, [NewCard(serial=100 + i) for i in range(300)])
    assert [(s.shared_address, s.member_position) for s in slots[:2]] == [(1, 3), (1, 4)]
    assert (slots[252].shared_address, slots[252].member_position) == (1, 255)
    assert (slots[253].shared_address, slots[253].member_position) == (2, 0)
    # The per-card path goes on where the bulk path stopped.
    with store.transaction() as session:
        nxt = register_card(session, 999, at=datetime(2026, 11, 1, tzinfo=UTC))
    assert (nxt.shared_address, nxt.member_position) == (2, 47)
    assert _count(store, "rights_changes") == 304


def test_rerun_returns_the_same_slots_and_a_clash_registers_nothing(store: Store) -> None:
    first = register_cards(store, [NewCard(serial=500 + i) for i in range(10)])
    again = register_cards(store, [NewCard(serial=500 + i) for i in range(10)])
    assert again == first
    assert _count(store, "cards") == 10 and _count(store, "rights_changes") == 10
    with pytest.raises(RecordConflict, match="taken by card 0000000500"):
        register_cards(store, [NewCard(serial=900), NewCard(serial=901, shared_address=1,
                                                            member_position=0)])
    assert _count(store, "cards") == 10
