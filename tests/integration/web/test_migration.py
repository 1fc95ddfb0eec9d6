"""The web tables: the migration ``0002_web`` creates exactly what ``cas/web/models.py``
declares (alembic's own comparison, on SQLite and PostgreSQL), and downgrades cleanly."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from cas.store.engine import Store, upgrade
from cas.store.models import PPV_TABLES, Base
from cas.web.models import WEB_TABLES

pytestmark = pytest.mark.slow


def _web_diffs(store: Store) -> list[Any]:
    def ours(diff: Any) -> bool:
        text = repr(diff)
        return any(name in text for name in WEB_TABLES)

    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(ctx, Base.metadata)
    # Only our tables: the store layer's own tables are its own tests' business.
    return [d for d in diffs if ours(d)]


def test_migration_matches_the_models(db_url: str) -> None:
    store = Store.open(db_url)
    try:
        names = set(inspect(store.engine).get_table_names())
        assert set(WEB_TABLES) <= names
        assert _web_diffs(store) == []
    finally:
        store.dispose()


def test_downgrade_removes_only_the_web_tables_and_upgrade_restores_them(db_url: str) -> None:
    store = Store.open(db_url)
    try:
        from alembic import command

        from cas.store.engine import _alembic_config

        all_before = set(inspect(store.engine).get_table_names())
        with store.engine.begin() as conn:
            command.downgrade(_alembic_config(conn), "0001")
        after = set(inspect(store.engine).get_table_names())
        # the later migrations (0003_ppv) sit on 0002_web and go down with it
        assert after == all_before - set(WEB_TABLES) - set(PPV_TABLES)
        upgrade(store.engine)
        assert set(inspect(store.engine).get_table_names()) == all_before
    finally:
        store.dispose()
