"""Delivery end to end: catalog → presigned master → the real engine → signed webhook → READY.

The server runs for real on loopback (uvicorn, the engine mounted, the embedded worker):
the engine fetches the master from the archive's signed URL with HEAD and ranged GETs,
encodes it with ffmpeg, and posts its signed webhook to our own ``/webhooks/stream``.
The last test drives the real `hybridvideo serve` and CLI processes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from hybridvideo.api.app import create_app
from hybridvideo.archive.local import LocalArchive
from hybridvideo.config import load_settings
from hybridvideo.container import Container, build_container, build_stream, secret_from
from hybridvideo.delivery.service import VIDEO_ID_META, DeliveryService
from hybridvideo.delivery.webhook_secrets import WebhookSecretStore, subscribe_embedded_engine
from hybridvideo.domain.video import MediaInfo, NewVideo, StreamStatus, VideoState
from hybridvideo.jobs import deliver_video
from hybridvideo.stream.base import StreamProvider
from hybridvideo.stream.webhooks import sign_webhook
from tests.conftest import make_clip
from tests.services import free_port, serve_asgi

pytestmark = pytest.mark.slow
S = StreamStatus
FINISHED = (S.READY, S.ERROR)


@dataclass
class Server:
    base: str
    container: Container
    stream: StreamProvider
    admin: dict[str, str]
    clips: Path
    made: int = 0

    def add_clip(self) -> VideoState:
        """A distinct tiny master (a new length each time, so a new sha256)."""
        self.made += 1
        clip = make_clip(self.clips / f"clip{self.made}.mp4", seconds=0.8 + 0.2 * self.made)
        return self.container.videos.add_file(clip).video

    def add_raw(self, data: bytes, title: str) -> VideoState:
        """A catalog row over bytes never probed, as the Phase 1 migration records them."""
        sha = hashlib.sha256(data).hexdigest()
        key = f"masters/{sha[:2]}/{sha}.mp4"
        self.container.archive.put(key, io.BytesIO(data), content_type="video/mp4")
        media = MediaInfo(
            size=len(data), sha256=sha, format="mp4", duration=None, width=None, height=None
        )
        new = NewVideo(
            title=title,
            collection="work",
            archive_bucket=self.container.archive.bucket,
            archive_key=key,
            media=media,
        )
        return self.container.catalog.add_video(new)

    def video(self, video_id: str) -> VideoState:
        return self.container.catalog.get_video(video_id)

    def wait(
        self, video_id: str, until: Callable[[VideoState], bool], timeout: float = 90
    ) -> VideoState:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            video = self.video(video_id)
            if until(video):
                return video
            time.sleep(0.2)
        raise AssertionError(f"{video_id} never got there: {self.video(video_id)}")

    def finished(self, video_id: str) -> VideoState:
        return self.wait(video_id, lambda v: v.spec.stream_status in FINISHED)

    def events(self, video_id: str) -> list[tuple[str, dict[str, object]]]:
        return [(e.kind, e.data) for e in self.container.catalog.events(video_id)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("delivery-e2e")
    (root / "clips").mkdir()
    port = free_port()
    settings = load_settings(
        data_dir=root / "data", port=port, public_url=f"http://127.0.0.1:{port}"
    )
    container = build_container(settings, serving=True)
    assert subscribe_embedded_engine(container) == f"http://127.0.0.1:{port}/webhooks/stream"
    stream = build_stream(settings, max_retries=0)
    with serve_asgi(create_app(container, run_worker=True), port=port) as base:
        yield Server(
            base=base,
            container=container,
            stream=stream,
            admin={"Authorization": f"Bearer {container.admin_token}"},
            clips=root / "clips",
        )
    container.close()


def test_a_delivered_video_becomes_ready_through_the_engines_signed_webhook(
    server: Server,
) -> None:
    video = server.add_clip()
    answer = httpx.post(f"{server.base}/api/v1/videos/{video.id}/deliver", headers=server.admin)
    assert answer.status_code == 202
    done = server.finished(video.id)
    assert done.spec.stream_status is S.READY and done.spec.stream_error is None
    uid = done.spec.stream_uid
    assert uid is not None
    ready = [data for kind, data in server.events(video.id) if kind == "delivery_ready"]
    assert ready == [
        {
            "stream_uid": uid,
            "source": "webhook",
            "duration": pytest.approx(done.spec.duration, abs=0.1),
            "width": 160,
            "height": 90,
            "modified": copy_modified(server, uid),
        }
    ]
    copy = server.stream.get(uid)
    assert copy.state == "ready" and copy.meta[VIDEO_ID_META] == video.id
    assert copy.meta["name"] == video.title
    # The engine fetched the archive's own signed URL of the master.
    assert f"/archive/signed/{video.spec.archive_key}" in copy.meta["downloaded-from"]


def test_repeated_delivery_makes_one_stream_video(server: Server) -> None:
    video = server.add_clip()
    for _ in range(3):
        deliver_video.enqueue(server.container.queue, video.id)
        answer = httpx.post(f"{server.base}/api/v1/videos/{video.id}/deliver", headers=server.admin)
        assert answer.status_code == 202
    server.container.delivery.deliver(video.id)
    done = server.finished(video.id)
    assert done.spec.stream_status is S.READY
    server.container.delivery.deliver(video.id)  # READY: nothing to do
    copies = [v.uid for v in server.stream.list() if v.meta.get(VIDEO_ID_META) == video.id]
    assert copies == [done.spec.stream_uid]


def test_a_master_that_is_not_a_video_ends_in_error_with_cloudflares_code(
    server: Server,
) -> None:
    video = server.add_raw(b"this is a text file, not a video\n" * 200, "notes")
    deliver_video.enqueue(server.container.queue, video.id)
    done = server.finished(video.id)
    assert done.spec.stream_status is S.ERROR
    assert (done.spec.stream_error or "").startswith("ERR_NON_VIDEO: ")
    failed = [data for kind, data in server.events(video.id) if kind == "delivery_error"]
    assert failed and failed[-1]["code"] == "ERR_NON_VIDEO" and failed[-1]["source"] == "webhook"


def test_an_unreachable_master_url_ends_in_error_with_cloudflares_code(server: Server) -> None:
    video = server.add_clip()
    settings = server.container.settings
    secret = secret_from(settings)
    assert secret is not None
    # The same archive folder, but its signed URLs point at a port nobody listens on.
    unreachable = LocalArchive(
        settings.resolved_archive_dir,
        base_url=f"http://127.0.0.1:{free_port()}",
        secret=secret.encode(),
    )
    service = DeliveryService(
        catalog=server.container.catalog, archive=unreachable, stream=server.stream
    )
    assert service.deliver(video.id).spec.stream_status is S.PROCESSING
    done = server.finished(video.id)
    assert done.spec.stream_status is S.ERROR
    assert (done.spec.stream_error or "").startswith("ERR_FETCH_ORIGIN_ERROR")


def test_forged_or_stale_webhooks_are_refused_and_change_nothing(server: Server) -> None:
    video = server.add_clip()
    server.container.delivery.deliver(video.id)
    done = server.finished(video.id)
    assert done.spec.stream_status is S.READY
    body = json.dumps(
        {
            "uid": done.spec.stream_uid,
            "status": {"state": "error", "errorReasonCode": "ERR_UNKNOWN"},
        }
    ).encode()
    secret = WebhookSecretStore.for_settings(server.container.settings).secrets()[0]
    url = f"{server.base}/webhooks/stream"
    for signature in (
        sign_webhook("not-the-secret-0123456789", body),
        sign_webhook(secret, body.replace(b"error", b"ready")),  # signed a different body
        sign_webhook(secret, body, timestamp=int(time.time()) - 3600),  # captured an hour ago
    ):
        answer = httpx.post(url, content=body, headers={"Webhook-Signature": signature})
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "INVALID_WEBHOOK"
    assert server.video(video.id) == done


def test_polling_finishes_a_delivery_when_no_webhook_arrives(server: Server) -> None:
    rt = server.container.engine
    assert rt is not None
    rt.store.delete_webhook(rt.account_id)
    try:
        video = server.add_clip()
        uid = server.container.delivery.deliver(video.id).spec.stream_uid or ""
        deadline = time.monotonic() + 90
        while not server.stream.get(uid).finished and time.monotonic() < deadline:
            time.sleep(0.2)
        assert server.stream.get(uid).state == "ready"
        assert server.video(video.id).spec.stream_status is S.PROCESSING  # nobody told us
        report = server.container.delivery.poll_processing(older_than=timedelta(0))
        assert report.changed >= 1
        assert server.video(video.id).spec.stream_status is S.READY
        sources = [
            data["source"] for kind, data in server.events(video.id) if kind == "delivery_ready"
        ]
        assert sources == ["poll"]
    finally:
        subscribe_embedded_engine(server.container)


# -- the real processes ----------------------------------------------------------------

HV = [sys.executable, "-m", "hybridvideo.cli"]


def env_for(data_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HYBRIDVIDEO_", "CLOUDFLARE_"))
        and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update({"HYBRIDVIDEO_DATA_DIR": str(data_dir), "HYBRIDVIDEO_LOG_FORMAT": "json"})
    return env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HV, *args], env=env, capture_output=True, text=True, timeout=120)


def show(env: dict[str, str], video_id: str) -> dict[str, str]:
    shown = cli(env, "videos", "show", video_id, "--json")
    assert shown.returncode == 0, shown.stderr
    spec: dict[str, str] = json.loads(shown.stdout)["spec"]
    return spec


def wait_for_status(env: dict[str, str], video_id: str, timeout: float = 90) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        spec = show(env, video_id)
        if spec["streamStatus"] in ("READY", "ERROR"):
            return spec
        time.sleep(0.5)
    raise AssertionError(f"{video_id} still {show(env, video_id)}")


def test_serve_subscribes_itself_and_the_cli_delivers(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    env = {**env_for(data_dir), "HYBRIDVIDEO_PORT": str(port)}  # the CLI finds the server by it
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            [*HV, "serve", "--port", str(port)],
            env=env,
            stdout=log_file,
            stderr=log_file,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            else:
                pytest.fail(f"server not ready: {log_path.read_text()[-2000:]}")
            assert f"engine webhook: {base}/webhooks/stream" in log_path.read_text()
            stored = WebhookSecretStore(data_dir / "stream-webhook-secret").secrets()
            assert len(stored) == 1

            first = make_clip(tmp_path / "first.mp4", seconds=1.0)
            second = make_clip(tmp_path / "second.mp4", seconds=1.4)
            ids = []
            for clip in (first, second):
                added = cli(env, "videos", "add", str(clip))
                assert added.returncode == 0, added.stderr
                ids.append(added.stdout.split()[1])

            queued = cli(env, "videos", "deliver", ids[0])  # the server's worker sends it
            assert queued.returncode == 0 and f"queued {deliver_video.NAME}" in queued.stdout
            now = cli(env, "videos", "deliver", ids[1], "--now")  # sent from this process
            assert now.returncode == 0, now.stderr
            assert "PROCESSING" in now.stdout
            for video_id in ids:
                spec = wait_for_status(env, video_id)
                assert spec["streamStatus"] == "READY" and spec["streamUid"]
            again = cli(env, "videos", "deliver", ids[0])
            assert again.returncode == 0 and "already READY" in again.stdout

            # Setting the URL it already has keeps the secret (no rotation) and prints it.
            hook = cli(env, "stream", "webhook", "set", f"{base}/webhooks/stream")
            assert hook.returncode == 0, hook.stderr
            assert hook.stdout.strip() == f"HYBRIDVIDEO_STREAM_WEBHOOK_SECRET={stored[0]}"
            moved = cli(env, "stream", "webhook", "set", "https://hooks.example.com/stream")
            assert moved.returncode == 0, moved.stderr
            rotated = moved.stdout.strip().split("=", 1)[1]
            assert WebhookSecretStore(data_dir / "stream-webhook-secret").secrets() == [
                rotated,
                stored[0],
            ]
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def copy_modified(server: Any, uid: str) -> str | None:
    """Stream's ``modified`` of the copy, as the READY event records it (webhook order)."""
    modified = server.stream.get(uid).modified
    return None if modified is None else modified.isoformat()
