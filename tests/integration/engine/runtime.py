from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hybridvideo.catalog.sql.engine import create_catalog_engine
from hybridvideo.engine import migrate
from hybridvideo.engine.runtime import EngineRuntime
from hybridvideo.engine.store import EngineStore


@contextlib.contextmanager
def engine_runtime(
    tmp_path: Path, account_id: str, *, store_class: type[EngineStore] = EngineStore, **kw: Any
) -> Iterator[EngineRuntime]:
    """An engine runtime over a freshly migrated SQLite file in ``tmp_path``."""
    url = f"sqlite:///{tmp_path / 'engine.db'}"
    migrate.upgrade(url)
    engine = create_catalog_engine(url)
    try:
        yield EngineRuntime(
            store=store_class(engine),
            account_id=account_id,
            api_token="t" * 32,
            media_root=tmp_path / "media",
            delivery_base="http://127.0.0.1:1/delivery",
            **kw,
        )
    finally:
        engine.dispose()
