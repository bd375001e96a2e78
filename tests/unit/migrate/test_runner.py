"""The migration batch on real parts: SQLite catalog and journal, local archive, the
engine's real Cloudflare API in-process (tests/unit/delivery/world.py).

Faults here are injected *between* our client and the engine (``Flaky``): a copy whose
answer is lost after the engine made it, a 5xx before it did, a 429. The same faults over
real HTTP, from the engine's fault mode, are in tests/integration/migrate/.
"""

from __future__ import annotations

import io
import random
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from hybridvideo.catalog.sql import SqlRunJournal
from hybridvideo.delivery.service import (
    ARCHIVE_KEY_META,
    VIDEO_ID_META,
    DeliveryService,
    copy_meta,
)
from hybridvideo.domain.video import StreamStatus, VideoScan, VideoState
from hybridvideo.errors import BackendUnavailable, Conflict, InvalidInput
from hybridvideo.migrate.journal import Outcome, RunState
from hybridvideo.migrate.plan import MigrationOptions, build_scan
from hybridvideo.migrate.runner import MigrationRunner
from hybridvideo.migrate.service import MigrationService
from hybridvideo.stream.base import RateLimited, StreamProvider, StreamVideo
from hybridvideo.stream.ratelimit import RateLimitedStream, RateLimiter, RetryPolicy
from tests.masters import add_tiny_master
from tests.unit.delivery.world import World, delivery_world

S = StreamStatus


class Flaky:
    """Our real client, with copies that fail: ``lost`` (made, answer lost), ``down`` (5xx
    before anything was made), ``limited`` (429). Everything else passes through."""

    def __init__(self, inner: StreamProvider, plan: Sequence[str] = (), rate: float = 0.0):
        self.inner = inner
        self.plan = list(plan)
        self.rate = rate
        self.rng = random.Random(7)
        self.lock = threading.Lock()
        self.injected: Counter[str] = Counter()

    def _fault(self) -> str | None:
        with self.lock:
            if self.plan:
                fault = self.plan.pop(0)
                return None if fault == "ok" else fault
            if self.rng.random() < self.rate:
                return self.rng.choice(["lost", "down", "limited"])
            return None

    def copy_from_url(self, url: str, **kw: Any) -> StreamVideo:
        fault = self._fault()
        if fault:
            self.injected[fault] += 1
        if fault == "limited":
            raise RateLimited("429", retry_after=0.01)
        if fault == "down":
            raise BackendUnavailable("Stream answered 500")
        made = self.inner.copy_from_url(url, **kw)
        if fault == "lost":
            raise BackendUnavailable("the connection dropped")
        return made

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class Rig:
    world: World
    stream: RateLimitedStream
    flaky: Flaky
    journal: SqlRunJournal
    service: MigrationService

    def add(self, n: int, *, collection: str = "work", key: str | None = None) -> VideoState:
        key = key or f"courses/{collection}/{n:04d}.mp4"
        world = self.world
        return add_tiny_master(
            world.catalog, world.archive, n, key=key, collection=collection, duration=90.0
        )

    def copies(self) -> Mapping[str, list[str]]:
        found: dict[str, list[str]] = {}
        for video in self.world.stream.list():
            found.setdefault(str(video.meta.get(VIDEO_ID_META)), []).append(video.uid)
        return found

    def run(self, options: MigrationOptions | None = None, **filters: Any) -> Any:
        options = options or MigrationOptions(concurrency=4)
        run = self.service.start(build_scan(**filters), options)
        return self.service.execute(run)


def make_rig(world: World, flaky: Flaky | None = None) -> Rig:
    flaky = flaky or Flaky(world.stream)
    limiter = RateLimiter(10_000, 1.0)
    stream = RateLimitedStream(flaky, limiter, RetryPolicy(attempts=3, base=0.001, cap=0.01))
    delivery = DeliveryService(catalog=world.catalog, archive=world.archive, stream=stream)
    journal = SqlRunJournal(world.catalog_engine)
    runner = MigrationRunner(
        catalog=world.catalog,
        journal=journal,
        delivery=delivery,
        stream=stream,
        policy=RetryPolicy(attempts=100, base=0.001, cap=0.01),
    )
    service = MigrationService(catalog=world.catalog, journal=journal, runner=runner)
    return Rig(world, stream, flaky, journal, service)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with delivery_world(tmp_path) as world:
        yield make_rig(world)


def assert_one_copy_each(rig: Rig, videos: Sequence[VideoState]) -> None:
    copies = rig.copies()
    for video in videos:
        now = rig.world.catalog.get_video(video.id)
        assert copies.get(video.id) == [now.spec.stream_uid], video.id
    assert all(len(uids) == 1 for uids in copies.values())


