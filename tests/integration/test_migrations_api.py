"""The admin migration API and the ``migration.run`` job, against a real server: the app
with its embedded engine on loopback (uvicorn), the SQLite catalog and journal and the
local archive in a data dir. Migrations go through ``container.migrations`` to that
engine over HTTP, as ``hybridvideo migrate`` does; the API is called over HTTP too.

A failed video is a catalog row whose master was deleted from the archive: the runner
records it as failed (``MASTER_MISSING``), and putting the master back lets a retry copy it.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from hybridvideo.api.app import create_app
from hybridvideo.catalog.sql import create_catalog_engine
from hybridvideo.catalog.sql.models import MigrationRunRow, utcnow
from hybridvideo.config import load_settings
from hybridvideo.container import Container, build_container
from hybridvideo.domain.video import StreamStatus, VideoScan, VideoState
from hybridvideo.jobs import migration_run
from hybridvideo.migrate.journal import HEARTBEAT_TIMEOUT, MigrationRun, NewRun, RunState
from hybridvideo.migrate.plan import MigrationOptions, build_scan
from tests.masters import add_tiny_master
from tests.services import free_port, serve_asgi

S = StreamStatus
MISSING_MESSAGE = "the master is missing from the archive"


@dataclass
class Served:
    container: Container
    base: str
    http: httpx.Client  # carries the admin token

    def add(self, n: int) -> VideoState:
        """A catalog row over unique bytes, as the Phase 1 import records masters."""
        container = self.container
        return add_tiny_master(container.catalog, container.archive, n, salt=self.base)

    def lose_master(self, video: VideoState) -> bytes:
        key = video.spec.archive_key
        data = b"".join(self.container.archive.open(key))
        self.container.archive.delete(key)
        return data

    def restore_master(self, video: VideoState, data: bytes) -> None:
        self.container.archive.put(video.spec.archive_key, io.BytesIO(data))

    def migrate(self, concurrency: int = 2) -> MigrationRun:
        service = self.container.migrations
        run = service.start(build_scan(), MigrationOptions(concurrency=concurrency))
        return service.execute(run).run

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(f"/api/v1/migrations{path}", params=params)

    def ok(self, path: str, **params: Any) -> Any:
        response = self.get(path, **params)
        assert response.status_code == 200, response.text
        return response.json()

    def retry(self, run_id: str) -> httpx.Response:
        return self.http.post(f"/api/v1/migrations/{run_id}/retry")

    def age_heartbeat(self, run_id: str, by: timedelta) -> None:
        """What a SIGKILLed run looks like: still ``running``, no heartbeat for a while."""
        engine = create_catalog_engine(self.container.settings.resolved_database_url)
        try:
            with engine.begin() as conn:
                conn.execute(
                    update(MigrationRunRow)
                    .where(MigrationRunRow.id == run_id)
                    .values(heartbeat_at=utcnow() - by)
                )
        finally:
            engine.dispose()

    def migration_jobs(self) -> list[dict[str, Any]]:
        """Payloads of ``migration.run`` jobs waiting or scheduled (huey underneath; the
        engine's own ``engine.ingest`` jobs for the copies share the queue)."""
        huey = self.container.queue.huey  # type: ignore[attr-defined]
        tasks = list(huey.pending()) + list(huey.scheduled())
        return [dict(task.kwargs) for task in tasks if task.name == migration_run.NAME]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    container = build_container(
        load_settings(data_dir=tmp_path / "data", public_url=public), serving=True
    )
    assert container.engine is not None  # embedded defaults: the engine is served here
    try:
        with (
            serve_asgi(create_app(container, run_worker=False), port=port) as base,
            httpx.Client(
                base_url=base,
                headers={"Authorization": f"Bearer {container.admin_token}"},
                timeout=30,
            ) as http,
        ):
            yield Served(container, base, http)
    finally:
        container.close()


def one_failure(served: Served) -> tuple[MigrationRun, list[VideoState], bytes]:
    """A finished run of three videos: two copied, the third failed (master missing)."""
    videos = [served.add(n) for n in range(3)]
    lost = served.lose_master(videos[2])
    run = served.migrate()
    assert run.state == RunState.FINISHED
    assert dict(run.counts) == {"copied": 2, "failed": 1}
    return run, videos, lost


def test_runs_are_listed_newest_first_with_counts_and_effective_state(served: Served) -> None:
    first, _, _ = one_failure(served)
    killed = served.container.runs.start_run(NewRun(filters={"collection": "x"}, total=5))
    served.age_heartbeat(killed.id, HEARTBEAT_TIMEOUT + timedelta(seconds=5))
    live = served.container.runs.start_run(NewRun(filters={}, total=1))

    page = served.ok("")
    assert [r["id"] for r in page["items"]] == [live.id, killed.id, first.id]
    assert (page["limit"], page["offset"], page["hasMore"]) == (20, 0, False)
    newest, stale, done = page["items"]
    assert (newest["state"], newest["recordedState"]) == ("running", "running")
    assert (stale["state"], stale["recordedState"]) == ("interrupted", "running")
    assert stale["total"] == 5 and stale["filters"] == {"collection": "x"}
    assert done["state"] == "finished" and done["recordedState"] == "finished"
    assert done["counts"] == {"copied": 2, "present": 0, "failed": 1, "deferred": 0}
    assert (done["total"], done["done"], done["error"], done["parentId"]) == (3, 3, None, None)
    assert done["filters"]["statuses"] == ["NOT_DELIVERED"]
    assert done["options"] == {"concurrency": 2, "attempts": 6, "limit": None}
    for stamp in ("createdAt", "startedAt", "finishedAt", "heartbeatAt"):
        assert done[stamp] is not None, stamp
    assert done["startedAt"] <= done["finishedAt"]
    assert stale["finishedAt"] is None

    one = served.ok("", limit=1, offset=1)
    assert [r["id"] for r in one["items"]] == [killed.id] and one["hasMore"] is True
    last = served.ok("", limit=2, offset=1)
    assert [r["id"] for r in last["items"]] == [killed.id, first.id]
    assert last["hasMore"] is False
    assert served.ok("", offset=3)["items"] == []

    assert served.ok(f"/{first.id}") == done
    assert served.ok(f"/{killed.id}")["state"] == "interrupted"


def test_items_filtered_by_outcome_with_titles_and_current_status(served: Served) -> None:
    run, videos, _ = one_failure(served)
    failed = served.ok(f"/{run.id}/items", outcome="failed")
    assert (failed["runId"], failed["outcome"], failed["total"]) == (run.id, "failed", 1)
    (item,) = failed["items"]
    assert item["videoId"] == videos[2].id and item["title"] == "Lesson 2"
    assert (item["outcome"], item["code"], item["message"]) == (
        "failed",
        "MASTER_MISSING",
        MISSING_MESSAGE,
    )
    assert item["streamStatus"] == "ERROR" and item["streamUid"] is None
    assert item["updatedAt"] is not None

    copied = served.ok(f"/{run.id}/items", outcome="copied")
    assert copied["total"] == 2
    assert {i["videoId"] for i in copied["items"]} == {videos[0].id, videos[1].id}
    for entry in copied["items"]:
        video = served.container.catalog.get_video(entry["videoId"])
        assert entry["streamUid"] == video.spec.stream_uid is not None
        assert entry["streamStatus"] == "PROCESSING" and entry["title"] == video.title
        assert entry["code"] is None and entry["requests"] >= 1

    everything = served.ok(f"/{run.id}/items")
    assert everything["outcome"] is None and everything["total"] == 3
    assert len(everything["items"]) == 3
    second = served.ok(f"/{run.id}/items", limit=1, offset=1)
    assert second["items"] == everything["items"][1:2] and second["total"] == 3
    assert served.ok(f"/{run.id}/items", outcome="deferred") == {
        "runId": run.id,
        "outcome": "deferred",
        "items": [],
        "total": 0,
        "limit": 100,
        "offset": 0,
    }


def test_retry_queues_a_run_that_the_job_executes(served: Served) -> None:
    parent, videos, lost = one_failure(served)
    assert served.migration_jobs() == []

    answer = served.retry(parent.id)
    assert answer.status_code == 202, answer.text
    queued = answer.json()
    assert answer.headers["location"] == f"/api/v1/migrations/{queued['id']}"
    assert (queued["state"], queued["parentId"], queued["total"]) == ("queued", parent.id, 1)
    assert queued["startedAt"] is None and queued["counts"]["failed"] == 0
    assert queued["filters"]["in_run"] == [parent.id, "failed"]
    assert served.migration_jobs() == [{"run_id": queued["id"]}]
    assert served.ok("")["items"][0]["id"] == queued["id"]

    # A second click while that one waits: refused, naming the run on its way.
    again = served.retry(parent.id)
    assert again.status_code == 409
    error = again.json()["error"]
    assert error["code"] == "CONFLICT" and queued["id"] in error["message"]
    assert error["request_id"] == again.headers["x-request-id"]

    served.restore_master(videos[2], lost)
    assert migration_run.run(served.container, queued["id"]) == "finished"
    done = served.ok(f"/{queued['id']}")
    assert done["state"] == "finished" and done["startedAt"] is not None
    assert done["counts"] == {"copied": 1, "present": 0, "failed": 0, "deferred": 0}
    (item,) = served.ok(f"/{queued['id']}/items")["items"]
    assert item["videoId"] == videos[2].id and item["streamStatus"] == "PROCESSING"
    assert served.container.catalog.get_video(videos[2].id).spec.stream_status is S.PROCESSING
    # The parent keeps its own record: the video failed in that run. Its failures have
    # all been delivered since, so retrying it again would send nothing.
    assert served.ok(f"/{parent.id}")["counts"]["failed"] == 1
    late = served.retry(parent.id)
    assert late.status_code == 409
    assert late.json()["error"]["message"] == (
        f"the failed videos of migration run {parent.id} were all delivered since"
    )
    assert len(served.ok("")["items"]) == 2  # no run was recorded for it

    # Done runs are not run again (a duplicated job is a no-op), and a run without
    # failures has nothing to retry.
    assert migration_run.run(served.container, queued["id"]) == "skipped"
    nothing = served.retry(queued["id"])
    assert nothing.status_code == 409
    assert nothing.json()["error"] == {
        "code": "CONFLICT",
        "message": f"migration run {queued['id']} has no failed videos to retry",
        "request_id": nothing.headers["x-request-id"],
    }


def test_the_embedded_worker_runs_a_queued_retry(served: Served) -> None:
    parent, videos, lost = one_failure(served)
    served.restore_master(videos[2], lost)
    answer = served.retry(parent.id)
    assert answer.status_code == 202
    run_id = answer.json()["id"]
    handle = served.container.queue.start_background(2)
    try:
        deadline = time.monotonic() + 60
        while served.ok(f"/{run_id}")["state"] != "finished":
            assert time.monotonic() < deadline, served.ok(f"/{run_id}")
            time.sleep(0.1)
    finally:
        assert handle.stop(timeout=30)
    assert served.ok(f"/{run_id}")["counts"]["copied"] == 1
    assert served.container.catalog.get_video(videos[2].id).spec.stream_uid is not None


def test_a_run_stopped_by_shutdown_is_queued_again_and_resumes(served: Served) -> None:
    count = 60
    for n in range(count):
        served.add(n)
    run = served.container.migrations.start(
        build_scan(), MigrationOptions(concurrency=1), queued=True
    )
    results: list[str] = []
    worker = threading.Thread(
        target=lambda: results.append(migration_run.run(served.container, run.id))
    )
    worker.start()
    # Stop it once the first copy is in the catalog (the journal is written in batches),
    # with dozens of videos left to send.
    sent = VideoScan(has_stream_uid=True)
    deadline = time.monotonic() + 30
    while served.container.catalog.summarize(sent).count < 1:
        assert time.monotonic() < deadline and worker.is_alive()
        time.sleep(0.002)
    assert migration_run.stop_runs(served.container) == 1
    worker.join(30)
    assert results == ["requeued"]
    stopped = served.ok(f"/{run.id}")
    assert stopped["state"] == "interrupted" and stopped["error"] == "stopped by the operator"
    assert 1 <= stopped["done"] < count
    assert served.migration_jobs() == [{"run_id": run.id}]

    # The next worker resumes it where it stopped.
    assert migration_run.run(served.container, run.id) == "finished"
    finished = served.ok(f"/{run.id}")
    assert finished["counts"]["copied"] == count and finished["total"] == count
    assert migration_run.stop_runs(served.container) == 0  # nothing left running


def test_routes_need_the_admin_token(served: Served) -> None:
    run, _, _ = one_failure(served)
    calls = [
        ("GET", "/api/v1/migrations"),
        ("GET", f"/api/v1/migrations/{run.id}"),
        ("GET", f"/api/v1/migrations/{run.id}/items"),
        ("POST", f"/api/v1/migrations/{run.id}/retry"),
    ]
    for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": "Basic x"}):
        for method, path in calls:
            response = httpx.request(method, served.base + path, headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["error"]["code"] == "UNAUTHORIZED"
    assert served.ok(f"/{run.id}")["counts"]["failed"] == 1  # nothing was queued
    assert served.migration_jobs() == []


def test_unknown_runs_are_404(served: Served) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    for response in (
        served.get(f"/{unknown}"),
        served.get(f"/{unknown}/items", outcome="failed"),
        served.retry(unknown),
    ):
        assert response.status_code == 404, response.text
        error = response.json()["error"]
        assert error["code"] == "NOT_FOUND"
        assert error["message"] == f"migration run {unknown} not found"


@pytest.mark.parametrize(
    ("path", "params", "names"),
    [
        ("", {"limit": 0}, "limit"),
        ("", {"limit": 101}, "limit"),
        ("", {"offset": -1}, "offset"),
        ("", {"limit": "ten"}, "limit"),
        ("/{id}/items", {"outcome": "lost"}, "outcome"),
        ("/{id}/items", {"limit": 501}, "limit"),
        ("/{id}/items", {"offset": "x"}, "offset"),
        ("/not%20a%20run!", {}, "run_id"),
        ("/" + "a" * 37, {}, "run_id"),
    ],
)
def test_bad_query_parameters_are_clear_422s(
    served: Served, path: str, params: dict[str, Any], names: str
) -> None:
    run = served.container.runs.start_run(NewRun(filters={}, state=RunState.QUEUED))
    response = served.get(path.format(id=run.id), **params)
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "request_id"}
    assert error["code"] == "INVALID_INPUT" and error["message"].startswith(f"{names}: ")
    for internal in ("Traceback", "pydantic", "sqlalchemy", 'File "'):
        assert internal not in error["message"]
