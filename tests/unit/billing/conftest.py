"""Fixtures: a migrated store on SQLite and on PostgreSQL (``db_url``), and a bench factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from cas.store.engine import Store
from tests.unit.billing.helpers import Bench


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    st = Store.open(db_url)
    yield st
    st.dispose()


@pytest.fixture
def bench(store: Store) -> Callable[[str], Bench]:
    return lambda profile: Bench(store, profile)