def test_a_run_sends_every_matching_video_once_and_journals_it(rig: Rig) -> None:
    work = [rig.add(n) for n in range(6)]
    other = rig.add(99, collection="inbound")
    report = rig.run(collection="work")
    assert report.run.state == RunState.FINISHED and report.run.total == 6
    assert dict(report.run.counts) == {"copied": 6}
    assert_one_copy_each(rig, work)
    for video in work:
        now = rig.world.catalog.get_video(video.id)
        assert now.spec.stream_status is S.PROCESSING
        made = rig.world.stream.get(now.spec.stream_uid or "")
        assert made.meta[ARCHIVE_KEY_META] == video.spec.archive_key
        assert made.require_signed_urls is True
    assert rig.world.catalog.get_video(other.id).spec.stream_uid is None
    # One listing request, then one copy per video.
    assert report.requests == 1 + 6
    assert all(item.requests == 1 for item in report.items)
    items = rig.journal.items(report.run.id)
    assert {i.video_id for i in items} == {v.id for v in work}
    body = report.to_json()
    assert body["this_pass"]["copied"] == 6 and body["requests_per_video"] == pytest.approx(
        7 / 6, abs=1e-3
    )
    # A second run finds nothing left to send.
    again = rig.run(collection="work")
    assert again.run.total == 0 and again.items == [] and len(rig.world.copies) == 6


def test_filters_by_key_prefix_and_creation_time(rig: Rig) -> None:
    a = rig.add(1, key="old/a.mp4")
    b = rig.add(2, key="new/b.mp4")
    c = rig.add(3, key="new/c.mp4")
    report = rig.run(key_prefix="new/", created_before=c.created_at)
    assert [i.video_id for i in report.items] == [b.id]
    report = rig.run(created_after=a.created_at)
    assert {i.video_id for i in report.items} == {c.id}
    with pytest.raises(InvalidInput):
        build_scan(created_after=c.created_at, created_before=a.created_at)
    with pytest.raises(InvalidInput):
        build_scan(statuses=frozenset({S.READY}))
    with pytest.raises(InvalidInput):
        build_scan(key_prefix="../etc")


def test_limit_sends_the_oldest_first(rig: Rig) -> None:
    videos = [rig.add(n) for n in range(5)]
    report = rig.run(MigrationOptions(concurrency=2, limit=2))
    assert {i.video_id for i in report.items} == {videos[0].id, videos[1].id}
    assert report.run.total == 2


def test_dry_run_counts_minutes_and_the_monthly_cost_and_sends_nothing(rig: Rig) -> None:
    for n in range(4):
        rig.add(n)
    plan = rig.service.plan(build_scan(), MigrationOptions())
    assert plan.summary.count == 4 and plan.minutes == pytest.approx(6.0)
    # $5 per 1,000 minutes stored: 6 minutes cost $0.03 a month.
    assert plan.storage_usd_per_month == pytest.approx(0.03)
    assert len(plan.to_json()["sample"]) == 4
    limited = rig.service.plan(build_scan(), MigrationOptions(limit=1))
    assert limited.summary.count == 1 and limited.minutes == pytest.approx(1.5)
    assert rig.world.copies == [] and rig.journal.list_runs() == []


def test_copies_already_in_stream_are_adopted_not_duplicated(rig: Rig) -> None:
    videos = [rig.add(n) for n in range(3)]
    # An earlier tool (or a run whose catalog was restored from a backup) made these.
    earlier = rig.world.stream.copy_from_url("http://x.test/0.mp4", meta=copy_meta(videos[0]))
    # A catalog rebuilt from the bucket: same master, new id; the old copy names the key.
    stale = {**copy_meta(videos[1]), VIDEO_ID_META: "id-of-a-deleted-catalog-row"}
    by_key = rig.world.stream.copy_from_url("http://x.test/1.mp4", meta=stale)
    report = rig.run()
    outcomes = {i.video_id: i.outcome for i in report.items}
    assert outcomes == {
        videos[0].id: Outcome.PRESENT,
        videos[1].id: Outcome.PRESENT,
        videos[2].id: Outcome.COPIED,
    }
    assert rig.world.catalog.get_video(videos[0].id).spec.stream_uid == earlier.uid
    assert rig.world.catalog.get_video(videos[1].id).spec.stream_uid == by_key.uid
    assert len(rig.world.copies) == 3  # the two above, and one for the third video


