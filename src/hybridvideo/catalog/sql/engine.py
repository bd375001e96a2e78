"""Engines for the catalog: one place that knows each backend's quirks.

SQLite is the zero-setup default, PostgreSQL the production choice; both must behave the
same for the repository, so the differences are settled here:

* SQLite: write-ahead logging (readers do not block the writer), foreign keys enforced
  (off by default in SQLite), a busy timeout instead of instant "database is locked"
  errors, and SQLAlchemy-issued ``BEGIN`` so transactions really start where the code says
  (the ``sqlite3`` module's legacy mode delays them and makes DDL non-transactional).
  Write transactions start with ``BEGIN IMMEDIATE``: a read-then-write transaction that
  began deferred cannot wait for the write lock, it fails at once, which would break the
  lock-then-check pattern of :meth:`SqlCatalog.set_stream_status`.
* PostgreSQL: ``pool_pre_ping`` so a restarted server costs one reconnect, not one error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from hybridvideo.errors import BackendUnavailable, InvalidInput

#: Execution option that marks a connection as a writer (``BEGIN IMMEDIATE`` on SQLite).
WRITE_OPTION = "hybridvideo_write"

SQLITE_BUSY_TIMEOUT_MS = 5000

NOT_MIGRATED = "catalog database is not migrated; run `hybridvideo db upgrade`"
UNREACHABLE = "catalog database unreachable"

# PostgreSQL undefined_table / undefined_column; SQLite says "no such table/column".
_MISSING_SCHEMA_STATES = frozenset({"42P01", "42703"})


def normalize_database_url(url: str) -> str:
    """Point PostgreSQL URLs at psycopg 3, the one driver the project installs.

    Hosting platforms hand out ``postgres://`` (which SQLAlchemy refuses) and people write
    ``postgresql://`` (which SQLAlchemy maps to psycopg2, not installed); both mean the same
    server, so both become ``postgresql+psycopg://``. Other URLs pass through unchanged.
    """
    url = url.strip()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def create_catalog_engine(url: str, **kwargs: Any) -> Engine:
    """An :class:`Engine` for ``url`` with the settings the catalog relies on."""
    sa_url = make_url(normalize_database_url(url))
    backend = sa_url.get_backend_name()
    if backend == "sqlite":
        database = sa_url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(sa_url, **kwargs)
        _configure_sqlite(engine)
        return engine
    if backend == "postgresql":
        kwargs.setdefault("pool_pre_ping", True)
    return create_engine(sa_url, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Take transaction control away from the sqlite3 module (see module docstring).
        dbapi_connection.isolation_level = None
        # Unicode-aware lower(): SQLite's built-in only folds ASCII, so a search for
        # "ÉTÉ" would miss "été" on SQLite but not on PostgreSQL.
        dbapi_connection.create_function("lower", 1, _lower, deterministic=True)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode=WAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get("isolation_level") == "AUTOCOMMIT":
            return
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get(WRITE_OPTION) else "BEGIN")


class Transactions:
    """Short transactions on one engine, for every repository on it: a reader, or a writer
    (``BEGIN IMMEDIATE`` on SQLite); driver errors come out as domain errors."""

    def __init__(self, engine: Engine) -> None:
        self._reader = sessionmaker(engine, expire_on_commit=False)
        self._writer = sessionmaker(
            engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False
        )

    @contextmanager
    def __call__(self, *, write: bool = False) -> Iterator[Session]:
        with translate_errors(), (self._writer if write else self._reader).begin() as session:
            yield session


def driver_text(exc: Exception) -> str:
    """The driver's own message, for ``detail`` (logged, never shown to clients)."""
    return str(exc.orig) if isinstance(exc, DBAPIError) and exc.orig is not None else str(exc)


def _missing_schema(exc: DBAPIError) -> bool:
    state = getattr(exc.orig, "sqlstate", None)
    message = driver_text(exc)
    return state in _MISSING_SCHEMA_STATES or message.startswith(("no such table", "no such col"))


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn driver failures into domain errors at the edge, in one place.

    A missing table means nobody ran the migrations, which deserves its own message
    (an operator can fix it); lost connections and pool exhaustion are "unreachable".
    """
    try:
        yield
    except (OperationalError, ProgrammingError) as exc:
        if _missing_schema(exc):
            raise BackendUnavailable(NOT_MIGRATED, detail=driver_text(exc)) from exc
        if isinstance(exc, ProgrammingError):
            raise
        raise BackendUnavailable(UNREACHABLE, detail=driver_text(exc)) from exc
    except (InterfaceError, PoolTimeout) as exc:
        raise BackendUnavailable(UNREACHABLE, detail=driver_text(exc)) from exc
    except DataError as exc:
        raise InvalidInput("a value does not fit the catalog", detail=driver_text(exc)) from exc


def _lower(value: str | None) -> str | None:
    return value.lower() if isinstance(value, str) else value


__all__ = [
    "NOT_MIGRATED",
    "Transactions",
    "SQLITE_BUSY_TIMEOUT_MS",
    "UNREACHABLE",
    "WRITE_OPTION",
    "create_catalog_engine",
    "driver_text",
    "normalize_database_url",
    "translate_errors",
]
