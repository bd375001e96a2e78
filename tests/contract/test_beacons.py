"""The QoE beacon store (``catalog/sql/beacons.py``) on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hybridvideo.catalog.sql import SqlCatalog, create_catalog_engine, upgrade
from hybridvideo.catalog.sql.beacons import SqlBeaconStore
from hybridvideo.errors import ConfigurationError
from hybridvideo.telemetry.qoe import Beacon, BeaconStore, parse_batch


@pytest.fixture
def store(catalog_url: str) -> Iterator[SqlBeaconStore]:
    upgrade(catalog_url)
    engine = create_catalog_engine(catalog_url)
    try:
        yield SqlBeaconStore.on_catalog(SqlCatalog(engine))
    finally:
        engine.dispose()


def test_batches_come_back_per_session_in_arrival_order(store: SqlBeaconStore) -> None:
    contract: BeaconStore = store
    batch = parse_batch(
        {
            "sessionId": "a" * 32,
            "videoId": "v1",
            "cohort": {"cohort": "b", "abr": True},
            "events": [
                {"kind": "startup", "ms": 250.4},
                {"kind": "rebuffer", "ms": 1200, "position": 4.5},
                {"kind": "watch", "seconds": 30, "rebuffers": 1, "rebufferMs": 1200},
            ],
        }
    )
    assert contract.add_beacons(batch.beacons(viewer="u1")) == 3
    other = Beacon("b" * 32, "v2", "startup", {"ms": 1.0})
    assert contract.add_beacons([other]) == 1
    assert contract.add_beacons([]) == 0
    stored = contract.session_beacons("a" * 32)
    assert [(b.kind, b.data) for b in stored] == [
        ("startup", {"ms": 250.4}),
        ("rebuffer", {"ms": 1200.0, "position": 4.5}),
        ("watch", {"seconds": 30.0, "rebuffers": 1, "rebufferMs": 1200.0}),
    ]
    assert {(b.video_id, b.viewer) for b in stored} == {("v1", "u1")}
    assert stored[0].cohort == {"cohort": "b", "abr": "on"}
    assert contract.session_beacons("b" * 32) == [other]
    assert contract.session_beacons("c" * 32) == []


def test_only_the_sql_catalog_can_hold_beacons() -> None:
    with pytest.raises(ConfigurationError):
        SqlBeaconStore.on_catalog(object())  # type: ignore[arg-type]
