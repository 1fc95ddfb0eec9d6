"""The pay-per-view tables: migration ``0003_ppv`` creates exactly what the models declare
(alembic's comparison) and goes down and up again cleanly, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

import cas.web.models  # noqa: F401  (all tables on the metadata)
from cas.store.engine import Store, _alembic_config, upgrade
from cas.store.models import PPV_TABLES, Base


def test_ppv_migration_matches_the_models_and_downgrades(db_url: str) -> None:
    store = Store.open(db_url)
    try:
        before = set(inspect(store.engine).get_table_names())
        assert set(PPV_TABLES) <= before
        with store.engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(
                conn, opts={"compare_type": True}), Base.metadata)
        assert [d for d in diffs if any(t in repr(d) for t in PPV_TABLES)] == []
        with store.engine.begin() as conn:
            command.downgrade(_alembic_config(conn), "0002_web")
        assert set(inspect(store.engine).get_table_names()) == before - set(PPV_TABLES)
        upgrade(store.engine)
        assert set(inspect(store.engine).get_table_names()) == before
    finally:
        store.dispose()
