"""The Catalog contract, run against every SQL backend we support.

One suite, parametrised over ``catalog_url``: SQLite (a file per test) and PostgreSQL (a
fresh database per test on the session's server, so the suite is safe under xdist).
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from hybridvideo.catalog.base import Catalog
from hybridvideo.catalog.sql import (
    SqlCatalog,
    create_catalog_engine,
    current_revision,
    head_revision,
    is_up_to_date,
    upgrade,
)
from hybridvideo.catalog.sql.models import Base
from hybridvideo.domain.video import (
    MediaInfo,
    NewVideo,
    ScanSummary,
    StreamStatus,
    VideoChanges,
    VideoFilter,
    VideoScan,
)
from hybridvideo.errors import (
    BackendUnavailable,
    Conflict,
    InvalidInput,
    InvalidTransition,
    NotFound,
)
from tests.services import free_port

S = StreamStatus


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[SqlCatalog]:
    upgrade(catalog_url)
    engine = create_catalog_engine(catalog_url)
    try:
        yield SqlCatalog(engine)
    finally:
        engine.dispose()


def new_video(
    n: int = 0, *, title: str | None = None, collection: str = "work", key: str | None = None
) -> NewVideo:
    return NewVideo(
        title=title or f"Video {n}",
        collection=collection,
        archive_bucket="masters",
        archive_key=key or f"videos/{n}.mp4",
        media=MediaInfo(
            size=1000 + n,
            sha256=hashlib.sha256(f"master-{n}".encode()).hexdigest(),
            format="mp4",
            duration=12.5,
            width=1920,
            height=1080,
        ),
    )


# -- migrations ------------------------------------------------------------------------


def test_upgrade_from_empty_to_head_and_again(catalog_url: str) -> None:
    assert current_revision(catalog_url) is None
    assert not is_up_to_date(catalog_url)
    upgrade(catalog_url)
    assert current_revision(catalog_url) == head_revision()
    assert is_up_to_date(catalog_url)
    upgrade(catalog_url)  # nothing left to do: must not fail or change anything
    assert current_revision(catalog_url) == head_revision()
    engine = create_catalog_engine(catalog_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"videos", "video_specs", "uploads", "jobs", "video_events"} <= tables


def test_models_match_migrations(catalog_url: str) -> None:
    upgrade(catalog_url)
    engine = create_catalog_engine(catalog_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


# -- add / get -------------------------------------------------------------------------


def test_add_and_get_round_trip(catalog: SqlCatalog) -> None:
    assert isinstance(catalog, Catalog)
    big = 5 * 2**31
    new = new_video(1, title="  강의 소개 — Été 🎬  ")
    new = replace(new, media=replace(new.media, size=big))
    added = catalog.add_video(new)
    assert str(uuid.UUID(added.id, version=4)) == added.id
    got = catalog.get_video(added.id)
    assert got == added
    assert got.title == "강의 소개 — Été 🎬"
    assert got.pinned is False and got.owner_id is None
    assert got.created_at.tzinfo == UTC and got.updated_at == got.created_at
    spec = got.spec
    assert spec.size == big and spec.sha256 == new.media.sha256
    assert (spec.archive_bucket, spec.archive_key) == ("masters", "videos/1.mp4")
    assert (spec.format, spec.duration, spec.width, spec.height) == ("mp4", 12.5, 1920, 1080)
    assert spec.stream_status is S.NOT_DELIVERED and spec.stream_uid is None
    assert catalog.find_by_sha256(new.media.sha256.upper()) == got
    assert catalog.find_by_sha256("0" * 64) is None
    assert catalog.find_by_archive_key("masters", "videos/1.mp4") == got
    assert catalog.find_by_archive_key("masters", "videos/1.MP4") is None
    assert catalog.find_by_archive_key("other", "videos/1.mp4") is None
    assert catalog.find_by_archive_key("masters", "x" * 2000) is None
    assert [e.kind for e in catalog.events(added.id)] == ["created"]


def test_add_video_keeps_a_given_id(catalog: SqlCatalog) -> None:
    given = str(uuid.uuid4())
    assert catalog.add_video(replace(new_video(1), id=given)).id == given
    with pytest.raises(Conflict, match=given):
        catalog.add_video(replace(new_video(2), id=given))


def test_unknown_ids_are_not_found(catalog: SqlCatalog) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(NotFound):
        catalog.get_video(missing)
    with pytest.raises(NotFound):
        catalog.update_video(missing, VideoChanges(title="x"))
    with pytest.raises(NotFound):
        catalog.set_stream_status(missing, S.PROCESSING)
    with pytest.raises(NotFound):
        catalog.events(missing)


def test_duplicate_master_is_a_conflict_naming_the_existing_video(catalog: SqlCatalog) -> None:
    first = catalog.add_video(new_video(1))
    same_hash = replace(new_video(1), archive_key="elsewhere.mp4")
    with pytest.raises(Conflict, match=f"sha256.*{first.id}"):
        catalog.add_video(same_hash)
    with pytest.raises(Conflict, match=f"archive key.*{first.id}"):
        catalog.add_video(new_video(2, key="videos/1.mp4"))
    other_bucket = replace(new_video(3, key="videos/1.mp4"), archive_bucket="b")
    catalog.add_video(other_bucket)
    assert catalog.list_videos(VideoFilter()).total == 2


@pytest.mark.parametrize(
    "bad",
    [
        replace(new_video(1), collection="Work!"),
        replace(new_video(1), title="   "),
        replace(new_video(1), archive_key="../x"),
        replace(new_video(1), archive_bucket=""),
        replace(new_video(1), media=replace(new_video(1).media, sha256="not-a-hash")),
    ],
    ids=["collection", "title", "key", "bucket", "sha256"],
)
def test_add_video_validates(catalog: SqlCatalog, bad: NewVideo) -> None:
    with pytest.raises(InvalidInput):
        catalog.add_video(bad)
    assert catalog.list_videos(VideoFilter()).total == 0


# -- list ------------------------------------------------------------------------------


def test_list_filters_orders_and_pages(catalog: SqlCatalog) -> None:
    titles = ["Intro", "100% real", "snake_case talk", "INTRO part 2", "1000 real"]
    ids = [
        catalog.add_video(new_video(i, title=t, collection="inbound" if i % 2 else "work")).id
        for i, t in enumerate(titles)
    ]
    page = catalog.list_videos(VideoFilter())
    assert [v.id for v in page.items] == ids[::-1] and page.total == 5

    work = catalog.list_videos(VideoFilter(collection="work"))
    assert [v.id for v in work.items] == [ids[4], ids[2], ids[0]] and work.total == 3

    def titles_for(query: str) -> list[str]:
        return [v.title for v in catalog.list_videos(VideoFilter(query=query)).items]

    assert titles_for("intro") == ["INTRO part 2", "Intro"]
    assert titles_for("0%") == ["100% real"]
    assert titles_for("e_c") == ["snake_case talk"]
    assert titles_for("_") == ["snake_case talk"]
    assert titles_for("nothing") == []

    catalog.set_stream_status(ids[1], S.PROCESSING)
    processing = catalog.list_videos(VideoFilter(status=S.PROCESSING))
    assert [v.id for v in processing.items] == [ids[1]] and processing.total == 1
    none = catalog.list_videos(VideoFilter(status=S.READY, collection="work"))
    assert none.items == [] and none.total == 0

    second = catalog.list_videos(VideoFilter(limit=2, offset=2))
    assert [v.id for v in second.items] == [ids[2], ids[1]] and second.total == 5
    beyond = catalog.list_videos(VideoFilter(limit=2, offset=10))
    assert beyond.items == [] and beyond.total == 5


@pytest.mark.parametrize(
    "flt", [VideoFilter(limit=0), VideoFilter(limit=201), VideoFilter(offset=-1)]
)
def test_list_rejects_bad_paging(catalog: SqlCatalog, flt: VideoFilter) -> None:
    with pytest.raises(InvalidInput):
        catalog.list_videos(flt)


# -- update ----------------------------------------------------------------------------


def test_update_video_applies_partial_edits(catalog: SqlCatalog) -> None:
    added = catalog.add_video(new_video(1))
    edited = catalog.update_video(added.id, VideoChanges(title=" New title ", pinned=True))
    assert (edited.title, edited.pinned, edited.collection) == ("New title", True, "work")
    assert edited.updated_at > added.updated_at and edited.created_at == added.created_at
    moved = catalog.update_video(added.id, VideoChanges(collection="outbound", owner_id="u-7"))
    assert (moved.title, moved.collection, moved.owner_id) == ("New title", "outbound", "u-7")
    assert catalog.get_video(added.id) == moved

    unchanged = catalog.update_video(added.id, VideoChanges(pinned=True))
    assert unchanged == moved
    edits = [e.data for e in catalog.events(added.id) if e.kind == "edited"]
    assert edits == [{"fields": ["title", "pinned"]}, {"fields": ["collection", "owner_id"]}]


@pytest.mark.parametrize(
    "changes", [VideoChanges(collection="Work!"), VideoChanges(title=""), VideoChanges(title=" ")]
)
def test_update_video_validates(catalog: SqlCatalog, changes: VideoChanges) -> None:
    added = catalog.add_video(new_video(1))
    with pytest.raises(InvalidInput):
        catalog.update_video(added.id, changes)
    assert catalog.get_video(added.id) == added


# -- stream status ---------------------------------------------------------------------


def test_stream_status_full_life_with_idempotent_repeats(catalog: SqlCatalog) -> None:
    vid = catalog.add_video(new_video(1)).id
    life = [
        (S.PROCESSING, "uid-1"),
        (S.READY, None),
        (S.EVICTED, None),
        (S.PROCESSING, "uid-2"),
        (S.READY, None),
    ]
    for status, uid in life:
        state = catalog.set_stream_status(vid, status, stream_uid=uid)
        again = catalog.set_stream_status(vid, status, stream_uid=uid)
        assert state == again and catalog.get_video(vid) == state
        assert state.spec.stream_status is status
    assert catalog.get_video(vid).spec.stream_uid == "uid-2"

    events = catalog.events(vid)
    assert [e.kind for e in events] == ["created"] + ["stream_status"] * len(life)
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert [(e.data["from"], e.data["to"]) for e in events[1:]] == [
        ("NOT_DELIVERED", "PROCESSING"),
        ("PROCESSING", "READY"),
        ("READY", "EVICTED"),
        ("EVICTED", "PROCESSING"),
        ("PROCESSING", "READY"),
    ]
    assert [e.data["stream_uid"] for e in events[1:]] == ["uid-1"] * 3 + ["uid-2"] * 2
    assert all(e.video_id == vid and e.created_at is not None for e in events)


@pytest.mark.parametrize(
    ("path", "forbidden"), [([], S.READY), ([S.PROCESSING, S.READY, S.EVICTED], S.READY)]
)
def test_forbidden_moves_change_nothing(
    catalog: SqlCatalog, path: list[StreamStatus], forbidden: StreamStatus
) -> None:
    vid = catalog.add_video(new_video(1)).id
    for status in path:
        catalog.set_stream_status(vid, status)
    before, history = catalog.get_video(vid), catalog.events(vid)
    with pytest.raises(InvalidTransition):
        catalog.set_stream_status(vid, forbidden, stream_uid="new-uid")
    assert catalog.get_video(vid) == before and catalog.events(vid) == history


def test_error_records_and_later_clears_the_reason(catalog: SqlCatalog) -> None:
    vid = catalog.add_video(new_video(1)).id
    catalog.set_stream_status(vid, S.PROCESSING, stream_uid="uid-1")
    failed = catalog.set_stream_status(vid, S.ERROR, error="codec not supported")
    assert failed.spec.stream_error == "codec not supported"
    assert catalog.set_stream_status(vid, S.ERROR) == failed  # repeat keeps the reason
    changed = catalog.set_stream_status(vid, S.ERROR, error="quota exceeded")
    assert changed.spec.stream_error == "quota exceeded"
    retried = catalog.set_stream_status(vid, S.PROCESSING)
    assert retried.spec.stream_error is None and retried.spec.stream_uid == "uid-1"
    errors = [e.data["error"] for e in catalog.events(vid) if e.kind == "stream_status"]
    assert errors == [None, "codec not supported", "quota exceeded", None]


def test_duplicate_stream_uid_is_a_conflict(catalog: SqlCatalog) -> None:
    first = catalog.add_video(new_video(1)).id
    second = catalog.add_video(new_video(2)).id
    catalog.set_stream_status(first, S.PROCESSING, stream_uid="shared")
    with pytest.raises(Conflict, match=first):
        catalog.set_stream_status(second, S.PROCESSING, stream_uid="shared")
    assert catalog.get_video(second).spec.stream_status is S.NOT_DELIVERED


def test_find_by_stream_uid_follows_the_current_uid(catalog: SqlCatalog) -> None:
    first = catalog.add_video(new_video(1)).id
    second = catalog.add_video(new_video(2)).id
    assert catalog.find_by_stream_uid("uid-1") is None
    catalog.set_stream_status(first, S.PROCESSING, stream_uid="uid-1")
    found = catalog.find_by_stream_uid("uid-1")
    assert found is not None and found.id == first and found.spec.stream_uid == "uid-1"
    # A retry sends the video again: the old uid no longer names it, the new one does.
    catalog.set_stream_status(first, S.ERROR, error="ERR_NON_VIDEO")
    catalog.set_stream_status(first, S.PROCESSING, stream_uid="uid-2")
    assert catalog.find_by_stream_uid("uid-1") is None
    again = catalog.find_by_stream_uid("uid-2")
    assert again is not None and again.id == first
    assert catalog.find_by_stream_uid("") is None
    assert catalog.find_by_stream_uid("x" * 65) is None  # longer than any stored uid
    assert catalog.get_video(second).spec.stream_uid is None


def test_concurrent_identical_transitions_record_one_event(catalog: SqlCatalog) -> None:
    vid = catalog.add_video(new_video(1)).id
    errors: list[BaseException] = []

    def move() -> None:
        try:
            catalog.set_stream_status(vid, S.PROCESSING, stream_uid="uid-1")
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=move) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [e.kind for e in catalog.events(vid)] == ["created", "stream_status"]


def test_record_event_appends_to_the_history(catalog: SqlCatalog) -> None:
    vid = catalog.add_video(new_video(1)).id
    recorded = catalog.record_event(vid, "master_verified", {"sha256": "ab", "n": [1, 2]})
    assert (recorded.video_id, recorded.kind) == (vid, "master_verified")
    assert recorded.data == {"sha256": "ab", "n": [1, 2]} and recorded.created_at is not None
    catalog.set_stream_status(vid, S.PROCESSING)
    history = catalog.events(vid)
    assert [e.kind for e in history] == ["created", "master_verified", "stream_status"]
    assert history[1] == recorded
    with pytest.raises(NotFound):
        catalog.record_event(str(uuid.uuid4()), "master_verified", {})
    with pytest.raises(InvalidInput):
        catalog.record_event(vid, "", {})
    with pytest.raises(InvalidInput):
        catalog.record_event(vid, "odd", {"when": object()})
    assert len(catalog.events(vid)) == 3


# -- health ----------------------------------------------------------------------------


def test_ping_on_migrated_and_unmigrated_databases(catalog_url: str) -> None:
    engine = create_catalog_engine(catalog_url)
    try:
        catalog = SqlCatalog(engine)
        with pytest.raises(BackendUnavailable, match="db upgrade"):
            catalog.ping()
        with pytest.raises(BackendUnavailable, match="db upgrade"):
            catalog.get_video("x")
        upgrade(catalog_url)
        catalog.ping()
    finally:
        engine.dispose()


def test_ping_on_unreachable_postgres() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/hv?connect_timeout=2"
    engine = create_catalog_engine(url)
    try:
        with pytest.raises(BackendUnavailable, match="^catalog database unreachable$") as info:
            SqlCatalog(engine).ping()
        assert info.value.detail  # the driver's words, for the log only
    finally:
        engine.dispose()


def test_the_status_check_constraint_admits_exactly_the_domain_states(
    catalog_url: str, catalog: SqlCatalog
) -> None:
    """compare_metadata ignores CHECK constraints, so test the migrated one directly."""
    import sqlalchemy as sa

    video = catalog.add_video(new_video())
    engine = create_catalog_engine(catalog_url)
    try:
        for status in StreamStatus:
            with engine.begin() as conn:
                conn.execute(
                    sa.text("UPDATE video_specs SET stream_status = :s WHERE video_id = :v"),
                    {"s": status.value, "v": video.id},
                )
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE video_specs SET stream_status = 'DONE' WHERE video_id = :v"),
                {"v": video.id},
            )
    finally:
        engine.dispose()


# -- scans (the migration's and reconcile's walk over the whole catalog) ----------------


def test_scan_walks_every_match_oldest_first_in_keyset_pages(catalog: SqlCatalog) -> None:
    added = [
        catalog.add_video(new_video(n, collection="work" if n % 2 else "inbound")) for n in range(7)
    ]
    catalog.set_stream_status(added[3].id, S.PROCESSING, stream_uid="a" * 32)
    seen: list[str] = []
    cursor = None
    while True:
        page = catalog.scan_videos(VideoScan(), after=cursor, limit=3)
        if not page:
            break
        seen += [v.id for v in page]
        cursor = (page[-1].created_at, page[-1].id)
    assert seen == [v.id for v in sorted(added, key=lambda v: (v.created_at, v.id))]

    work = catalog.scan_videos(VideoScan(collection="work"), limit=100)
    assert {v.id for v in work} == {added[n].id for n in (1, 3, 5)}
    fresh = catalog.scan_videos(
        VideoScan(statuses=frozenset({S.NOT_DELIVERED}), has_stream_uid=False), limit=100
    )
    assert added[3].id not in {v.id for v in fresh} and len(fresh) == 6
    with_uid = catalog.scan_videos(VideoScan(has_stream_uid=True), limit=100)
    assert [v.id for v in with_uid] == [added[3].id]
    middle = catalog.scan_videos(
        VideoScan(created_after=added[1].created_at, created_before=added[5].created_at),
        limit=100,
    )
    assert [v.id for v in middle] == [added[n].id for n in (2, 3, 4)]
    picked = catalog.scan_videos(VideoScan(video_ids=frozenset({added[6].id, "nope"})), limit=9)
    assert [v.id for v in picked] == [added[6].id]


def test_scan_by_key_prefix_treats_like_wildcards_literally(catalog: SqlCatalog) -> None:
    a = catalog.add_video(new_video(1, key="courses/2023/a.mp4"))
    catalog.add_video(new_video(2, key="courses/2024/b.mp4"))
    odd = catalog.add_video(new_video(3, key="100%_off/c.mp4"))
    catalog.add_video(new_video(4, key="100x_off/d.mp4"))
    assert [v.id for v in catalog.scan_videos(VideoScan(key_prefix="courses/2023/"))] == [a.id]
    assert [v.id for v in catalog.scan_videos(VideoScan(key_prefix="100%_"))] == [odd.id]


def test_scan_rejects_bad_limits(catalog: SqlCatalog) -> None:
    for limit in (0, 1001):
        with pytest.raises(InvalidInput):
            catalog.scan_videos(VideoScan(), limit=limit)


def test_summarize_counts_minutes_and_unknown_durations(catalog: SqlCatalog) -> None:
    assert catalog.summarize(VideoScan()) == ScanSummary(0, 0.0, 0, 0)
    for n in range(3):
        catalog.add_video(new_video(n))
    unknown = new_video(9)
    catalog.add_video(replace(unknown, media=replace(unknown.media, duration=None)))
    summary = catalog.summarize(VideoScan())
    assert summary.count == 4 and summary.unknown_duration == 1
    assert summary.duration_seconds == pytest.approx(3 * 12.5)
    assert summary.size_bytes == 1000 + 1001 + 1002 + 1009
    assert catalog.summarize(VideoScan(collection="nope")).count == 0


def test_update_media_records_what_changed_once(catalog: SqlCatalog) -> None:
    video = catalog.add_video(new_video(1))
    after = catalog.update_media(video.id, duration=30.25, width=640, height=None, size=None)
    assert (after.spec.duration, after.spec.width, after.spec.height) == (30.25, 640, 1080)
    again = catalog.update_media(video.id, duration=30.25, width=640)
    assert again.updated_at == after.updated_at
    media_events = [e for e in catalog.events(video.id) if e.kind == "media"]
    assert [e.data for e in media_events] == [{"duration_seconds": 30.25, "width": 640}]
    for bad in ({"duration": -1.0}, {"duration": float("nan")}, {"width": 0}, {"size": -5}):
        with pytest.raises(InvalidInput):
            catalog.update_media(video.id, **bad)  # type: ignore[arg-type]
    assert catalog.get_video(video.id).spec == after.spec
    with pytest.raises(NotFound):
        catalog.update_media("0" * 36, duration=1.0)


def test_a_note_is_recorded_with_the_status_change_in_one_transaction(
    catalog: SqlCatalog,
) -> None:
    video = catalog.add_video(new_video(1))
    catalog.set_stream_status(
        video.id, S.PROCESSING, stream_uid="c" * 32, note=("delivery_sent", {"uid": "c" * 32})
    )
    kinds = [e.kind for e in catalog.events(video.id)]
    assert kinds[-2:] == ["stream_status", "delivery_sent"]
    # A repeat changes no status but still records its note.
    catalog.set_stream_status(video.id, S.PROCESSING, note=("delivery_sent", {"again": True}))
    assert [e.data for e in catalog.events(video.id) if e.kind == "delivery_sent"] == [
        {"uid": "c" * 32},
        {"again": True},
    ]
    # A refused move records nothing.
    with pytest.raises(InvalidTransition):
        catalog.set_stream_status(video.id, S.EVICTED, note=("delivery_sent", {"no": 1}))
    assert len([e for e in catalog.events(video.id) if e.kind == "delivery_sent"]) == 2


def test_expected_uid_refuses_to_overwrite_a_copy_recorded_meanwhile(
    catalog: SqlCatalog,
) -> None:
    video = catalog.add_video(new_video(1))
    catalog.set_stream_status(video.id, S.PROCESSING, stream_uid="a" * 32, expected_uid=None)
    with pytest.raises(Conflict):  # a second sender read "no uid" before the first recorded
        catalog.set_stream_status(video.id, S.PROCESSING, stream_uid="b" * 32, expected_uid=None)
    with pytest.raises(Conflict):  # a report about a copy the video no longer has
        catalog.set_stream_status(video.id, S.READY, stream_uid="b" * 32, expected_uid="b" * 32)
    assert catalog.get_video(video.id).spec.stream_uid == "a" * 32
    done = catalog.set_stream_status(video.id, S.READY, stream_uid="a" * 32, expected_uid="a" * 32)
    assert done.spec.stream_status is S.READY


def test_an_older_report_about_the_same_copy_changes_nothing(catalog: SqlCatalog) -> None:
    video = catalog.add_video(new_video(1))
    uid = "a" * 32
    catalog.set_stream_status(video.id, S.PROCESSING, stream_uid=uid)
    t0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    ready = catalog.set_stream_status(
        video.id, S.READY, stream_uid=uid, modified=t0 + timedelta(seconds=5)
    )
    late = catalog.set_stream_status(
        video.id, S.ERROR, stream_uid=uid, error="late", modified=t0, note=("x", {})
    )
    assert late.spec.stream_status is S.READY and late == ready
    assert "x" not in [e.kind for e in catalog.events(video.id)]  # nor its note
    newer = catalog.set_stream_status(
        video.id, S.ERROR, stream_uid=uid, error="new", modified=t0 + timedelta(seconds=9)
    )
    assert newer.spec.stream_status is S.ERROR
    # A new copy starts afresh: its first report counts whatever its time.
    again = catalog.set_stream_status(video.id, S.PROCESSING, stream_uid="b" * 32)
    assert again.spec.stream_uid == "b" * 32
    fresh = catalog.set_stream_status(video.id, S.READY, stream_uid="b" * 32, modified=t0)
    assert fresh.spec.stream_status is S.READY