def test_permanent_errors_are_recorded_and_not_retried_unless_asked(rig: Rig) -> None:
    good = rig.add(1)
    gone = rig.add(2)
    rig.world.archive.delete(gone.spec.archive_key)
    report = rig.run()
    failed = report.by_outcome(Outcome.FAILED)
    assert [(i.video_id, i.error_code) for i in failed] == [(gone.id, "MASTER_MISSING")]
    assert "missing from the archive" in (failed[0].error_message or "")
    assert rig.world.catalog.get_video(gone.id).spec.stream_status is S.ERROR
    assert rig.world.catalog.get_video(good.id).spec.stream_status is S.PROCESSING
    assert rig.run().items == []  # a plain rerun leaves the failure alone
    # Put the master back, and retry the failed ones (what the admin page does).
    rig.world.archive.put(gone.spec.archive_key, io.BytesIO(b"master again"))
    retry = rig.service.retry_failed(report.run.id)
    assert retry.state == RunState.QUEUED and retry.parent_id == report.run.id
    assert retry.total == 1
    claimed = rig.service.resume(retry.id)
    done = rig.service.execute(claimed)
    assert [(i.video_id, i.outcome) for i in done.items] == [(gone.id, Outcome.COPIED)]
    with pytest.raises(InvalidInput):
        rig.service.retry_failed(done.run.id)  # nothing failed in that one


def test_lost_answers_5xx_and_429s_end_with_exactly_one_copy_per_video(tmp_path: Path) -> None:
    with delivery_world(tmp_path) as world:
        flaky = Flaky(world.stream, plan=["lost", "ok", "down", "limited"] * 3, rate=0.3)
        rig = make_rig(world, flaky)
        videos = [rig.add(n) for n in range(24)]
        report = rig.run(MigrationOptions(concurrency=6, attempts=30))
        assert report.run.state == RunState.FINISHED
        assert set(flaky.injected) == {"lost", "down", "limited"}, flaky.injected
        assert dict(report.run.counts) == {"copied": 24 - _adopted(report), **_present(report)}
        assert_one_copy_each(rig, videos)
        # Every lost answer was found again rather than copied twice.
        assert len(world.copies) == 24


def _adopted(report: Any) -> int:
    return len(report.by_outcome(Outcome.PRESENT))


def _present(report: Any) -> dict[str, int]:
    n = _adopted(report)
    return {"present": n} if n else {}


def test_a_video_still_failing_after_its_attempts_is_deferred(tmp_path: Path) -> None:
    with delivery_world(tmp_path) as world:
        rig = make_rig(world, Flaky(world.stream, plan=["down"] * 3))
        video = rig.add(1)
        report = rig.run(MigrationOptions(concurrency=1, attempts=3))
        [item] = report.items
        assert item.outcome == Outcome.DEFERRED and item.error_code == "BACKEND_UNAVAILABLE"
        # Three tries; before the second and third, a search for what the one before may
        # have made (a 500 and a lost answer look alike from here).
        assert item.requests == 3 + 2
        assert rig.world.catalog.get_video(video.id).spec.stream_status is S.NOT_DELIVERED
        assert report.run.state == RunState.FINISHED
        again = rig.run()  # the next run sends it
        assert [i.outcome for i in again.items] == [Outcome.COPIED]


def test_a_stream_that_is_down_for_everyone_stops_the_run(tmp_path: Path) -> None:
    with delivery_world(tmp_path) as world:
        rig = make_rig(world, Flaky(world.stream, plan=["down"] * 10_000))
        for n in range(40):
            rig.add(n)
        report = rig.run(MigrationOptions(concurrency=2, attempts=1))
        assert report.run.state == RunState.FAILED
        assert "in a row could not be sent" in (report.run.error or "")
        assert len(report.items) < 40  # it stopped instead of deferring everything
        assert world.copies == []


def test_bad_credentials_stop_the_run_at_once(tmp_path: Path) -> None:
    from tests.unit.delivery.world import answering, envelope_error

    with delivery_world(tmp_path) as world:
        calls = Counter[str]()

        def refuse(request: Any) -> Any:
            calls[request.method] += 1
            if request.method == "GET":  # the listing works (a read-only token, say)
                return _empty_list()
            return envelope_error(403, 10_000, "Authentication error")

        rig = make_rig(world, Flaky(answering(refuse)))
        for n in range(30):
            rig.add(n)
        report = rig.run(MigrationOptions(concurrency=1))
        assert report.run.state == RunState.FAILED
        assert "credentials" in (report.run.error or "")
        assert calls["POST"] <= 2
        # Not the videos' fault: none is marked ERROR, so the next run sends them all.
        statuses = {v.spec.stream_status for v in world.catalog.scan_videos(VideoScan())}
        assert statuses == {S.NOT_DELIVERED}
        assert {i.outcome for i in report.items} == {Outcome.DEFERRED}


