"""A migrated store on SQLite and on PostgreSQL for every test here (``db_url``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cas.store.engine import Store


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    st = Store.open(db_url)
    yield st
    st.dispose()
