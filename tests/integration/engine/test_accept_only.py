"""Accept-only mode: copies and uploads become ready with nothing fetched or encoded.

The copies name a source on a port nothing listens on, and the upload is not a video: in
the normal mode both would end in ``error`` (fetch failed, not a video), so ``ready``
proves that nothing was fetched or probed, let alone encoded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hybridvideo.catalog.sql.engine import create_catalog_engine
from hybridvideo.config import load_settings
from hybridvideo.container import build_container
from hybridvideo.engine import migrate
from hybridvideo.engine.models import VideoQuery
from hybridvideo.engine.store import EngineStore, relax_sqlite_durability
from hybridvideo.stream.base import StreamVideo
from hybridvideo.stream.cloudflare import CloudflareStream
from hybridvideo.stream.webhooks import MemoryReplayCache, WebhookVerifier
from tests.integration.engine.modes import EngineServer, HookReceiver, engine_server, hook_receiver

NOWHERE = "http://127.0.0.1:9/masters/clip.mp4"


def wait_finished(stream: CloudflareStream, uid: str, timeout: float = 30) -> StreamVideo:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        video = stream.get(uid)
        if video.finished:
            return video
        time.sleep(0.05)
    raise AssertionError(f"{uid} did not finish: {stream.get(uid)}")


def wait_hooks(receiver: HookReceiver, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(receiver.received) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(receiver.received) >= count, receiver.received


def assert_accepted(server: EngineServer, video: StreamVideo) -> None:
    assert video.state == "ready" and video.ready_to_stream and video.pct_complete == 100.0
    assert video.error_code in (None, "") and video.duration is None
    assert not server.rt.video_dir(video.uid).exists()  # nothing fetched, nothing made
    for rest in ("manifest/video.m3u8", "manifest/video.mpd", "thumbnails/thumbnail.jpg"):
        answer = httpx.get(f"{server.base}/delivery/{video.uid}/{rest}")
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "NOT_FOUND"


def test_copies_become_ready_and_the_webhook_is_sent(tmp_path: Path) -> None:
    with (
        hook_receiver() as (hook_url, receiver),
        engine_server(tmp_path, run_worker=True, engine_accept_only=True) as server,
    ):
        stream = server.stream()
        secret = stream.set_webhook(hook_url).secret
        made = [stream.copy_from_url(NOWHERE, name=f"clip {i}") for i in range(3)]
        assert {m.state for m in made} == {"downloading"}  # as Cloudflare answers a copy
        for m in made:
            assert_accepted(server, wait_finished(stream, m.uid))
        wait_hooks(receiver, 3)
        verifier = WebhookVerifier(secret, replay_cache=MemoryReplayCache())
        hooked = {}
        for body, signature in receiver.received:
            verifier.verify(signature, body)
            document = json.loads(body)
            hooked[document["uid"]] = document
        assert set(hooked) == {m.uid for m in made}
        assert all(d["status"]["state"] == "ready" and d["readyToStream"] for d in hooked.values())
        assert all(d["duration"] == -1 for d in hooked.values())


def test_a_finished_upload_is_ready_without_being_probed(tmp_path: Path) -> None:
    with (
        engine_server(tmp_path, run_worker=True, engine_accept_only=True) as server,
        httpx.Client(timeout=10) as http,
    ):
        data = b"not a video at all" * 10
        created = http.post(
            server.api,
            headers={**server.auth, "Tus-Resumable": "1.0.0", "Upload-Length": str(len(data))},
        )
        assert created.status_code == 201
        patched = http.patch(
            created.headers["location"],
            content=data,
            headers={
                **server.auth,
                "Tus-Resumable": "1.0.0",
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert patched.status_code == 204
        video = wait_finished(server.stream(), created.headers["stream-media-id"])
        assert_accepted(server, video)
        assert video.size == len(data)


def test_a_separate_worker_sends_the_webhooks(tmp_path: Path) -> None:
    """No worker in the API process: the video is ready all the same (the request made it
    so), and a separate worker, without the setting, delivers the webhook."""
    with (
        hook_receiver() as (hook_url, receiver),
        engine_server(tmp_path, engine_accept_only=True) as server,
    ):
        server.stream().set_webhook(hook_url)
        made = server.stream().copy_from_url(NOWHERE, name="clip")
        assert made.state == "downloading"
        assert_accepted(server, server.stream().get(made.uid))
        time.sleep(0.2)
        assert receiver.received == []  # queued, and nobody runs the queue yet
        worker_settings = load_settings(data_dir=tmp_path / "data", engine=True)
        assert not worker_settings.engine_accept_only
        worker = build_container(worker_settings)  # what `hybridvideo worker` builds
        handle = worker.queue.start_background(1)
        try:
            wait_hooks(receiver, 1)
        finally:
            handle.stop(timeout=10)
            worker.close()
        assert json.loads(receiver.received[0][0])["uid"] == made.uid


@pytest.mark.parametrize("engine_only", [False, True], ids=["serve", "engine"])
def test_the_modes_are_off_by_default(tmp_path: Path, engine_only: bool) -> None:
    settings = load_settings(data_dir=tmp_path / "data", engine=True)
    assert settings.engine_api_rate_limit == 0 and settings.engine_faults == ""
    assert not settings.engine_accept_only
    with engine_server(tmp_path, engine_only=engine_only, run_worker=True) as server:
        assert server.rt.faults is None and not server.rt.accept_only
        made = server.stream().copy_from_url(NOWHERE, name="clip")
        video = wait_finished(server.stream(), made.uid)
        assert video.state == "error" and video.error_code == "ERR_FETCH_ORIGIN_ERROR"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EngineStore]:
    url = f"sqlite:///{tmp_path / 'engine.db'}"
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_db")
    migrate.upgrade(url)
    sql = create_catalog_engine(url)
    relax_sqlite_durability(sql)  # what accept-only mode runs on (a no-op on PostgreSQL)
    try:
        yield EngineStore(sql)
    finally:
        sql.dispose()


def test_accept_finishes_only_unfinished_videos(engine_store: EngineStore) -> None:
    account = "c" * 32
    store = engine_store
    waiting = store.create_video(account, source_url=NOWHERE)
    assert store.accept(waiting.uid) is True
    video = store.get_video(waiting.uid)
    assert (video.state, video.pct_complete, video.ready_to_stream) == (
        "ready",
        "100.000000",
        True,
    )
    assert video.ready_to_stream_at is not None and video.uploaded is not None
    assert video.ready_to_stream_at.tzinfo is not None
    assert video.modified > waiting.modified and video.duration == -1.0
    assert store.list_videos(account, VideoQuery(status="ready")) == [video]
    assert store.accept(waiting.uid) is False  # a repeat changes nothing
    assert store.get_video(waiting.uid) == video
    failed = store.create_video(account, source_url=NOWHERE)
    store.set_processing_state(failed.uid, "error", error=("ERR_NON_VIDEO", "no"))
    assert store.accept(failed.uid) is False
    assert store.get_video(failed.uid).state == "error"
    assert store.accept("0" * 32) is False  # gone
