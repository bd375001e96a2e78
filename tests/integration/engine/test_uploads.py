"""The engine's tus uploads in process: expiry, the sweep, and hand-offs that go wrong.

The engine's control API and its upload URLs are mounted on an app with our global error
handlers (as in ``serve``); the upload store, the engine's tables and the ingest job are
the real ones. The happy paths over real HTTP are in ``tests/e2e/test_engine_tus.py``.
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hybridvideo.api import errors as app_errors
from hybridvideo.container import Container
from hybridvideo.engine.api import build_engine_router
from hybridvideo.engine.runtime import EngineRuntime
from hybridvideo.engine.uploads import (
    EXPIRED_TEXT,
    HANDOFF_GRACE,
    EngineUploads,
    build_engine_uploads,
)
from hybridvideo.jobs import engine_upload_sweep
from hybridvideo.jobs.engine_ingest import ingest
from tests.integration.engine.runtime import engine_runtime

ACCOUNT = "c" * 32


@dataclass
class Engine:
    rt: EngineRuntime
    http: TestClient
    uploads: EngineUploads
    queued: list[str] = field(default_factory=list)
    notified: list[str] = field(default_factory=list)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.rt.api_token}"}

    def create(self, length: int, metadata: str | None = None) -> tuple[str, str]:
        headers = {"Tus-Resumable": "1.0.0", "Upload-Length": str(length), **self.auth}
        if metadata is not None:
            headers["Upload-Metadata"] = metadata
        answer = self.http.post(f"/client/v4/accounts/{ACCOUNT}/stream", headers=headers)
        assert answer.status_code == 201, answer.text
        return answer.headers["stream-media-id"], answer.headers["location"]

    def tus(self, method: str, url: str, body: bytes = b"", offset: int = 0) -> httpx2.Response:
        headers = {"Tus-Resumable": "1.0.0", **self.auth}
        if method == "PATCH":
            headers |= {
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
            }
        return self.http.request(method, url, headers=headers, content=body)


@pytest.fixture
def make_engine(tmp_path: Path) -> Iterator[Callable[..., Engine]]:
    """Build the engine once per test; ``enqueue`` replaces the recording ingest queue."""
    with contextlib.ExitStack() as stack:

        def make(enqueue: Callable[[str], None] | None = None) -> Engine:
            rt = stack.enter_context(engine_runtime(tmp_path, ACCOUNT, preset="ultrafast"))
            queued: list[str] = []
            notified: list[str] = []
            uploads = build_engine_uploads(
                rt, enqueue_ingest=enqueue or queued.append, notify=notified.append
            )
            app = FastAPI()
            app_errors.install(app)
            app.include_router(uploads.router)
            app.include_router(
                build_engine_router(
                    store=rt.store,
                    account_id=ACCOUNT,
                    api_token=rt.api_token,
                    delivery_base="http://127.0.0.1:1/delivery",
                    enqueue_ingest=queued.append,
                    create_upload=uploads.create,
                )
            )
            http = stack.enter_context(TestClient(app, raise_server_exceptions=False))
            return Engine(rt, http, uploads, queued, notified)

        yield make


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_an_expired_upload_is_refused_then_swept(make_engine: Callable[..., Engine]) -> None:
    eng = make_engine()
    soon = datetime.now(UTC) + timedelta(seconds=3)
    uid, location = eng.create(100, f"expiry {b64(soon.isoformat())}")
    assert eng.rt.store.get_video(uid).upload_expiry == soon
    assert eng.tus("HEAD", location).status_code == 200
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.1)
    assert eng.tus("PATCH", location, b"x" * 100).status_code == 410
    assert eng.tus("HEAD", location).status_code == 410
    events = eng.uploads.events
    assert events.sweep() == 0  # an upload touched within HANDOFF_GRACE may be mid-PATCH
    assert events.sweep(datetime.now(UTC) + HANDOFF_GRACE) == 2  # the upload, its video
    assert list(events.store.list_uploads()) == []
    video = eng.rt.store.get_video(uid)
    assert (video.state, video.error_reason_code, video.error_reason_text) == (
        "error",
        "ERR_UNKNOWN",
        EXPIRED_TEXT,
    )
    assert eng.notified == [uid] and eng.queued == []
    assert events.sweep(datetime.now(UTC) + HANDOFF_GRACE) == 0  # nothing left to do


def test_the_sweep_fails_a_pending_video_whose_upload_vanished(
    make_engine: Callable[..., Engine],
) -> None:
    eng = make_engine()
    uid, location = eng.create(100)
    upload_id = location.rsplit("/", 1)[1]
    eng.uploads.events.store.terminate(upload_id)  # e.g. a wiped uploads folder
    events = eng.uploads.events
    assert events.sweep() == 0  # not expired yet (24 h for uploads made with the token)
    assert events.sweep(datetime.now(UTC) + timedelta(hours=25)) == 1
    assert eng.rt.store.get_video(uid).state == "error" and eng.notified == [uid]


def test_the_sweep_redoes_a_lost_hand_off_and_ingest_encodes_the_upload(
    make_engine: Callable[..., Engine], sample_video: Path
) -> None:
    eng = make_engine()
    data = sample_video.read_bytes()
    uid, location = eng.create(len(data))
    upload_id = location.rsplit("/", 1)[1]
    store = eng.uploads.events.store
    # The bytes arrive, but the process dies before `completed` runs.
    assert store.write(upload_id, 0, iter([data]), len(data)) == len(data)
    events = eng.uploads.events
    assert events.sweep() == 0 and eng.queued == []  # a PATCH may still be handing it off
    assert events.sweep(datetime.now(UTC) + HANDOFF_GRACE) == 1
    assert eng.queued == [uid] and list(store.list_uploads()) == []
    queued = eng.rt.store.get_video(uid)
    assert (queued.state, queued.size) == ("queued", len(data)) and queued.uploaded
    assert eng.rt.source_path(uid).read_bytes() == data
    # The normal ingest job takes the local source: no URL, no fetch.
    assert ingest(eng.rt, uid) == "ready"
    assert eng.rt.store.get_video(uid).ready_to_stream
    assert not eng.rt.source_path(uid).exists()


def test_a_video_deleted_mid_upload_drops_the_upload(make_engine: Callable[..., Engine]) -> None:
    eng = make_engine()
    uid, location = eng.create(10)
    deleted = eng.http.delete(f"/client/v4/accounts/{ACCOUNT}/stream/{uid}", headers=eng.auth)
    assert deleted.status_code == 200
    assert eng.tus("PATCH", location, b"0123456789").status_code == 204
    assert eng.queued == [] and list(eng.uploads.events.store.list_uploads()) == []
    assert not eng.rt.source_path(uid).exists()


def test_a_failed_enqueue_ends_in_error_and_tells_the_webhook(
    make_engine: Callable[..., Engine],
) -> None:
    def broken(_uid: str) -> Any:
        raise ConnectionError("queue down")

    eng = make_engine(enqueue=broken)
    uid, location = eng.create(10)
    assert eng.tus("PATCH", location, b"0123456789").status_code == 204
    video = eng.rt.store.get_video(uid)
    assert (video.state, video.error_reason_code) == ("error", "ERR_UNKNOWN")
    assert eng.notified == [uid]


def test_storage_limit_refuses_creation(tmp_path: Path) -> None:
    with engine_runtime(tmp_path, ACCOUNT) as rt:
        uploads = build_engine_uploads(
            rt, enqueue_ingest=lambda _uid: None, storage_minutes_limit=0
        )
        app = FastAPI()
        app.include_router(
            build_engine_router(
                store=rt.store,
                account_id=ACCOUNT,
                api_token=rt.api_token,
                delivery_base="http://127.0.0.1:1/delivery",
                enqueue_ingest=lambda _uid: None,
                create_upload=uploads.create,
            )
        )
        with TestClient(app) as http:
            answer = http.post(
                f"/client/v4/accounts/{ACCOUNT}/stream",
                headers={
                    "Tus-Resumable": "1.0.0",
                    "Upload-Length": "10",
                    "Authorization": f"Bearer {rt.api_token}",
                },
            )
        assert answer.status_code == 413 and answer.json()["errors"][0]["code"] == 10011
        assert list(uploads.events.store.list_uploads()) == []


def test_the_periodic_job_sweeps_with_the_containers_parts(container: Container) -> None:
    """``engine.upload_sweep`` over the composition root's engine, queue and webhook."""
    rt = container.engine
    assert rt is not None
    past = datetime.now(UTC) - timedelta(minutes=1)
    rt.store.put_webhook(rt.account_id, "http://127.0.0.1:1/hook")
    uid = rt.store.create_video(rt.account_id, state="pendingupload", upload_expiry=past).uid
    waiting = rt.store.create_video(rt.account_id, state="pendingupload").uid
    before = container.queue.pending()
    assert engine_upload_sweep.sweep(container) == 1
    assert rt.store.get_video(uid).error_reason_text == EXPIRED_TEXT
    assert rt.store.get_video(waiting).state == "pendingupload"  # no deadline: left alone
    assert container.queue.pending() == before + 1  # the webhook delivery
    assert engine_upload_sweep.sweep(container) == 0
