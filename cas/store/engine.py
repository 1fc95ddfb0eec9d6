"""Opening the store: URL resolution, engine set-up, migrations, sessions and transactions.

* SQLite by default: ``<data_dir>/cas.sqlite`` (DESIGN §4).  WAL journal, foreign keys on, a
  30 s busy timeout, and write transactions that start with ``BEGIN IMMEDIATE`` so two
  writers queue up instead of failing on a lock upgrade.  Read-only sessions
  (:meth:`Store.reader`) start with a plain deferred ``BEGIN`` and never block writers.
* PostgreSQL by URL (``postgresql+psycopg://user@host:port/db``; a bare ``postgresql://`` is
  taken to mean psycopg 3).  Money rows are locked with ``SELECT … FOR UPDATE``.
* Opening a store runs the Alembic migrations shipped in :mod:`cas.store.migrations` up to
  ``head`` (under a PostgreSQL advisory lock, so concurrent openers do not race).  A store
  already at the shipped head (read from ``alembic_version`` and the version files'
  ``revision`` lines) is left alone without importing Alembic, which would cost every
  ``cas`` command about 0.2 s of start-up.
* Creating a store is explicit: ``create=True`` makes the data dir, the SQLite file and the
  schema; ``create=False`` opens only a store that is there (a SQLite file or a database
  with our schema) and otherwise raises :class:`~cas.store.errors.StoreMissing`, so a
  mistyped data dir is an error, not a new empty store.  The ``cas`` commands that read or
  change a store open it with ``create=False``; only those that set one up create it.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from cas.errors import ConfigError, StoreError
from cas.store.errors import StoreMissing

SQLITE_FILE = "cas.sqlite"
#: Execution option marking a read-only connection (SQLite: deferred BEGIN).
READ_ONLY_OPTION = "cas_read_only"
_MIGRATION_LOCK_ID = 0x0CA5_0001


def resolve_url(*, db_url: str | None, data_dir: Path | None) -> str:
    """The database URL to use: ``db_url`` if given, else SQLite in ``data_dir``."""
    if db_url:
        if db_url.startswith("postgresql://"):
            return "postgresql+psycopg://" + db_url[len("postgresql://"):]
        if db_url.startswith("postgres://"):
            return "postgresql+psycopg://" + db_url[len("postgres://"):]
        return db_url
    if data_dir is None:
        raise ConfigError("no database: give --db-url / CAS_DB_URL or a data directory").with_id(
            "store.no_database_give_db")
    return f"sqlite:///{data_dir / SQLITE_FILE}"


def _sqlite_file(engine: Engine) -> Path | None:
    """The file of a SQLite engine (None: not SQLite, or an in-memory database)."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return Path(database)


def _missing(engine: Engine, why: str) -> StoreMissing:
    sqlite_file = _sqlite_file(engine)
    if sqlite_file is not None and sqlite_file.name == SQLITE_FILE:
        where, check = f"{sqlite_file.parent} ({why})", "--data-dir/CAS_DATA_DIR"
    elif sqlite_file is not None:
        where, check = f"{sqlite_file} ({why})", "--db-url/CAS_DB_URL"
    else:
        url = engine.url.render_as_string(hide_password=True)
        where, check = f"the database {url} ({why})", "--db-url/CAS_DB_URL"
    return StoreMissing(f"no cas-sim store in {where}: check {check}, or set one up with "
                        "'cas keys init' and 'cas operator use PROFILE'").with_id(
        "store.no_store", where=where, check=check)


def _has_schema(engine: Engine) -> bool:
    from sqlalchemy import inspect

    with engine.connect() as conn:
        return bool(inspect(conn).has_table("alembic_version"))


