"""The migration over real HTTP against a flaky, rate-limited engine.

The engine runs in its fault mode (``HYBRIDVIDEO_ENGINE_FAULTS``): 429 with Retry-After,
500 before and *after* doing the work, answers held past our client's timeout, and
connections cut mid-answer — the last three make Stream videos whose uid the migration
never hears. Its accept-only mode makes copies ready without encoding. The migrating side
is a separate container (its own catalog and archive) pointed at the engine like at
Cloudflare. Every video must end READY (after a reconcile pass, standing in for the
webhooks) or with a recorded permanent error, with exactly one Stream video per master.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from hybridvideo.config import load_settings
from hybridvideo.container import Container, build_container
from hybridvideo.delivery.reconcile import ReconcileOptions, Reconciler
from hybridvideo.delivery.service import VIDEO_ID_META
from hybridvideo.domain.video import StreamStatus, VideoScan
from hybridvideo.engine.models import VideoQuery
from hybridvideo.migrate.journal import Outcome, RunState
from hybridvideo.migrate.plan import MigrationOptions, build_scan
from tests.integration.engine.modes import EngineServer, engine_server
from tests.masters import add_tiny_master

S = StreamStatus
FAULTS = "429=0.1,500=0.1,500after=0.1,timeout=0.1,drop=0.1,seed=11,retry_after=1,hold=2"


@pytest.fixture
def flaky_engine(tmp_path: Path) -> Iterator[EngineServer]:
    with engine_server(
        tmp_path / "engine",
        engine_only=True,
        run_worker=True,
        engine_faults=FAULTS,
        engine_accept_only=True,
    ) as server:
        yield server


@pytest.fixture
def app_side(tmp_path: Path, flaky_engine: EngineServer) -> Iterator[Container]:
    rt = flaky_engine.rt
    settings = load_settings(
        data_dir=tmp_path / "app",
        engine=False,
        stream_api_url=f"{flaky_engine.base}/client/v4",
        cloudflare_account_id=rt.account_id,
        cloudflare_stream_token=rt.api_token,
        stream_timeout=1.0,  # below the engine's hold=2: held answers time out here
    )
    container = build_container(settings, serving=True)
    yield container
    container.close()


def add_videos(container: Container, count: int) -> list[str]:
    return [
        add_tiny_master(container.catalog, container.archive, n, key=f"courses/{n:03d}.mp4").id
        for n in range(count)
    ]


def copies_per_video(engine: EngineServer) -> Counter[str]:
    rt = engine.rt
    return Counter(
        str(v.meta.get(VIDEO_ID_META))
        for v in rt.store.list_videos(rt.account_id, VideoQuery(limit=1000))
    )


def test_every_video_ends_ready_or_failed_with_one_copy_each(
    flaky_engine: EngineServer, app_side: Container, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hybridvideo")
    ids = add_videos(app_side, 20)
    gone = ids[-1]
    app_side.archive.delete(app_side.catalog.get_video(gone).spec.archive_key)

    service = app_side.migrations
    run = service.start(build_scan(), MigrationOptions(concurrency=4, attempts=25))
    report = service.execute(run)
    assert report.run.state == RunState.FINISHED, report.run.error
    outcomes = {i.video_id: i.outcome for i in report.items}
    assert outcomes[gone] == Outcome.FAILED
    assert {o for v, o in outcomes.items() if v != gone} <= {Outcome.COPIED, Outcome.PRESENT}
    # The faults really happened, on copies too, and lost answers were adopted.
    injected = Counter(
        (getattr(r, "fault", None), getattr(r, "path", "").endswith("/copy"))
        for r in caplog.records
        if r.getMessage() == "engine fault injected"
    )
    assert {kind for kind, _ in injected} == {"429", "500", "500after", "timeout", "drop"}
    lost_copies = {k for k, on_copy in injected if on_copy} & {"500after", "timeout", "drop"}
    assert lost_copies, injected  # copies made whose answer never came
    assert Outcome.PRESENT in set(outcomes.values())  # a lost answer's copy was adopted
    assert report.requests > len(ids) + 5

    # Webhooks stand-in: reconcile applies what Stream says about stuck videos.
    settle(app_side)

    copies = copies_per_video(flaky_engine)
    for video_id in ids:
        video = app_side.catalog.get_video(video_id)
        if video_id == gone:
            assert video.spec.stream_status is S.ERROR
            assert "missing from the archive" in (video.spec.stream_error or "")
            assert copies[video_id] == 0
        else:
            assert video.spec.stream_status is S.READY, (video_id, video.spec)
            assert copies[video_id] == 1, (video_id, copies[video_id])
    assert sum(copies.values()) == len(ids) - 1  # no duplicates, no strays


def settle(container: Container) -> None:
    """Reconcile until nothing is PROCESSING (faults may stop a pass early)."""
    reconciler = Reconciler(container.catalog, container.stream, container.delivery)
    for _ in range(10):
        reconciler.run(ReconcileOptions(stuck_after=timedelta(0)))
        if container.catalog.summarize(VideoScan(statuses=frozenset({S.PROCESSING}))).count == 0:
            return
    raise AssertionError("videos still PROCESSING after 10 reconcile passes")
