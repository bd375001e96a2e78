"""The catalog's migrations (scripts in ``hybridvideo/catalog/migrations``)."""

from __future__ import annotations

from pathlib import Path

from hybridvideo.catalog.sql.alembic_history import (
    CONNECTION_ATTRIBUTE,
    URL_ATTRIBUTE,
    AlembicHistory,
)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
HISTORY = AlembicHistory("catalog", MIGRATIONS_DIR)

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
    "alembic_config",
    "current_revision",
    "head_revision",
    "is_up_to_date",
    "revision_of",
    "upgrade",
]
