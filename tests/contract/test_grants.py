"""The playback GrantStore contract on SQLite and PostgreSQL (``catalog_url`` fixture)."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from hybridvideo.catalog.sql import SqlCatalog, SqlGrantStore, create_catalog_engine, upgrade
from hybridvideo.domain.video import MediaInfo, NewVideo
from hybridvideo.errors import ConfigurationError, InvalidInput, NotFound
from hybridvideo.playback.grants import GrantStore


@pytest.fixture
def stores(catalog_url: str) -> Iterator[tuple[SqlCatalog, GrantStore]]:
    upgrade(catalog_url)
    engine = create_catalog_engine(catalog_url)
    catalog = SqlCatalog(engine)
    try:
        yield catalog, SqlGrantStore.on_catalog(catalog)
    finally:
        engine.dispose()


def add(catalog: SqlCatalog) -> str:
    n = uuid.uuid4().hex
    return catalog.add_video(
        NewVideo(
            title="v",
            collection="work",
            archive_bucket="m",
            archive_key=f"v/{n}.mp4",
            media=MediaInfo(1, hashlib.sha256(n.encode()).hexdigest(), "mp4", 1.0, 16, 9),
        )
    ).id


NOW = datetime.now(UTC)


def test_grant_list_check_revoke(stores: tuple[SqlCatalog, GrantStore]) -> None:
    catalog, grants = stores
    video, other = add(catalog), add(catalog)
    made = grants.grant(video, "bob", created_by="admin")
    assert (made.video_id, made.subject, made.expires_at, made.created_by) == (
        video,
        "bob",
        None,
        "admin",
    )
    grants.grant(video, "carol", expires_at=NOW + timedelta(hours=1))
    assert [g.subject for g in grants.list_grants(video)] == ["bob", "carol"]
    assert grants.list_grants(other) == []
    assert grants.is_granted(video, "bob", now=NOW)
    assert grants.is_granted(video, "carol", now=NOW)
    assert not grants.is_granted(video, "carol", now=NOW + timedelta(hours=2))
    assert not grants.is_granted(other, "bob", now=NOW)
    assert not grants.is_granted(video, "dave", now=NOW)
    grants.revoke(video, "bob")
    assert not grants.is_granted(video, "bob", now=NOW)
    with pytest.raises(NotFound):
        grants.revoke(video, "bob")


def test_granting_again_renews(stores: tuple[SqlCatalog, GrantStore]) -> None:
    catalog, grants = stores
    video = add(catalog)
    grants.grant(video, "bob", expires_at=NOW - timedelta(minutes=1))
    assert not grants.is_granted(video, "bob", now=NOW)
    renewed = grants.grant(video, "bob")
    assert renewed.expires_at is None and grants.is_granted(video, "bob", now=NOW)
    assert len(grants.list_grants(video)) == 1


def test_expiry_round_trips_as_utc(stores: tuple[SqlCatalog, GrantStore]) -> None:
    catalog, grants = stores
    video = add(catalog)
    when = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    grants.grant(video, "bob", expires_at=when)
    (stored,) = grants.list_grants(video)
    assert stored.expires_at == when and stored.expires_at.tzinfo is not None


def test_refusals(stores: tuple[SqlCatalog, GrantStore]) -> None:
    catalog, grants = stores
    video = add(catalog)
    with pytest.raises(NotFound):
        grants.grant(str(uuid.uuid4()), "bob")
    with pytest.raises(NotFound):
        grants.list_grants(str(uuid.uuid4()))
    for bad in ("", " bob", "x" * 129, "a\nb"):
        with pytest.raises(InvalidInput):
            grants.grant(video, bad)
    with pytest.raises(InvalidInput):
        grants.grant(video, "bob", expires_at=datetime(2031, 1, 1))  # naive
    with pytest.raises(ConfigurationError):
        SqlGrantStore.on_catalog(object())  # type: ignore[arg-type]


def test_concurrent_grants_of_one_pair_make_one_row(
    stores: tuple[SqlCatalog, GrantStore],
) -> None:
    catalog, grants = stores
    video = add(catalog)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            grants.grant(video, "bob")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [g.subject for g in grants.list_grants(video)] == ["bob"]
