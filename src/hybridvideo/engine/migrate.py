"""The engine's migrations, independent of the catalog's.

The engine's schema has its own history and version table, ``alembic_version_engine``, so
it can live in the catalog's database (the embedded default) or a database of its own
(``HYBRIDVIDEO_ENGINE_DATABASE_URL``), and upgrading one never moves the other.
"""

from __future__ import annotations

from pathlib import Path

from hybridvideo.catalog.sql.alembic_history import (
    CONNECTION_ATTRIBUTE,
    URL_ATTRIBUTE,
    AlembicHistory,
)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: Alembic's bookkeeping table for the engine; the catalog keeps ``alembic_version``.
VERSION_TABLE = "alembic_version_engine"
HISTORY = AlembicHistory("engine", MIGRATIONS_DIR, VERSION_TABLE)

alembic_config = HISTORY.config
upgrade = HISTORY.upgrade
head_revision = HISTORY.head_revision
revision_of = HISTORY.revision_of
current_revision = HISTORY.current_revision
is_up_to_date = HISTORY.is_up_to_date

__all__ = [
    "CONNECTION_ATTRIBUTE",
    "MIGRATIONS_DIR",
    "URL_ATTRIBUTE",
    "VERSION_TABLE",
    "alembic_config",
    "current_revision",
    "head_revision",
    "is_up_to_date",
    "revision_of",
    "upgrade",
]
