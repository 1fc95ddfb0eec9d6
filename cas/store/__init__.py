"""The subscriber store: SQLAlchemy 2 models, Alembic migrations, engine/session helpers and
repository functions (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

from cas.store.engine import Store, open_store, resolve_url

__all__ = ["Store", "open_store", "resolve_url"]
