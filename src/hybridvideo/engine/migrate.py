"""Run the engine's Alembic migrations, independently of the catalog's.

The engine's schema has its own history and its own version table,
``alembic_version_engine``, so it can live in the catalog's database (the embedded
default) or in a database of its own (``HYBRIDVIDEO_ENGINE_DATABASE_URL``), and upgrading
one never moves the other. As for the catalog, the scripts ship inside the package and the
configuration is built in code; the URL travels in ``Config.attributes``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from hybridvideo.catalog.sql.engine import create_catalog_engine, normalize_database_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: Alembic's bookkeeping table for the engine; the catalog keeps ``alembic_version``.
VERSION_TABLE = "alembic_version_engine"

#: ``Config.attributes`` keys read by ``engine/migrations/env.py``.
URL_ATTRIBUTE = "url"
CONNECTION_ATTRIBUTE = "connection"


def alembic_config(url: str | None = None) -> Config:
    """An Alembic :class:`Config` for the engine's packaged scripts, optionally bound to ``url``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    if url is not None:
        cfg.attributes[URL_ATTRIBUTE] = normalize_database_url(url)
    return cfg


@cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the engine's tables in the database at ``url`` up to ``revision``."""
    command.upgrade(alembic_config(url), revision)


def head_revision() -> str:
    """The newest engine revision shipped with this version of the package."""
    head = _script().get_current_head()
    if head is None:  # pragma: no cover - the package always ships a revision
        raise RuntimeError("no engine migrations found")
    return head


def revision_of(connection: Connection) -> str | None:
    """The engine revision recorded behind ``connection`` (``None`` if never migrated)."""
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def current_revision(url: str) -> str | None:
    """The engine revision of the database at ``url``, or ``None``."""
    engine = create_catalog_engine(url)
    try:
        with engine.connect() as connection:
            return revision_of(connection)
    finally:
        engine.dispose()


def is_up_to_date(url: str) -> bool:
    """True when the engine's tables at ``url`` are at the packaged head revision."""
    return current_revision(url) == head_revision()


__all__ = [
    "MIGRATIONS_DIR",
    "VERSION_TABLE",
    "alembic_config",
    "current_revision",
    "head_revision",
    "is_up_to_date",
    "revision_of",
    "upgrade",
]
