"""Opening the store: URLs, migrations shipped in the package (identical to the models on
both databases), transactions that commit or roll back whole, SQLite reader/writer rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Table, inspect, select

from cas.errors import ConfigError, StoreError
from cas.store.engine import Store, current_revision, open_store, resolve_url, upgrade
from cas.store.models import Base, Setting
from cas.store.repo import get_setting, next_counter, set_setting


def test_resolve_url(tmp_path: Path) -> None:
    assert resolve_url(db_url=None, data_dir=tmp_path / "d") == f"sqlite:///{tmp_path}/d/cas.sqlite"
    # resolving creates nothing; opening with create=True makes the data dir (issue 12, item 16)
    assert not (tmp_path / "d").exists()
    open_store(data_dir=tmp_path / "d", create=True).dispose()
    assert (tmp_path / "d").is_dir() and (tmp_path / "d" / "cas.sqlite").is_file()
    assert resolve_url(db_url="postgresql://u@h/db", data_dir=None) == "postgresql+psycopg://u@h/db"
    assert resolve_url(db_url="postgres://u@h/db", data_dir=None) == "postgresql+psycopg://u@h/db"
    with pytest.raises(ConfigError):
        resolve_url(db_url=None, data_dir=None)


def test_default_store_is_a_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    st = open_store(data_dir=tmp_path)
    try:
        assert st.dialect == "sqlite"
        assert (tmp_path / "cas.sqlite").is_file()
    finally:
        st.dispose()


def test_bad_or_unreachable_databases_are_one_line_store_errors() -> None:
    with pytest.raises(ConfigError):
        Store.open("not a url")
    with pytest.raises(StoreError) as exc:
        Store.open("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    assert "\n" not in str(exc.value)


def _head() -> str | None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", "cas.store:migrations")
    return ScriptDirectory.from_config(cfg).get_current_head()


def _table_of(diff: object) -> str | None:
    """The table a compare_metadata entry is about (entries may be nested lists)."""
    entry = diff[0] if isinstance(diff, list) else diff
    assert isinstance(entry, tuple)
    for item in entry[1:]:
        if isinstance(item, Table):
            return str(item.name)
        table = getattr(item, "table", None)
        if isinstance(table, Table):
            return str(table.name)
        if isinstance(item, str):
            return item
    return None


def test_table_of_finds_the_table() -> None:
    from sqlalchemy import Column, Integer, MetaData

    t = Table("t", MetaData(), Column("a", Integer, index=True))
    assert _table_of(("add_table", t)) == "t"
    assert _table_of(("add_index", next(iter(t.indexes)))) == "t"
    assert _table_of(("add_column", None, "t", t.c.a)) == "t"
    assert _table_of([("modify_type", None, "t", "a", {}, Integer(), Integer())]) == "t"


def test_migrations_reach_head_and_match_the_models(store: Store) -> None:
    assert current_revision(store.engine) == _head()
    names = set(inspect(store.engine).get_table_names())
    assert {t.name for t in Base.metadata.sorted_tables} <= names
    assert {"rights_changes", "emm_sequences", "emm_outbox", "ledger_entries"} <= names
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                Base.metadata)
    # Later migrations (other layers) may add tables this metadata does not declare.
    mine = [d for d in diff if _table_of(d) in Base.metadata.tables]
    assert mine == []
    upgrade(store.engine)  # idempotent
    assert current_revision(store.engine) == _head()


def test_transaction_commits_or_rolls_back_whole(store: Store) -> None:
    with store.transaction() as s:
        set_setting(s, "a", "1")
    with pytest.raises(RuntimeError), store.transaction() as s:
        set_setting(s, "a", "2")
        set_setting(s, "b", "2")
        raise RuntimeError("boom")
    with store.reader() as s:
        assert get_setting(s, "a") == "1" and get_setting(s, "b") is None


def test_database_errors_become_store_errors(store: Store) -> None:
    with store.transaction() as s:
        s.add(Setting(key="k", value="v"))
    with pytest.raises(StoreError), store.transaction() as s:
        s.add(Setting(key="k", value="again"))
        s.flush()


def test_counters_are_monotonic(store: Store) -> None:
    with store.transaction() as s:
        assert [next_counter(s, "x") for _ in range(3)] == [1, 2, 3]
        assert next_counter(s, "y") == 1
    with store.transaction() as s:
        assert next_counter(s, "x") == 4


def test_a_reader_does_not_block_a_writer(store: Store) -> None:
    with store.transaction() as s:
        set_setting(s, "r", "0")
    with store.reader() as r:
        assert r.execute(select(Setting.value).where(Setting.key == "r")).scalar() == "0"
        with store.transaction() as w:  # would wait 30 s (then fail) if the reader held a lock
            set_setting(w, "r", "1")
    with store.reader() as r:
        assert get_setting(r, "r") == "1"
