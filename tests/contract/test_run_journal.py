"""The migration run journal, on SQLite and PostgreSQL (same fixtures as the catalog's)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import update

from hybridvideo.catalog.sql import SqlCatalog, SqlRunJournal, create_catalog_engine, upgrade
from hybridvideo.catalog.sql.models import MigrationRunRow, utcnow
from hybridvideo.domain.video import MediaInfo, NewVideo, StreamStatus, VideoScan
from hybridvideo.errors import Conflict, InvalidInput, NotFound
from hybridvideo.migrate.journal import (
    HEARTBEAT_TIMEOUT,
    NewRun,
    Outcome,
    RunItem,
    RunJournal,
    RunState,
)


class World:
    def __init__(self, url: str) -> None:
        self.engine = create_catalog_engine(url)
        self.journal = SqlRunJournal(self.engine)
        self.catalog = SqlCatalog(self.engine)

    def age_heartbeat(self, run_id: str, by: timedelta) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(MigrationRunRow)
                .where(MigrationRunRow.id == run_id)
                .values(heartbeat_at=utcnow() - by)
            )


@pytest.fixture
def world(catalog_url: str) -> Iterator[World]:
    upgrade(catalog_url)
    w = World(catalog_url)
    try:
        yield w
    finally:
        w.engine.dispose()


def test_a_run_records_items_and_counts_them_once_per_video(world: World) -> None:
    journal = world.journal
    assert isinstance(journal, RunJournal)
    run = journal.start_run(NewRun(filters={"collection": "work"}, options={"c": 4}, total=3))
    assert run.state == RunState.RUNNING and run.counts == {} and run.total == 3
    assert run.effective_state(utcnow()) == RunState.RUNNING
    journal.record_items(
        run.id,
        [
            RunItem("v1", Outcome.COPIED, stream_uid="u1", requests=1),
            RunItem("v2", Outcome.DEFERRED, error_code="RATE_LIMITED", requests=5),
            RunItem("v3", Outcome.FAILED, error_code="ERR_NON_VIDEO", error_message="x" * 5000),
        ],
    )
    # A resumed pass reaches v2 again: its outcome is replaced and its requests add up.
    journal.record_items(run.id, [RunItem("v2", Outcome.COPIED, stream_uid="u2", requests=1)])
    got = journal.get_run(run.id)
    assert dict(got.counts) == {"copied": 2, "failed": 1} and got.done == 3
    assert got.filters == {"collection": "work"} and got.options == {"c": 4}
    items = journal.items(run.id)
    assert [i.video_id for i in items] == ["v1", "v2", "v3"]
    assert items[1].outcome == Outcome.COPIED and items[1].requests == 6
    assert items[1].stream_uid == "u2" and items[1].error_code is None
    assert len(items[2].error_message or "") == 2000
    failed = journal.items(run.id, outcome=Outcome.FAILED)
    assert [i.video_id for i in failed] == ["v3"]
    done = journal.finish_run(run.id, RunState.FINISHED)
    assert done.state == RunState.FINISHED and done.finished_at is not None
    assert dict(done.counts) == {"copied": 2, "failed": 1}


def test_runs_are_listed_newest_first_with_their_counts(world: World) -> None:
    journal = world.journal
    first = journal.start_run(NewRun(filters={}))
    second = journal.start_run(NewRun(filters={}, state=RunState.QUEUED, parent_id=first.id))
    journal.record_items(first.id, [RunItem("v1", Outcome.PRESENT)])
    runs = journal.list_runs()
    assert [r.id for r in runs] == [second.id, first.id]
    assert runs[0].state == RunState.QUEUED and runs[0].parent_id == first.id
    assert runs[0].started_at is None and dict(runs[1].counts) == {"present": 1}
    assert [r.id for r in journal.list_runs(limit=1, offset=1)] == [first.id]
    with pytest.raises(InvalidInput):
        journal.list_runs(limit=0)


def test_a_killed_run_shows_interrupted_and_can_be_claimed_again(world: World) -> None:
    journal = world.journal
    run = journal.start_run(NewRun(filters={}, total=10))
    with pytest.raises(Conflict):  # alive: someone is running it
        journal.claim_run(run.id, total=10)
    world.age_heartbeat(run.id, HEARTBEAT_TIMEOUT + timedelta(seconds=5))
    stale = journal.get_run(run.id)
    assert stale.state == RunState.RUNNING
    assert stale.effective_state(utcnow()) == RunState.INTERRUPTED
    claimed = journal.claim_run(run.id, total=4)
    assert claimed.state == RunState.RUNNING and claimed.total == 4
    assert claimed.effective_state(utcnow()) == RunState.RUNNING
    journal.heartbeat(run.id)
    journal.finish_run(run.id, RunState.INTERRUPTED)
    again = journal.claim_run(run.id, total=4)  # an interrupted run resumes
    assert again.finished_at is None
    journal.finish_run(run.id, RunState.FINISHED)
    with pytest.raises(Conflict):
        journal.claim_run(run.id, total=1)


def test_queued_runs_are_claimed_by_a_worker(world: World) -> None:
    run = world.journal.start_run(NewRun(filters={}, state=RunState.QUEUED))
    assert run.effective_state(utcnow() + timedelta(days=1)) == RunState.QUEUED
    claimed = world.journal.claim_run(run.id, total=2)
    assert claimed.state == RunState.RUNNING and claimed.started_at is not None


def test_unknown_runs_and_bad_states(world: World) -> None:
    journal = world.journal
    for call in (
        lambda: journal.get_run("nope"),
        lambda: journal.heartbeat("x" * 300),
        lambda: journal.record_items("nope", [RunItem("v", Outcome.COPIED)]),
        lambda: journal.items("nope"),
        lambda: journal.finish_run("nope", RunState.FINISHED),
    ):
        with pytest.raises(NotFound):
            call()
    run = journal.start_run(NewRun(filters={}))
    with pytest.raises(InvalidInput):
        journal.finish_run(run.id, RunState.RUNNING)
    with pytest.raises(InvalidInput):
        journal.start_run(NewRun(filters={}, state=RunState.FINISHED))
    journal.record_items(run.id, [])  # nothing to do
    assert journal.get_run(run.id).counts == {}


def test_scans_can_pick_the_videos_a_run_failed(world: World) -> None:
    ids = []
    for n in range(3):
        sha = hashlib.sha256(f"m{n}".encode()).hexdigest()
        media = MediaInfo(size=10, sha256=sha, format="mp4", duration=1.0, width=2, height=2)
        video = world.catalog.add_video(
            NewVideo(
                title=f"v{n}",
                collection="work",
                archive_bucket="b",
                archive_key=f"k/{n}.mp4",
                media=media,
            )
        )
        ids.append(video.id)
    run = world.journal.start_run(NewRun(filters={}))
    world.journal.record_items(
        run.id,
        [
            RunItem(ids[0], Outcome.FAILED),
            RunItem(ids[1], Outcome.COPIED),
            RunItem(ids[2], Outcome.FAILED),
        ],
    )
    scan = VideoScan(in_run=(run.id, Outcome.FAILED.value))
    assert {v.id for v in world.catalog.scan_videos(scan)} == {ids[0], ids[2]}
    narrowed = VideoScan(in_run=(run.id, "failed"), statuses=frozenset({StreamStatus.READY}))
    assert world.catalog.scan_videos(narrowed) == []


def test_an_executor_that_lost_its_run_is_refused(world: World) -> None:
    journal = world.journal
    first = journal.start_run(NewRun(filters={}))
    assert first.owner
    journal.heartbeat(first.id, owner=first.owner)
    world.age_heartbeat(first.id, HEARTBEAT_TIMEOUT + timedelta(seconds=5))
    second = journal.claim_run(first.id, total=1)
    assert second.owner and second.owner != first.owner
    with pytest.raises(Conflict):
        journal.heartbeat(first.id, owner=first.owner)
    with pytest.raises(Conflict):
        journal.finish_run(first.id, RunState.INTERRUPTED, owner=first.owner)
    journal.heartbeat(first.id, owner=second.owner)
    done = journal.finish_run(first.id, RunState.FINISHED, owner=second.owner)
    assert done.state == RunState.FINISHED
