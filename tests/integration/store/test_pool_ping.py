"""PostgreSQL pool: a connection that sat idle is pinged before use, so a backend that died
while it was idle (here: terminated by the server) costs a reconnect, not a failed request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from cas.store import engine as engine_mod
from cas.store.engine import Store

pytestmark = pytest.mark.postgres


@pytest.fixture
def store(postgres_url: str) -> Iterator[Store]:
    st = Store.open(postgres_url)
    yield st
    st.dispose()


def _kill_pooled_backend(store: Store) -> None:
    """Terminate the backend of the connection that waits in the pool, from outside it."""
    with store.engine.connect() as victim:
        pid = victim.execute(text("SELECT pg_backend_pid()")).scalar_one()
    other = create_engine(store.engine.url, poolclass=NullPool)
    try:
        with other.begin() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
    finally:
        other.dispose()


def test_a_backend_killed_while_idle_is_replaced(store: Store,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    store.engine.pool.dispose()
    _kill_pooled_backend(store)
    monkeypatch.setattr(engine_mod, "PING_AFTER_IDLE_S", 0.0)
    with store.engine.connect() as conn:  # the dead one: pinged, replaced
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
