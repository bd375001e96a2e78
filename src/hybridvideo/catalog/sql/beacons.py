"""QoE beacons in the catalog's ``qoe_beacons`` table (:class:`BeaconStore`).

One short write transaction per batch (a player sends a handful of events at a time), on
the catalog's own engine and pool: beacons are few and small, and keeping them in the
catalog's database lets the telemetry issue join them with videos later.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine, select

from hybridvideo.catalog.base import Catalog
from hybridvideo.catalog.sql.engine import Transactions
from hybridvideo.catalog.sql.models import QoeBeaconRow
from hybridvideo.catalog.sql.repository import SqlCatalog
from hybridvideo.errors import ConfigurationError
from hybridvideo.telemetry.qoe import Beacon

#: Reads are for support and tests, never unbounded.
MAX_SESSION_BEACONS = 1000


class SqlBeaconStore:
    def __init__(self, engine: Engine) -> None:
        self._tx = Transactions(engine)

    @classmethod
    def on_catalog(cls, catalog: Catalog) -> SqlBeaconStore:
        """The store on the SQL catalog's engine (one pool for both)."""
        if not isinstance(catalog, SqlCatalog):
            raise ConfigurationError("QoE beacons need the SQL catalog")
        return cls(catalog._engine)

    def add_beacons(self, beacons: Sequence[Beacon]) -> int:
        if not beacons:
            return 0
        with self._tx(write=True) as session:
            session.add_all(
                QoeBeaconRow(
                    session_id=b.session_id,
                    video_id=b.video_id,
                    viewer=b.viewer,
                    kind=b.kind,
                    cohort=dict(b.cohort),
                    data=dict(b.data),
                )
                for b in beacons
            )
        return len(beacons)

    def session_beacons(self, session_id: str) -> list[Beacon]:
        query = (
            select(QoeBeaconRow)
            .where(QoeBeaconRow.session_id == session_id)
            .order_by(QoeBeaconRow.id)
            .limit(MAX_SESSION_BEACONS)
        )
        with self._tx() as session:
            rows = session.scalars(query).all()
            return [
                Beacon(
                    session_id=row.session_id,
                    video_id=row.video_id or "",
                    kind=row.kind,
                    data=dict(row.data),
                    cohort=dict(row.cohort),
                    viewer=row.viewer,
                )
                for row in rows
            ]
