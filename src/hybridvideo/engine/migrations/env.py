"""Alembic environment for the engine (see :func:`run_env`).

Two differences from the catalog's let both schemas share one database: the version table
is ``alembic_version_engine``, and only ``engine_*`` tables are considered, so autogenerate
neither sees the catalog's (or huey's) tables nor proposes to drop them.
"""

from __future__ import annotations

from hybridvideo.catalog.sql.alembic_history import run_env
from hybridvideo.engine.migrate import VERSION_TABLE
from hybridvideo.engine.models import EngineBase


def _ours(name: str | None, type_: str, _parent: object) -> bool:
    return type_ != "table" or (name is not None and name.startswith("engine_"))


run_env(
    name="engine",
    target_metadata=EngineBase.metadata,
    include_name=_ours,
    version_table=VERSION_TABLE,
)
