"""Hot statements compiled once and run on the driver's cursor.

The operator API's payment and balance paths run the same handful of statements thousands of
times a second.  Through :meth:`sqlalchemy.engine.Connection.execute` each costs the client
~100–280 µs of CPU on PostgreSQL (cache look-up, parameter construction, execution context,
result wrapping) against ~25–50 µs for the driver's own ``cursor.execute`` of the same SQL
(measured in ``benchmarks/api.md``; the range is two runs at different machine load).  :class:`HotStatement` keeps the Core statement as the
single source of the SQL, compiles it once per dialect (constants and ``IN`` lists expanded),
and runs it on the DBAPI cursor of a SQLAlchemy connection, inside the transaction SQLAlchemy
began (or in the driver's autocommit, on :attr:`cas.store.engine.Store.statement_engine`).

Rows come back as the driver's tuples, without SQLAlchemy's result processing: use it for
statements whose columns are integers and strings (a SQLite boolean reads ``0``/``1``).
A driver error becomes :class:`cas.errors.StoreError`, as from :meth:`Store.transaction`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from cas.errors import StoreError


class HotStatement:
    """A Core statement with the names of its runtime parameters (every other bound value
    is a constant of the statement)."""

    def __init__(self, statement: ClauseElement, params: Sequence[str]) -> None:
        self.statement = statement
        self.params = tuple(params)
        self._compiled: dict[str, tuple[str, dict[str, Any], tuple[str, ...] | None]] = {}

    def _for(self, dialect: Dialect) -> tuple[str, dict[str, Any], tuple[str, ...] | None]:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)
            assert isinstance(compiled, SQLCompiler)
            state = compiled.construct_expanded_state(dict.fromkeys(self.params))
            order = tuple(state.positiontup) if state.positiontup is not None else None
            found = (state.statement, dict(state.parameters), order)
            self._compiled[dialect.name] = found
        return found

    def run(self, conn: Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Execute with ``params`` on ``conn``'s driver connection; the rows, if any."""
        sql, constants, order = self._for(conn.dialect)
        values = {**constants, **params}
        args: Any = tuple(values[name] for name in order) if order is not None else values
        dbapi_conn: Any = conn.connection.dbapi_connection
        try:
            cur = dbapi_conn.cursor()
            try:
                cur.execute(sql, args)
                return list(cur.fetchall()) if cur.description is not None else []
            finally:
                cur.close()
        except conn.dialect.loaded_dbapi.Error as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"database error: {text}").with_id(
                "store.database_error", exc=text) from exc

    def first(self, conn: Connection, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        rows = self.run(conn, params)
        return rows[0] if rows else None


__all__ = ["HotStatement"]