def _sqlite_events(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below emit BEGIN itself (pysqlite's own implicit
        # transactions would defeat BEGIN IMMEDIATE and SAVEPOINTs).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        # Bulk reads (a million-card state scan) do random B-tree lookups: a bigger page
        # cache and memory-mapped reads keep them off the read() path.
        cur.execute("PRAGMA cache_size=-65536")
        cur.execute("PRAGMA mmap_size=1073741824")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get(READ_ONLY_OPTION, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


#: A pooled PostgreSQL connection idle for longer than this is pinged before it is handed out.
PING_AFTER_IDLE_S = 1.0
_IDLE_SINCE = "cas.idle_since"


def _postgres_events(engine: Engine) -> None:
    """Pessimistic disconnect handling, only for connections that sat idle in the pool.

    SQLAlchemy's ``pool_pre_ping`` costs one round trip on every checkout; a request of the
    operator API checks out twice, so under load the pings were a third of its statements.
    A connection that went back to the pool a moment ago is alive (or its failure is
    reported like any other error); one that sat idle past :data:`PING_AFTER_IDLE_S` (a
    server restart, a killed backend, a dropped TCP connection) is pinged, and a failed ping
    makes the pool connect afresh, as with ``pool_pre_ping``."""
    from sqlalchemy.exc import DisconnectionError

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
            return
        try:
            cur = dbapi_conn.cursor()
            try:
                cur.execute("SELECT 1")
            finally:
                cur.close()
            dbapi_conn.rollback()
        except Exception as exc:  # the driver's own error: the connection is gone
            raise DisconnectionError(f"stale pooled connection: {_one_line(exc)}") from exc


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for ``url`` with our per-dialect settings (see module doc)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"bad database URL: {exc}").with_id(
            "store.bad_database_url", exc=exc) from exc
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    elif parsed.get_backend_name() == "postgresql":
        kwargs["pool_size"] = 10
        kwargs["max_overflow"] = 60
    try:
        engine = create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise ConfigError(f"cannot use database URL {parsed!r}: {exc}").with_id(
            "store.cannot_database_url", parsed=f"{parsed!r}", exc=exc) from exc
    if parsed.get_backend_name() == "sqlite":
        _sqlite_events(engine)
    elif parsed.get_backend_name() == "postgresql":
        _postgres_events(engine)
    return engine


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "cas.store:migrations")
    cfg.attributes["connection"] = connection
    return cfg


#: ``revision = '0002_web'`` / ``down_revision = '0001'`` (or ``None``) in a version file.
_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.M)


@functools.lru_cache(maxsize=1)
def shipped_head() -> str | None:
    """The newest shipped migration: the one revision that no other one revises, read from
    the version files' ``revision`` / ``down_revision`` lines without importing Alembic.
    ``None`` when that is not one plain revision (a merge or a branch): Alembic decides."""
    revisions: set[str] = set()
    revised: set[str] = set()
    folder = resources.files("cas.store.migrations") / "versions"
    for entry in folder.iterdir():
        if not entry.name.endswith(".py") or entry.name.startswith("_"):
            continue
        found = dict((m[0], m[1]) for m in _REVISION_LINE.findall(entry.read_text("utf-8")))
        rev, down = found.get("revision", ""), found.get("down_revision", "")
        if not re.fullmatch(r"(['\"])[\w.-]+\1", rev):
            return None
        revisions.add(rev[1:-1])
        if down != "None":
            if not re.fullmatch(r"(['\"])[\w.-]+\1", down):
                return None
            revised.add(down[1:-1])
    heads = revisions - revised
    return heads.pop() if len(heads) == 1 else None


