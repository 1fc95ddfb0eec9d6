"""Alembic migrations of the subscriber store (run by :func:`cas.store.engine.upgrade`)."""
