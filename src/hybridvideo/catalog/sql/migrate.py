"""Run the catalog's Alembic migrations without an ``alembic.ini``.

The migration scripts ship inside the package (``hybridvideo/catalog/migrations``), so an
installed ``hybridvideo db upgrade`` works from any folder: the Alembic configuration is
built here in code and the database URL travels in ``Config.attributes`` rather than in an
ini option (where ``%`` in a URL-encoded password would trip configparser interpolation).
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

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

#: ``Config.attributes`` keys read by ``migrations/env.py``.
URL_ATTRIBUTE = "url"
CONNECTION_ATTRIBUTE = "connection"


def alembic_config(url: str | None = None) -> Config:
    """An Alembic :class:`Config` for the packaged scripts, optionally bound to ``url``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    # New revisions keep the naming of the first one: 2026_11_23_0001_initial.py.
    cfg.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    if url is not None:
        cfg.attributes[URL_ATTRIBUTE] = normalize_database_url(url)
    return cfg


@cache
def _script() -> ScriptDirectory:
    # The scripts are part of the installed package and cannot change while we run.
    return ScriptDirectory.from_config(alembic_config())


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` up to ``revision`` (creating the tables if empty)."""
    command.upgrade(alembic_config(url), revision)


def head_revision() -> str:
    """The newest revision shipped with this version of the package."""
    head = _script().get_current_head()
    if head is None:  # pragma: no cover - the package always ships a revision
        raise RuntimeError("no catalog migrations found")
    return head


def revision_of(connection: Connection) -> str | None:
    """The revision recorded in the database behind ``connection`` (``None`` if empty)."""
    return MigrationContext.configure(connection).get_current_revision()


def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at, or ``None`` if it was never migrated."""
    engine = create_catalog_engine(url)
    try:
        with engine.connect() as connection:
            return revision_of(connection)
    finally:
        engine.dispose()


def is_up_to_date(url: str) -> bool:
    """True when the database at ``url`` is at the packaged head revision."""
    return current_revision(url) == head_revision()


__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "current_revision",
    "head_revision",
    "is_up_to_date",
    "revision_of",
    "upgrade",
]
