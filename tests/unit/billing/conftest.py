"""Fixtures: a migrated store on SQLite and on PostgreSQL (``db_url``), a bench factory, and a
bench per seed operator profile."""

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


@pytest.fixture
def atv(bench: Callable[[str], Bench]) -> Bench:
    return bench("atvplus")


@pytest.fixture
def mts(bench: Callable[[str], Bench]) -> Bench:
    return bench("mts")


@pytest.fixture
def ntv(bench: Callable[[str], Bench]) -> Bench:
    return bench("ntvplus")


@pytest.fixture
def tv(bench: Callable[[str], Bench]) -> Bench:
    return bench("tvplus")


@pytest.fixture
def uz(bench: Callable[[str], Bench]) -> Bench:
    return bench("uzonline")
