"""Reconciler on real parts: SQLite catalog, local archive, the engine's real API in-process.

Drift is made the ways it happens (see ``reconcile_world``); ``world.requests`` records
every call our Stream client made, so request budgets are asserted, not assumed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from hybridvideo.delivery.reconcile import (
    MISSING_CODE,
    Action,
    Finding,
    Progress,
    ReconcileOptions,
    Reconciler,
    ReconcileReport,
)
from hybridvideo.delivery.service import (
    ARCHIVE_BUCKET_META,
    FAILED,
    READY,
    VIDEO_ID_META,
    copy_meta,
)
from hybridvideo.domain.video import StreamStatus, VideoState
from hybridvideo.errors import BackendUnavailable, InvalidInput
from tests.unit.delivery.reconcile_world import (
    NON_VIDEO,
    add_clip,
    copy_naming,
    delivered,
    foreign,
    lost_answer,
    set_created,
    snapshot,
    superseded,
)
from tests.unit.delivery.world import World, answering, delivery_world

S = StreamStatus
LATER = timedelta(hours=2)  # past both the stuck threshold and the orphans' grace


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with delivery_world(tmp_path) as w:
        yield w


@pytest.fixture
def clip(world: World, sample_video: Path, tmp_path: Path) -> Callable[[], VideoState]:
    made = iter(range(1000))
    return lambda: add_clip(world, sample_video, tmp_path, next(made))


def reconciler(world: World, *, later: timedelta = timedelta(0), **kw: int) -> Reconciler:
    return Reconciler(
        world.catalog,
        world.stream,
        world.service,
        clock=lambda: datetime.now(UTC) + later,
        **kw,
    )


def run(world: World, *, later: timedelta = LATER, **options: object) -> ReconcileReport:
    world.requests.clear()
    return reconciler(world, later=later).run(ReconcileOptions(**options))  # type: ignore[arg-type]


def api_calls(world: World) -> list[str]:
    """``GET list`` / ``GET one`` / ``DELETE one`` for each request the run made."""
    calls = []
    for request in world.requests:
        method, path = request.split(" ", 1)
        calls.append(f"{method} {'list' if path.endswith('/stream') else 'one'}")
    return calls


def by_uid(findings: list[Finding]) -> dict[str, Finding]:
    return {f.uid: f for f in findings}


def status(world: World, video: VideoState) -> StreamStatus:
    return world.catalog.get_video(video.id).spec.stream_status


# -- a consistent world ----------------------------------------------------------------


def test_a_consistent_world_costs_one_listing_request_and_reports_nothing(
    world: World, clip: Callable[[], VideoState]
) -> None:
    for _ in range(3):
        delivered(world, clip())
    clip()  # NOT_DELIVERED: no copy, nothing to compare
    before = snapshot(world)
    report = run(world)
    assert report.consistent and report.findings == [] and report.stopped is None
    assert (report.catalog_copies, report.stream_videos) == (3, 3)
    assert api_calls(world) == ["GET list"] and report.requests.total == 1
    assert snapshot(world) == before


def test_the_listing_pages_by_created_and_sees_every_video_once(
    world: World, clip: Callable[[], VideoState]
) -> None:
    uids = {delivered(world, clip()) for _ in range(5)}
    progress: list[Progress] = []
    world.requests.clear()
    report = reconciler(world, list_page=2).run(progress=progress.append)
    assert report.consistent and report.stream_videos == 5
    # Each page after the first starts one microsecond before the previous one's last
    # video, so it repeats that one: 2 + 1 + 1 + 1 new, and a short last page.
    assert report.listing_pages == 5 == api_calls(world).count("GET list")
    assert api_calls(world) == ["GET list"] * 5  # no GETs: the listing held every copy
    stream = [p for p in progress if p.phase == "stream"]
    assert [p.pages for p in stream] == [1, 2, 3, 4, 5] and stream[-1].items == len(uids)
    assert [p for p in progress if p.phase == "catalog"][-1] == Progress("catalog", 5, total=5)


# -- stuck -----------------------------------------------------------------------------


def test_stuck_videos_are_settled_from_the_listing_without_a_get(
    world: World, clip: Callable[[], VideoState]
) -> None:
    ready, failed, busy = clip(), clip(), clip()
    uids = [world.service.deliver(v.id).spec.stream_uid or "" for v in (ready, failed, busy)]
    world.finish(uids[0])
    world.finish(uids[1], error=NON_VIDEO)
    world.engine.set_processing_state(uids[2], "inprogress", pct=40)

    fresh = run(world, later=timedelta(0))  # PROCESSING for seconds: not stuck yet
    assert fresh.stuck == [] and fresh.consistent
    assert status(world, ready) is S.PROCESSING

    report = run(world)
    stuck = by_uid(report.stuck)
    assert set(stuck) == set(uids)
    assert stuck[uids[0]].action is Action.APPLIED and stuck[uids[0]].state == "ready"
    assert stuck[uids[1]].action is Action.APPLIED and stuck[uids[1]].state == "error"
    assert stuck[uids[2]].action is Action.NONE and not stuck[uids[2]].problem
    assert "still processing" in stuck[uids[2]].reason
    assert report.consistent and api_calls(world) == ["GET list"]
    assert status(world, ready) is S.READY and status(world, busy) is S.PROCESSING
    error = world.catalog.get_video(failed.id).spec
    assert error.stream_status is S.ERROR
    assert error.stream_error == "ERR_NON_VIDEO: The file is not a video"
    ready_event = next(e for e in world.catalog.events(ready.id) if e.kind == READY)
    assert ready_event.data["source"] == "reconcile"


def test_the_stuck_threshold_is_an_option(world: World, clip: Callable[[], VideoState]) -> None:
    video = clip()
    world.finish(world.service.deliver(video.id).spec.stream_uid or "")
    assert run(world, later=timedelta(minutes=10)).stuck == []
    report = run(world, later=timedelta(minutes=10), stuck_after=timedelta(minutes=5))
    assert [f.action for f in report.stuck] == [Action.APPLIED]


def test_a_stuck_video_the_listing_did_not_reach_is_confirmed_with_one_get(
    world: World, clip: Callable[[], VideoState], tmp_path: Path
) -> None:
    """Three copies created in the same instant and pages of two: the listing cannot get
    past that instant (it says so), and the copy it did not reach costs one GET."""
    videos = [clip() for _ in range(3)]
    uids = [world.service.deliver(v.id).spec.stream_uid or "" for v in videos]
    for uid in uids:
        world.finish(uid)
    set_created(tmp_path, uids, datetime(2025, 1, 1, tzinfo=UTC))
    world.requests.clear()
    report = reconciler(world, later=LATER, list_page=2).run()
    assert report.stream_videos == 2 and report.listing_pages == 2
    assert "could not go past 2025-01-01" in report.notes[0]
    assert api_calls(world) == ["GET list", "GET list", "GET one"]
    assert [f.action for f in report.stuck] == [Action.APPLIED] * 3
    assert report.missing == [] and report.consistent
    assert all(status(world, v) is S.READY for v in videos)


# -- missing ---------------------------------------------------------------------------


def test_a_copy_deleted_behind_the_catalogs_back_is_missing(
    world: World, clip: Callable[[], VideoState]
) -> None:
    gone, evicted, fine = clip(), clip(), clip()
    gone_uid = delivered(world, gone)
    world.stream.delete(gone_uid)
    evicted_uid = delivered(world, evicted)
    world.catalog.set_stream_status(evicted.id, S.EVICTED)
    world.stream.delete(evicted_uid)  # evicted: gone on purpose, never looked at
    delivered(world, fine)
    before = snapshot(world)

    report = run(world)
    assert [(f.uid, f.video_id, f.state) for f in report.missing] == [(gone_uid, gone.id, "READY")]
    assert report.missing[0].problem and report.missing[0].action is Action.NONE
    assert not report.consistent and report.problems == 1
    assert api_calls(world) == ["GET list", "GET one"]  # one GET confirms the 404
    assert snapshot(world) == before  # reported only

    fixed = run(world, fix_missing=True)
    assert [f.action for f in fixed.missing] == [Action.RECORDED_ERROR]
    assert fixed.consistent
    spec = world.catalog.get_video(gone.id).spec
    assert spec.stream_status is S.ERROR and "no longer has" in (spec.stream_error or "")
    failure = [e for e in world.catalog.events(gone.id) if e.kind == FAILED][-1]
    assert failure.data["code"] == MISSING_CODE and failure.data["source"] == "reconcile"
    assert status(world, evicted) is S.EVICTED

    again = run(world, fix_missing=True)  # ERROR videos are not expected in Stream
    assert again.findings == [] and again.consistent


def test_a_stuck_video_whose_copy_is_gone_is_missing(
    world: World, clip: Callable[[], VideoState]
) -> None:
    video = clip()
    uid = world.service.deliver(video.id).spec.stream_uid or ""
    world.stream.delete(uid)
    report = run(world, fix_missing=True)
    assert report.stuck == []
    assert [(f.uid, f.state, f.action) for f in report.missing] == [
        (uid, "PROCESSING", Action.RECORDED_ERROR)
    ]
    assert status(world, video) is S.ERROR


def test_too_many_missing_copies_are_reported_not_recorded(
    world: World, clip: Callable[[], VideoState]
) -> None:
    """A wrong account makes every copy look missing: past the limit nothing is written."""
    videos = [clip() for _ in range(3)]
    for v in videos:
        world.stream.delete(delivered(world, v))
    report = run(world, fix_missing=True, missing_limit=1)
    assert report.stopped is not None and "CLOUDFLARE_ACCOUNT_ID" in report.stopped
    assert len(report.missing) == 2 and all(f.action is Action.NONE for f in report.missing)
    assert api_calls(world) == ["GET list", "GET one", "GET one"]  # stopped at limit + 1
    assert not report.consistent
    assert all(status(world, v) is S.READY for v in videos)
    assert run(world, fix_missing=True, missing_limit=3).changed(Action.RECORDED_ERROR) == 3


# -- orphans ---------------------------------------------------------------------------


def make_orphans(world: World, clip: Callable[[], VideoState]) -> dict[str, str]:
    """One orphan of each kind; returns ``{kind: uid}`` (two duplicates)."""
    lost_video = clip()
    old, _live = superseded(world, clip())
    # Delivered, evicted, delivered again and failed: the evicted copy stayed in Stream
    # and the catalog has moved on from it (a copy the video once had is never adopted).
    earlier_video = clip()
    earlier = delivered(world, earlier_video)
    world.catalog.set_stream_status(earlier_video.id, S.EVICTED)
    retry = world.service.deliver(earlier_video.id).spec.stream_uid or ""
    world.service.apply_stream_update(world.finish(retry, error=NON_VIDEO))
    world.catalog.set_stream_status(earlier_video.id, S.ERROR, stream_uid=retry)
    return {
        "adoptable": lost_answer(world, lost_video),
        "duplicate": old,
        "earlier": earlier,
        "video_gone": copy_naming(world, "v_not_in_the_catalog"),
        "foreign": foreign(world),
    }


def test_orphans_are_classified_and_reported(world: World, clip: Callable[[], VideoState]) -> None:
    made = make_orphans(world, clip)
    before = snapshot(world)
    report = run(world)
    orphans = by_uid(report.orphans)
    assert {f.kind for f in report.orphans} == {"adoptable", "duplicate", "video_gone", "foreign"}
    assert {made[k]: orphans[made[k]].kind for k in made} == {
        made["adoptable"]: "adoptable",
        made["duplicate"]: "duplicate",
        made["earlier"]: "duplicate",
        made["video_gone"]: "video_gone",
        made["foreign"]: "foreign",
    }
    assert "migrate" in orphans[made["adoptable"]].reason
    assert "replaced" in orphans[made["earlier"]].reason
    assert orphans[made["video_gone"]].video_id == "v_not_in_the_catalog"
    # Ours and left over: problems until deleted or adopted; foreign: reported only.
    assert {uid for uid, f in orphans.items() if f.problem} == {
        made[k] for k in ("adoptable", "duplicate", "earlier", "video_gone")
    }
    assert all(f.action is Action.NONE for f in report.orphans)
    assert api_calls(world) == ["GET list"] and snapshot(world) == before
    assert report.as_dict()["counts"]["orphans_by_kind"] == {
        "adoptable": 1,
        "duplicate": 2,
        "video_gone": 1,
        "foreign": 1,
    }


def test_delete_orphans_deletes_exactly_the_deletable_ones(
    world: World, clip: Callable[[], VideoState]
) -> None:
    made = make_orphans(world, clip)
    before = snapshot(world)
    report = run(world, delete_orphans=True)
    deleted = {f.uid for f in report.orphans if f.action is Action.DELETED}
    assert deleted == {made["duplicate"], made["earlier"], made["video_gone"]}
    assert api_calls(world) == ["GET list"] + ["DELETE one"] * 3
    listed = {v.uid for v in world.stream.list()}
    assert made["adoptable"] in listed and made["foreign"] in listed
    assert not deleted & listed
    assert snapshot(world) == before  # the catalog is untouched (and so is the archive)
    # The adoptable copy is still a problem: delivery adopts it, then all is consistent.
    assert [f.kind for f in report.orphans if f.problem] == ["adoptable"]
    assert not report.consistent

    lost_video = next(f.video_id for f in report.orphans if f.kind == "adoptable")
    adopted = world.service.deliver(lost_video or "")
    assert adopted.spec.stream_uid == made["adoptable"]
    settled = run(world, delete_orphans=True)
    assert [f.kind for f in settled.orphans] == ["foreign"] and settled.consistent

    everything = run(world, delete_orphans=True, include_foreign=True)
    assert [(f.kind, f.action) for f in everything.orphans] == [("foreign", Action.DELETED)]
    assert made["foreign"] not in {v.uid for v in world.stream.list()}


def test_orphans_younger_than_the_grace_period_survive(
    world: World, clip: Callable[[], VideoState], tmp_path: Path
) -> None:
    old, young = copy_naming(world, "v_gone_1"), copy_naming(world, "v_gone_2")
    set_created(tmp_path, [old], datetime.now(UTC) - timedelta(hours=3))
    report = run(world, later=timedelta(0), delete_orphans=True)
    orphans = by_uid(report.orphans)
    assert orphans[old].action is Action.DELETED
    assert orphans[young].action is Action.NONE and not orphans[young].problem
    assert "grace" in orphans[young].reason and report.consistent
    assert {v.uid for v in world.stream.list()} == {young}
    # The grace period is an option.
    shorter = run(world, later=timedelta(minutes=10), delete_orphans=True, grace=timedelta(0))
    assert [f.action for f in shorter.orphans] == [Action.DELETED]


def test_a_second_run_finds_nothing_left_to_do(
    world: World, clip: Callable[[], VideoState]
) -> None:
    stuck = clip()
    world.finish(world.service.deliver(stuck.id).spec.stream_uid or "")
    gone = clip()
    world.stream.delete(delivered(world, gone))
    superseded(world, clip())
    copy_naming(world, "v_deleted_long_ago")
    options = {"fix_missing": True, "delete_orphans": True}

    first = run(world, **options)
    assert (
        first.changed(Action.APPLIED),
        first.changed(Action.RECORDED_ERROR),
        first.changed(Action.DELETED),
    ) == (1, 1, 2)
    assert first.consistent
    after_first = snapshot(world)

    second = run(world, **options)
    assert second.findings == [] and second.consistent
    assert api_calls(world) == ["GET list"]
    assert snapshot(world) == after_first


# -- edges -----------------------------------------------------------------------------


def test_options_are_checked() -> None:
    with pytest.raises(InvalidInput, match="delete_orphans"):
        ReconcileOptions(include_foreign=True)
    with pytest.raises(InvalidInput):
        ReconcileOptions(grace=timedelta(seconds=-1))


def test_an_unreachable_listing_raises_and_changes_nothing(
    world: World, clip: Callable[[], VideoState]
) -> None:
    video = clip()
    world.service.deliver(video.id)

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    reconcile = Reconciler(world.catalog, answering(down), world.service)
    with pytest.raises(BackendUnavailable):
        reconcile.run(ReconcileOptions(fix_missing=True, stuck_after=timedelta(0)))
    assert status(world, video) is S.PROCESSING


def test_the_report_is_json_for_the_cli(world: World, clip: Callable[[], VideoState]) -> None:
    import json

    video = clip()
    uid = delivered(world, video)
    world.stream.delete(uid)
    document = json.loads(run(world).to_json())
    assert document["consistent"] is False and document["complete"] is True
    assert document["counts"]["missing"] == 1 and document["counts"]["problems"] == 1
    assert document["requests"] == {
        "list": 1,
        "get": 1,
        "delete": 0,
        "total": 2,
        "listing_pages": 1,
    }
    assert document["missing"] == [
        {
            "kind": "missing",
            "uid": uid,
            "video_id": video.id,
            "state": "READY",
            "created": None,
            "reason": "the catalog's copy is not in Stream (GET answered 404)",
            "action": "none",
            "problem": True,
        }
    ]
    assert document["options"]["stuck_after_seconds"] == 1800.0


def test_a_copy_from_an_earlier_catalog_is_judged_by_its_master_not_deleted(
    world: World, clip: Callable[[], VideoState]
) -> None:
    video = clip()
    # A catalog rebuilt from the bucket: the copy names an id that no longer exists, but
    # the same bucket and key as a video with no copy — migrate adopts it by that key.
    stale = {**copy_meta(video), VIDEO_ID_META: "0" * 36}
    rebuilt = world.stream.copy_from_url("http://archive.test/a.mp4", meta=stale).uid
    other_bucket = {**stale, ARCHIVE_BUCKET_META: "some-other-bucket"}
    elsewhere = world.stream.copy_from_url("http://archive.test/b.mp4", meta=other_bucket).uid
    report = run(world, delete_orphans=True)
    found = by_uid(report.orphans)
    assert found[rebuilt].kind == "adoptable" and found[rebuilt].action is not Action.DELETED
    assert found[elsewhere].kind == "video_gone" and found[elsewhere].action is Action.DELETED
    assert rebuilt in {v.uid for v in world.stream.list()}
