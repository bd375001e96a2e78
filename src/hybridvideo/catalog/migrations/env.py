"""Alembic environment for the catalog, driven from :mod:`hybridvideo.catalog.sql.migrate`.

The URL (or an open connection, for tests and embedding) comes from ``Config.attributes``;
a ``sqlalchemy.url`` main option is honoured too so the stock ``alembic`` command still
works with a hand-written ini. Connections come from :func:`create_catalog_engine`, so the
migrations see the same SQLite pragmas as the application.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from hybridvideo.catalog.sql.engine import create_catalog_engine, normalize_database_url
from hybridvideo.catalog.sql.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL given to the catalog migrations")
    return normalize_database_url(str(url))


def _ours(name: str | None, type_: str, _parent: object) -> bool:
    """Leave other tenants of the database alone: huey's queue tables on PostgreSQL and the
    engine's tables, which the engine versions with its own Alembic history."""
    return not (
        type_ == "table"
        and name is not None
        and name.startswith(("huey", "engine_", "alembic_version_engine"))
    )


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        include_name=_ours,
        # SQLite cannot ALTER most things; batch mode recreates the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )


def run_migrations_offline() -> None:
    """Print the SQL instead of running it (``--sql``), for DBAs who apply it themselves."""
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        compare_type=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if isinstance(given, Connection):
        _configure(given)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_catalog_engine(_url())
    try:
        with engine.connect() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
