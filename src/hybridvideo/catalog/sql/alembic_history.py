"""One packaged Alembic history, run without an ``alembic.ini``.

The catalog and the engine each ship their migration scripts inside the package and keep
their own version table, so ``hybridvideo db upgrade`` works from any folder and upgrading
one schema never moves the other. The configuration is built in code and the database URL
travels in ``Config.attributes`` rather than an ini option (where ``%`` in a URL-encoded
password would trip configparser interpolation); the ``env.py`` scripts read it there.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData

from hybridvideo.catalog.sql.engine import create_catalog_engine, normalize_database_url

#: ``Config.attributes`` keys read by the ``env.py`` scripts.
URL_ATTRIBUTE = "url"
CONNECTION_ATTRIBUTE = "connection"
DEFAULT_VERSION_TABLE = "alembic_version"


class AlembicHistory:
    def __init__(self, name: str, scripts: Path, version_table: str = DEFAULT_VERSION_TABLE):
        self.name = name
        self.scripts = scripts
        self.version_table = version_table

    def config(self, url: str | None = None) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(self.scripts))
        cfg.set_main_option("path_separator", "os")
        # New revisions keep the naming of the first one: 2026_11_23_0001_initial.py.
        cfg.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
        if url is not None:
            cfg.attributes[URL_ATTRIBUTE] = normalize_database_url(url)
        return cfg

    @cached_property
    def _script(self) -> ScriptDirectory:
        # The scripts are part of the installed package and cannot change while we run.
        return ScriptDirectory.from_config(self.config())

    def upgrade(self, url: str, revision: str = "head") -> None:
        """Bring the database at ``url`` up to ``revision`` (creating tables if empty)."""
        command.upgrade(self.config(url), revision)

    def head_revision(self) -> str:
        head = self._script.get_current_head()
        if head is None:  # pragma: no cover - the package always ships a revision
            raise RuntimeError(f"no {self.name} migrations found")
        return head

    def revision_of(self, connection: Connection) -> str | None:
        """The revision recorded behind ``connection`` (``None`` if never migrated)."""
        opts = {"version_table": self.version_table}
        return MigrationContext.configure(connection, opts=opts).get_current_revision()

    def current_revision(self, url: str) -> str | None:
        engine = create_catalog_engine(url)
        try:
            with engine.connect() as connection:
                return self.revision_of(connection)
        finally:
            engine.dispose()

    def is_up_to_date(self, url: str) -> bool:
        return self.current_revision(url) == self.head_revision()


def run_env(
    *,
    name: str,
    target_metadata: MetaData,
    include_name: Callable[[str | None, str, object], bool],
    version_table: str = DEFAULT_VERSION_TABLE,
) -> None:
    """The body of an ``env.py``: offline (``--sql``) or online, for one history.

    The URL (or an open connection, for tests and embedding) comes from
    ``Config.attributes``; a ``sqlalchemy.url`` main option is honoured too so the stock
    ``alembic`` command works with a hand-written ini. Connections come from
    :func:`create_catalog_engine`, so migrations see the application's SQLite pragmas.
    """
    from alembic import context

    config = context.config

    def url() -> str:
        given = config.attributes.get(URL_ATTRIBUTE) or config.get_main_option("sqlalchemy.url")
        if not given:
            raise RuntimeError(f"no database URL given to the {name} migrations")
        return normalize_database_url(str(given))

    options: dict[str, Any] = {
        "target_metadata": target_metadata,
        "version_table": version_table,
        "compare_type": True,
        "include_name": include_name,
    }
    if context.is_offline_mode():
        offline_url = url()
        context.configure(
            url=offline_url,
            literal_binds=True,
            render_as_batch=offline_url.startswith("sqlite"),
            **options,
        )
        with context.begin_transaction():
            context.run_migrations()
        return

    def migrate(connection: Connection) -> None:
        # SQLite cannot ALTER most things; batch mode recreates the table instead.
        context.configure(
            connection=connection,
            render_as_batch=connection.dialect.name == "sqlite",
            **options,
        )
        with context.begin_transaction():
            context.run_migrations()

    given = config.attributes.get(CONNECTION_ATTRIBUTE)
    if isinstance(given, Connection):
        migrate(given)
        return
    engine = create_catalog_engine(url())
    try:
        with engine.connect() as connection:
            migrate(connection)
    finally:
        engine.dispose()
