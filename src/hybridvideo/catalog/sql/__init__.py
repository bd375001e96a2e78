"""The SQL catalog (SQLite or PostgreSQL through SQLAlchemy), and its migrations.

Only the composition root imports this package; everything else sees the
:class:`~hybridvideo.catalog.base.Catalog` protocol.
"""

from hybridvideo.catalog.sql.engine import create_catalog_engine, normalize_database_url
from hybridvideo.catalog.sql.grants import SqlGrantStore
from hybridvideo.catalog.sql.migrate import current_revision, head_revision, is_up_to_date, upgrade
from hybridvideo.catalog.sql.repository import SqlCatalog
from hybridvideo.catalog.sql.runs import SqlRunJournal

__all__ = [
    "SqlCatalog",
    "SqlGrantStore",
    "SqlRunJournal",
    "create_catalog_engine",
    "current_revision",
    "head_revision",
    "is_up_to_date",
    "normalize_database_url",
    "upgrade",
]