def _empty_list() -> Any:
    import httpx

    return httpx.Response(200, json={"result": [], "success": True, "errors": [], "messages": []})


def test_a_stopped_run_is_interrupted_and_resumes_where_it_was(rig: Rig) -> None:
    videos = [rig.add(n) for n in range(12)]
    stop = threading.Event()
    sent = Counter[str]()

    class StopAfterFour:
        def listing(self, videos: int) -> None: ...

        def started(self, total: int) -> None: ...

        def advanced(self, item: Any) -> None:
            sent[item.outcome] += 1
            if sum(sent.values()) >= 4:
                stop.set()

    run = rig.service.start(build_scan(), MigrationOptions(concurrency=1))
    first = rig.service.execute(run, sink=StopAfterFour(), stop=stop)
    assert first.run.state == RunState.INTERRUPTED and 4 <= len(first.items) < 12
    resumed = rig.service.resume(run.id)
    assert resumed.total == 12
    second = rig.service.execute(resumed)
    assert second.run.state == RunState.FINISHED
    assert dict(second.run.counts) == {"copied": 12}
    assert len(first.items) + len(second.items) == 12
    assert_one_copy_each(rig, videos)


def test_a_killed_run_shows_interrupted_and_a_rerun_adopts_its_lost_copy(rig: Rig) -> None:
    videos = [rig.add(n) for n in range(3)]
    # What SIGKILL leaves behind: a run still "running", a copy made whose uid was never
    # recorded (the request event is the last word in the video's history).
    run = rig.service.start(build_scan(), MigrationOptions())
    rig.world.catalog.record_event(videos[0].id, "delivery_requested", {})
    lost = rig.world.stream.copy_from_url("http://x.test/v.mp4", meta=copy_meta(videos[0]))
    later = run.created_at + timedelta(minutes=5)
    assert rig.journal.get_run(run.id).effective_state(later) == RunState.INTERRUPTED
    report = rig.run()
    assert rig.world.catalog.get_video(videos[0].id).spec.stream_uid == lost.uid
    assert {i.outcome for i in report.items} == {Outcome.PRESENT, Outcome.COPIED}
    assert_one_copy_each(rig, videos)


def test_a_stop_starts_no_new_copies(rig: Rig) -> None:
    for n in range(30):
        rig.add(n)
    stop = threading.Event()

    class StopAtFirst:
        def listing(self, videos: int) -> None: ...

        def started(self, total: int) -> None: ...

        def advanced(self, item: Any) -> None:
            stop.set()

    run = rig.service.start(build_scan(), MigrationOptions(concurrency=4))
    report = rig.service.execute(run, sink=StopAtFirst(), stop=stop)
    assert report.run.state == RunState.INTERRUPTED
    # Copies started before the stop finish; the ones queued behind them never start.
    assert len(rig.world.copies) == len(report.items) < 30


def test_a_run_taken_over_by_another_process_stops_and_leaves_the_finish_to_it(
    tmp_path: Path,
) -> None:
    from sqlalchemy import update

    from hybridvideo.catalog.sql.models import MigrationRunRow, utcnow

    with delivery_world(tmp_path) as world:
        rig = make_rig(world)
        rig.service._runner._heartbeat_every = 0.05  # type: ignore[attr-defined]
        for n in range(40):
            rig.add(n)
        run = rig.service.start(build_scan(), MigrationOptions(concurrency=1))
        taken: list[str] = []

        class TakeOverAtThird:
            """Another process finds the run dead (heartbeat aged by hand) and claims it."""

            def listing(self, videos: int) -> None: ...

            def started(self, total: int) -> None: ...

            def advanced(self, item: Any) -> None:
                if taken or len(world.copies) < 3:
                    return
                for _ in range(50):  # the old executor's heartbeat may land in between
                    with world.catalog_engine.begin() as conn:
                        conn.execute(
                            update(MigrationRunRow)
                            .where(MigrationRunRow.id == run.id)
                            .values(heartbeat_at=utcnow() - timedelta(minutes=5))
                        )
                    try:
                        taken.append(rig.journal.claim_run(run.id, total=40).owner or "")
                        return
                    except Conflict:
                        continue

        report = rig.service.execute(run, sink=TakeOverAtThird())
        assert taken, "the takeover never happened"
        assert len(report.items) < 40
        after = rig.journal.get_run(run.id)
        assert after.owner == taken[0] and after.state == RunState.RUNNING  # not finished by us
