"""SIGKILL in the middle of `hybridvideo migrate`, twice, then a rerun: 0 duplicates.

The migration runs as a real process against an engine (in this process, on loopback) in
accept-only mode with an API rate limit, and some answers held for seconds (the fault
mode's ``timeout`` kind with a hold shorter than our client's timeout): at any moment a
few copies exist in Stream whose uid the migration has not recorded yet. Each kill waits
for such a moment, so the window that makes duplicates is really hit. Nothing is shared
in memory: what survives is in the catalog file and the engine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from hybridvideo.catalog.sql import SqlCatalog, create_catalog_engine
from hybridvideo.config import load_settings
from hybridvideo.container import build_container
from hybridvideo.delivery.service import VIDEO_ID_META
from hybridvideo.domain.video import StreamStatus, VideoScan
from hybridvideo.engine.models import VideoQuery
from tests.e2e.nodes import HV
from tests.integration.engine.modes import EngineServer, engine_server
from tests.masters import add_tiny_master

pytestmark = pytest.mark.slow

VIDEOS = 70
RATE = 25  # requests per second, the engine's limit and our limiter's


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineServer]:
    with engine_server(
        tmp_path / "engine",
        engine_only=True,
        engine_accept_only=True,
        engine_api_rate_limit=RATE,
        engine_api_rate_window=1.0,
        engine_faults="timeout=0.25,hold=2,seed=3",
    ) as server:
        yield server


def app_env(data_dir: Path, engine: EngineServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYBRIDVIDEO_")}
    env.update(
        HYBRIDVIDEO_DATA_DIR=str(data_dir),
        HYBRIDVIDEO_ENGINE="false",
        HYBRIDVIDEO_STREAM_API_URL=f"{engine.base}/client/v4",
        CLOUDFLARE_ACCOUNT_ID=engine.rt.account_id,
        CLOUDFLARE_STREAM_TOKEN=engine.rt.api_token,
        HYBRIDVIDEO_STREAM_RATE_LIMIT=str(RATE),
        HYBRIDVIDEO_STREAM_RATE_WINDOW="1",
        HYBRIDVIDEO_STREAM_TIMEOUT="10",
        HYBRIDVIDEO_LOG_FORMAT="json",
    )
    return env


def prepare(data_dir: Path, engine: EngineServer) -> None:
    settings = load_settings(
        data_dir=data_dir,
        engine=False,
        stream_api_url=f"{engine.base}/client/v4",
        cloudflare_account_id=engine.rt.account_id,
        cloudflare_stream_token=engine.rt.api_token,
    )
    container = build_container(settings, serving=True)
    try:
        for n in range(VIDEOS):
            add_tiny_master(container.catalog, container.archive, n, key=f"archive/{n:03d}.mp4")
    finally:
        container.close()


def copies(engine: EngineServer) -> Counter[str]:
    rt = engine.rt
    listed = rt.store.list_videos(rt.account_id, VideoQuery(limit=1000))
    return Counter(str(v.meta.get(VIDEO_ID_META)) for v in listed)


def recorded(catalog: SqlCatalog) -> int:
    return catalog.summarize(VideoScan(has_stream_uid=True)).count


def kill_mid_run(
    env: dict[str, str], engine: EngineServer, catalog: SqlCatalog, at_least: int, log: Path
) -> None:
    """Start a run and SIGKILL it once Stream holds copies the catalog has not recorded."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*HV, "migrate", "--concurrency", "8"], env=env, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            made = sum(copies(engine).values())
            if made >= at_least and made > recorded(catalog):
                break
            assert proc.poll() is None, f"migrate ended before the kill: {log.read_text()}"
            time.sleep(0.02)
        else:
            raise AssertionError("never saw an unrecorded copy to kill on")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_twice_then_rerun_leaves_exactly_one_copy_per_master(
    engine: EngineServer, tmp_path: Path
) -> None:
    data_dir = tmp_path / "app"
    prepare(data_dir, engine)
    env = app_env(data_dir, engine)
    settings = load_settings(data_dir=data_dir)
    db = create_catalog_engine(settings.resolved_database_url)
    catalog = SqlCatalog(db)
    try:
        kill_mid_run(env, engine, catalog, 10, tmp_path / "run1.log")
        kill_mid_run(env, engine, catalog, 35, tmp_path / "run2.log")
        assert recorded(catalog) < VIDEOS  # work was really left for the rerun

        report_path = tmp_path / "report.json"
        done = subprocess.run(
            [*HV, "migrate", "--concurrency", "8", "--json", str(report_path)],
            env=env,
            capture_output=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        report = json.loads(report_path.read_text())
        # Copies made by the killed runs were adopted, not made again.
        assert report["this_pass"]["present"] >= 1, report["this_pass"]

        made = copies(engine)
        assert sum(made.values()) == VIDEOS and set(made.values()) == {1}, made
        for video in catalog.scan_videos(VideoScan(), limit=1000):
            assert video.spec.stream_status is StreamStatus.PROCESSING or (
                video.spec.stream_status is StreamStatus.READY
            )
            assert made[video.id] == 1

        status = subprocess.run(
            [*HV, "migrate", "status", "--json"], env=env, capture_output=True, timeout=60
        )
        runs = json.loads(status.stdout)["runs"]
        assert len(runs) == 3
        killed = [r for r in runs if r["recorded_state"] == "running"]
        assert len(killed) == 2  # SIGKILL left no chance to write; the heartbeat tells
    finally:
        db.dispose()