def _at_revision(engine: Engine, revision: str) -> bool:
    """The store records exactly ``revision`` in ``alembic_version`` (False if it has no
    such table yet)."""
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    except SQLAlchemyError:
        return False
    return [r[0] for r in rows] == [revision]


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the shipped migrations up to ``revision`` (idempotent)."""
    head = shipped_head() if revision == "head" else revision
    if head is not None and _at_revision(engine, head):
        return
    from alembic import command

    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                # Transaction-scoped: released at commit, so concurrent openers serialise.
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_ID})
            command.upgrade(_alembic_config(conn), revision)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot migrate the store: {_one_line(exc)}").with_id(
            "store.cannot_migrate_store", exc=_one_line(exc)) from exc


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _one_line(exc: BaseException) -> str:
    msg = str(exc.orig) if isinstance(exc, DBAPIError) and exc.orig is not None else str(exc)
    return msg.strip().splitlines()[0] if msg.strip() else type(exc).__name__


class Store:
    """An engine plus session factories.  Domain functions take a :class:`Session`; they
    never commit — :meth:`transaction` commits on success and rolls back on any error."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.read_engine = engine.execution_options(**{READ_ONLY_OPTION: True})
        #: For a read that is one statement (the API key check, the balance): on PostgreSQL
        #: in autocommit, so the statement is the only round trip (no BEGIN before it, no
        #: ROLLBACK when the connection goes back to the pool); one statement sees one
        #: snapshot either way.  On SQLite the same as :attr:`read_engine`.
        self.statement_engine = (
            self.read_engine.execution_options(isolation_level="AUTOCOMMIT")
            if engine.dialect.name == "postgresql" else self.read_engine)
        self._factory = sessionmaker(bind=engine, expire_on_commit=False)
        self._read_factory = sessionmaker(bind=self.read_engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str, *, migrate: bool = True, create: bool = True,
             echo: bool = False) -> Store:
        """Open the store at ``url``; ``create=False`` refuses (:class:`StoreMissing`) a URL
        that holds none instead of making a new, empty one."""
        engine = make_engine(url, echo=echo)
        sqlite_file = _sqlite_file(engine)
        if sqlite_file is not None:
            if create:
                try:
                    sqlite_file.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    engine.dispose()
                    raise StoreError(f"cannot make the data dir {sqlite_file.parent}: "
                                     f"{exc.strerror or exc}").with_id(
                        "store.cannot_make_data_dir", parent=sqlite_file.parent,
                        value=exc.strerror or exc) from exc
            elif not sqlite_file.is_file():
                # Checked before connecting: connecting would create the file.
                engine.dispose()
                raise _missing(engine, f"no {sqlite_file.name} there")
        try:
            with engine.connect():
                pass
            if not create and not _has_schema(engine):
                engine.dispose()
                raise _missing(engine, "no cas-sim tables")
        except SQLAlchemyError as exc:
            engine.dispose()
            raise StoreError(f"cannot open the store: {_one_line(exc)}").with_id(
                "store.cannot_open_store", exc=_one_line(exc)) from exc
        if migrate:
            upgrade(engine)
        return cls(engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def sqlite_file(self) -> Path | None:
        """The database file of a SQLite store (``None``: PostgreSQL, or in memory)."""
        return _sqlite_file(self.engine)

    def session(self) -> Session:
        return self._factory()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed at the end, rolled back on any error."""
        session = self._factory()
        try:
            with session.begin():
                yield session
        except SQLAlchemyError as exc:
            raise StoreError(f"database error: {_one_line(exc)}").with_id(
                "store.database_error", exc=_one_line(exc)) from exc
        finally:
            session.close()

    @contextmanager
    def reader(self) -> Iterator[Session]:
        """A read-only session (never commits; on SQLite it does not take the write lock)."""
        session = self._read_factory()
        try:
            yield session
        except SQLAlchemyError as exc:
            raise StoreError(f"database error: {_one_line(exc)}").with_id(
                "store.database_error", exc=_one_line(exc)) from exc
        finally:
            session.rollback()
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


def open_store(*, db_url: str | None = None, data_dir: Path | None = None,
               migrate: bool = True, create: bool = True) -> Store:
    """Open (and migrate) the store named by ``db_url`` or ``<data_dir>/cas.sqlite``.

    ``create=True`` (library callers, tests, the demo) makes it when it is not there;
    ``create=False`` raises :class:`~cas.store.errors.StoreMissing` instead.
    """
    return Store.open(resolve_url(db_url=db_url, data_dir=data_dir), migrate=migrate,
                      create=create)
