"""The two fast write paths: ``COPY … FROM STDIN`` on PostgreSQL (psycopg 3's
``cursor.copy``) and one ``executemany`` on SQLite, inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.engine import Connection

#: Rows per key look-up (``IN (…)``): well under SQLite's limit of bound parameters.
LOOKUP_CHUNK = 2000
#: Keys per look-up on PostgreSQL, where they travel as one array.
PG_LOOKUP_CHUNK = 50_000


def insert_rows(conn: Connection, table: str, columns: Sequence[str],
                rows: Sequence[Sequence[Any]]) -> None:
    """Append ``rows`` to ``table``: COPY on PostgreSQL, executemany on SQLite."""
    if not rows:
        return
    raw: Any = conn.connection.driver_connection
    cols = ", ".join(columns)
    if conn.dialect.name == "postgresql":
        with raw.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" for _ in columns)
    cur = raw.cursor()
    try:
        cur.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", rows)
    finally:
        cur.close()


def execute_many(conn: Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run one statement for each row (``?`` placeholders; ``%s`` on PostgreSQL)."""
    if not rows:
        return
    raw: Any = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        sql = sql.replace("?", "%s")
    cur = raw.cursor()
    try:
        cur.executemany(sql, rows)
    finally:
        cur.close()


def lookup(conn: Connection, table: str, key: str, wanted: Iterable[Any],
           columns: Sequence[str]) -> dict[Any, tuple[Any, ...]]:
    """``{key: (columns…)}`` for the keys of ``wanted`` that are in ``table``."""
    keys = list(dict.fromkeys(k for k in wanted if k is not None))
    out: dict[Any, tuple[Any, ...]] = {}
    raw: Any = conn.connection.driver_connection
    postgres = conn.dialect.name == "postgresql"
    cols = ", ".join((key, *columns))
    cur = raw.cursor()
    try:
        # PostgreSQL: one array parameter (``= ANY(%s)``) instead of thousands of bound
        # values, which the server would parse and plan one by one.
        step = PG_LOOKUP_CHUNK if postgres else LOOKUP_CHUNK
        for start in range(0, len(keys), step):
            part = keys[start:start + step]
            if postgres:
                cur.execute(f"SELECT {cols} FROM {table} WHERE {key} = ANY(%s)", (part,))
            else:
                cur.execute(f"SELECT {cols} FROM {table} WHERE {key} IN "
                            f"({', '.join('?' for _ in part)})", part)
            for found in cur.fetchall():
                out[found[0]] = tuple(found[1:])
    finally:
        cur.close()
    return out


def execute(conn: Connection, sql: str, params: Sequence[Any] = ()) -> None:
    """Run one statement that returns no rows (``?`` placeholders; ``%s`` on PostgreSQL,
    where a ``%`` of the statement is doubled)."""
    raw: Any = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        sql = sql.replace("%", "%%").replace("?", "%s")
    cur = raw.cursor()
    try:
        cur.execute(sql, params)
    finally:
        cur.close()


def query(conn: Connection, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    raw: Any = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        sql = sql.replace("?", "%s")
    cur = raw.cursor()
    try:
        cur.execute(sql, params)
        return [tuple(r) for r in cur.fetchall()]
    finally:
        cur.close()
