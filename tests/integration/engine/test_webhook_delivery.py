"""Engine webhooks over real HTTP: signed like Cloudflare's, retried, given up, verifiable."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hybridvideo.engine.runtime import EngineRuntime
from hybridvideo.jobs.engine_webhook import DeliveryFailed, deliver
from hybridvideo.stream.webhooks import InvalidWebhook, MemoryReplayCache, WebhookVerifier
from tests.integration.engine.runtime import engine_runtime
from tests.services import free_port, serve_asgi

ACCOUNT = "a" * 32


class Receiver:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fail_next = 0
        self.received: list[tuple[bytes, str]] = []

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        with self.lock:
            self.received.append((body, request.headers.get("webhook-signature", "")))
            if self.fail_next:
                self.fail_next -= 1
                return Response(status_code=500)
        return Response(status_code=200)


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, str]]:
    r = Receiver()
    with serve_asgi(Starlette(routes=[Route("/hook", r.hook, methods=["POST"])])) as url:
        yield r, url


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[EngineRuntime]:
    with engine_runtime(tmp_path, ACCOUNT, webhook_attempts=3) as rt:
        yield rt


def finished_video(rt: EngineRuntime) -> str:
    video = rt.store.create_video(ACCOUNT, meta={"name": "intro"}, source_url="http://x/a.mp4")
    rt.store.set_processing_state(
        video.uid, "ready", ready_to_stream=True, duration=3.0, width=320, height=180, size=1234
    )
    return video.uid


def test_delivered_signed_and_verifiable(
    runtime: EngineRuntime, receiver: tuple[Receiver, str]
) -> None:
    r, base = receiver
    hook = runtime.store.put_webhook(ACCOUNT, f"{base}/hook")
    uid = finished_video(runtime)
    d = runtime.store.record_delivery(ACCOUNT, uid, hook.notification_url)
    r.received.clear()
    assert deliver(runtime, d.id) == "delivered"
    body, header = r.received[-1]
    sent = json.loads(body)
    assert sent["uid"] == uid and sent["status"]["state"] == "ready" and "result" not in sent

    verifier = WebhookVerifier(hook.secret, replay_cache=MemoryReplayCache())
    verifier.verify(header, body)  # the engine's webhook is accepted ...
    with pytest.raises(InvalidWebhook) as replay:
        verifier.verify(header, body)  # ... once
    assert replay.value.reason == "replayed"
    fresh = WebhookVerifier(hook.secret)
    with pytest.raises(InvalidWebhook) as tampered:
        fresh.verify(header, body.replace(b'"ready"', b'"error"'))
    assert tampered.value.reason == "bad_signature"
    stamp = int(header.split(",")[0].split("=")[1])
    with pytest.raises(InvalidWebhook) as stale:
        fresh.verify(header, body, now=stamp + 3600)
    assert stale.value.reason == "stale"
    assert runtime.store.get_delivery(d.id).state == "delivered"


def test_retried_then_delivered(runtime: EngineRuntime, receiver: tuple[Receiver, str]) -> None:
    r, base = receiver
    runtime.store.put_webhook(ACCOUNT, f"{base}/hook")
    uid = finished_video(runtime)
    d = runtime.store.record_delivery(ACCOUNT, uid, f"{base}/hook")
    r.fail_next = 1
    with pytest.raises(DeliveryFailed):
        deliver(runtime, d.id)
    assert runtime.store.get_delivery(d.id).last_status == 500
    assert deliver(runtime, d.id) == "delivered"
    record = runtime.store.get_delivery(d.id)
    assert record.attempts == 2 and record.delivered_at is not None
    assert deliver(runtime, d.id) == "delivered"  # a duplicate job run sends nothing more
    assert runtime.store.get_delivery(d.id).attempts == 2


def test_given_up_after_the_allowed_attempts(runtime: EngineRuntime) -> None:
    closed = f"http://127.0.0.1:{free_port()}/hook"
    runtime.store.put_webhook(ACCOUNT, closed)
    uid = finished_video(runtime)
    d = runtime.store.record_delivery(ACCOUNT, uid, closed)
    client = httpx.Client(timeout=2)
    for _ in range(runtime.webhook_attempts - 1):
        with pytest.raises(DeliveryFailed):
            deliver(runtime, d.id, client=client)
    assert deliver(runtime, d.id, client=client) == "failed"
    record = runtime.store.get_delivery(d.id)
    assert record.state == "failed" and record.attempts == runtime.webhook_attempts
    assert record.last_error == "ConnectError"


def test_removed_webhook_fails_the_delivery_quietly(runtime: EngineRuntime) -> None:
    runtime.store.put_webhook(ACCOUNT, "http://127.0.0.1:1/hook")
    uid = finished_video(runtime)
    d = runtime.store.record_delivery(ACCOUNT, uid, "http://127.0.0.1:1/hook")
    runtime.store.delete_webhook(ACCOUNT)
    assert deliver(runtime, d.id) == "failed"
    assert runtime.store.get_delivery(d.id).attempts == 0


def test_unusable_url_still_counts_attempts_and_gives_up(runtime: EngineRuntime) -> None:
    runtime.store.put_webhook(ACCOUNT, "http://127.0.0.1:1/hook")
    uid = finished_video(runtime)
    d = runtime.store.record_delivery(ACCOUNT, uid, "http://a..b/hook")
    # A client that fails the way httpx does on a URL it cannot even parse.
    bad = httpx.Client(
        transport=httpx.MockTransport(lambda r: (_ for _ in ()).throw(UnicodeError("idna")))
    )
    for _ in range(runtime.webhook_attempts - 1):
        with pytest.raises(DeliveryFailed):
            deliver(runtime, d.id, client=bad)
    assert deliver(runtime, d.id, client=bad) == "failed"
    record = runtime.store.get_delivery(d.id)
    assert record.attempts == runtime.webhook_attempts and record.last_error == "UnicodeError"


def test_sweep_finds_stalled_videos(runtime: EngineRuntime) -> None:
    from datetime import UTC, datetime, timedelta

    from hybridvideo.jobs.engine_sweep import stale_videos

    stuck = runtime.store.create_video(ACCOUNT, source_url="http://x/a.mp4")
    runtime.store.set_processing_state(stuck.uid, "inprogress", pct=12)
    done = finished_video(runtime)
    assert stale_videos(runtime) == []  # fresh: an ingest may be running
    later = datetime.now(UTC) + timedelta(hours=1)
    assert stale_videos(runtime, now=later) == [stuck.uid]
    assert done not in stale_videos(runtime, now=later)
