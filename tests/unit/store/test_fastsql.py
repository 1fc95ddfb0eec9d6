"""HotStatement: the Core statement's SQL run on the driver's cursor gives the rows
SQLAlchemy's execute gives, with constants and IN lists filled in, on SQLite and
PostgreSQL; a driver error is our StoreError."""

from __future__ import annotations

import pytest
from sqlalchemy import bindparam, insert, select

from cas.errors import StoreError
from cas.store.engine import Store
from cas.store.fastsql import HotStatement
from cas.store.models import Setting


@pytest.fixture
def store(db_url: str) -> Store:
    return Store.open(db_url)


def test_rows_equal_sqlalchemys_with_constants_and_in_lists(store: Store) -> None:
    with store.transaction() as s:
        s.execute(insert(Setting), [{"key": f"k{i}", "value": f"v{i}"} for i in range(5)])
    stmt = (select(Setting.key, Setting.value)
            .where(Setting.key.in_(["k1", "k2", "k4"]), Setting.value != bindparam("not_v"))
            .order_by(Setting.key))
    hot = HotStatement(stmt, ("not_v",))
    for engine in (store.read_engine, store.statement_engine):
        with engine.connect() as conn:
            expected = [tuple(r) for r in conn.execute(stmt, {"not_v": "v2"})]
            assert expected == [("k1", "v1"), ("k4", "v4")]
            assert hot.run(conn, {"not_v": "v2"}) == expected
            assert hot.first(conn, {"not_v": "v2"}) == ("k1", "v1")
            assert hot.first(conn, {"not_v": "v2"}) == ("k1", "v1")  # compiled once, reused
    store.dispose()


def test_writes_run_in_the_callers_transaction_and_roll_back_with_it(store: Store) -> None:
    put = HotStatement(insert(Setting).values(key=bindparam("k"), value=bindparam("v")),
                       ("k", "v"))
    with pytest.raises(RuntimeError), store.transaction() as s:
        put.run(s.connection(), {"k": "gone", "v": "x"})
        raise RuntimeError("roll back")
    with store.transaction() as s:
        put.run(s.connection(), {"k": "kept", "v": "y"})
    with store.reader() as s:
        assert s.execute(select(Setting.key).where(Setting.key.in_(["gone", "kept"]))
                         ).scalars().all() == ["kept"]
    # A driver error (here a duplicate primary key) is our typed error, not the driver's.
    with pytest.raises(StoreError, match="database error"), store.transaction() as s:
        put.run(s.connection(), {"k": "kept", "v": "again"})
    store.dispose()
