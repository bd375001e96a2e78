"""Alembic environment for the engine, driven from :mod:`hybridvideo.engine.migrate`.

It mirrors the catalog's environment with two differences that let both schemas share one
database: the version table is ``alembic_version_engine``, and only ``engine_*`` tables
are considered, so autogenerate neither sees the catalog's (or huey's) tables nor
proposes to drop them.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from hybridvideo.catalog.sql.engine import create_catalog_engine, normalize_database_url
from hybridvideo.engine.migrate import CONNECTION_ATTRIBUTE, URL_ATTRIBUTE, VERSION_TABLE
from hybridvideo.engine.models import EngineBase

config = context.config
target_metadata = EngineBase.metadata


def _url() -> str:
    url = config.attributes.get(URL_ATTRIBUTE) or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL given to the engine migrations")
    return normalize_database_url(str(url))


def _ours(name: str | None, type_: str, _parent: object) -> bool:
    return type_ != "table" or (name is not None and name.startswith("engine_"))


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        compare_type=True,
        include_name=_ours,
        render_as_batch=connection.dialect.name == "sqlite",
    )


def run_migrations_offline() -> None:
    """Print the SQL instead of running it (``--sql``)."""
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
        compare_type=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    given = config.attributes.get(CONNECTION_ATTRIBUTE)
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
