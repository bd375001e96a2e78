"""Alembic environment for the catalog (see :func:`run_env`)."""

from __future__ import annotations

from hybridvideo.catalog.sql.alembic_history import run_env
from hybridvideo.catalog.sql.models import Base


def _ours(name: str | None, type_: str, _parent: object) -> bool:
    """Leave other tenants of the database alone: huey's queue tables on PostgreSQL and the
    engine's tables, which the engine versions with its own Alembic history."""
    return not (
        type_ == "table"
        and name is not None
        and name.startswith(("huey", "engine_", "alembic_version_engine"))
    )


run_env(name="catalog", target_metadata=Base.metadata, include_name=_ours)
