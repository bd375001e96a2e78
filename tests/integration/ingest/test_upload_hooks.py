"""Upload hooks end to end: queued, POSTed to a real receiver, verified, retried, given up.

The receiver is a Starlette app served by uvicorn on loopback; jobs run on a real huey
(memory storage) worker thread with shrunk timings, so retries really go through the
queue's schedule.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hybridvideo.config import load_settings
from hybridvideo.errors import ConfigurationError
from hybridvideo.ingest.hooks import HOOK_JOB, HookSender, NoHooks, build_hook_sender
from hybridvideo.jobs.ingest_hook import (
    HookPolicy,
    HookTarget,
    deliver,
    post_signed,
    register_with,
)
from hybridvideo.queue.huey_queue import HueyQueue, Timing, memory_queue, redis_queue
from hybridvideo.stream.webhooks import InvalidWebhook, MemoryReplayCache, WebhookVerifier
from tests.services import free_port, serve_asgi

SECRET = "upload-hook-secret-0123456789"
FAST = Timing(tick=0.05, poll=0.1, lock_retry=0.1)
QUICK = HookPolicy(attempts=3, first_delay=0.05, backoff=2.0, timeout=2.0)
UPLOAD = {"id": "0" * 32, "offset": 5, "length": 5, "metadata": {"filename": "a.mp4"}}


def wait_until(cond: Callable[[], object], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class Receiver:
    """Records every POST; answers ``fail_next`` of them with 500 first."""

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
        return Response(status_code=204)

    def count(self) -> int:
        with self.lock:
            return len(self.received)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    r = Receiver()
    with serve_asgi(Starlette(routes=[Route("/hooks/upload", r.hook, methods=["POST"])])) as url:
        yield r, f"{url}/hooks/upload"


@pytest.fixture
def queue(request: pytest.FixtureRequest) -> Iterator[HueyQueue]:
    q = memory_queue(f"hooks-{request.node.name}", timing=FAST)
    yield q
    q.close()


@pytest.fixture
def worker(queue: HueyQueue) -> Iterator[None]:
    handle = queue.start_background(2)
    yield
    assert handle.stop(timeout=10)


def test_emitted_hook_arrives_signed_and_verifiable(
    queue: HueyQueue, worker: None, receiver: tuple[Receiver, str]
) -> None:
    r, url = receiver
    register_with(queue, HookTarget(url, SECRET), QUICK)
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    HookSender(queue, clock=lambda: at).emit("upload.finished", {**UPLOAD, "video_id": "v1"})
    assert wait_until(lambda: r.count() == 1)
    body, header = r.received[0]
    sent = json.loads(body)
    assert sent["event"] == "upload.finished"
    assert sent["time"] == "2026-01-02T03:04:05+00:00"
    assert sent["upload"] == {**UPLOAD, "video_id": "v1"}
    assert len(sent["id"]) == 32

    # The application checks it exactly as it checks Cloudflare Stream's webhooks.
    verifier = WebhookVerifier(SECRET, replay_cache=MemoryReplayCache())
    verifier.verify(header, body)
    with pytest.raises(InvalidWebhook) as wrong_key:
        WebhookVerifier("another-secret-0123456789").verify(header, body)
    assert wrong_key.value.reason == "bad_signature"
    with pytest.raises(InvalidWebhook) as tampered:
        WebhookVerifier(SECRET).verify(header, body.replace(b"finished", b"failed!!"))
    assert tampered.value.reason == "bad_signature"


def test_bare_event_names_are_sent_in_the_upload_form(
    queue: HueyQueue, worker: None, receiver: tuple[Receiver, str]
) -> None:
    r, url = receiver
    register_with(queue, HookTarget(url, SECRET), QUICK)
    sender = HookSender(queue)
    for event in ("created", "terminated", "upload.failed"):
        sender.emit(event, UPLOAD)
    assert wait_until(lambda: r.count() == 3)
    events = sorted(json.loads(body)["event"] for body, _ in r.received)
    assert events == ["upload.created", "upload.failed", "upload.terminated"]
    with pytest.raises(ValueError):
        sender.emit("upload.exploded", UPLOAD)
    with pytest.raises(TypeError):
        sender.emit("created", {"id": object()})  # not JSON: refused at emit, not in a worker


def test_a_failing_receiver_is_retried_then_delivered(
    queue: HueyQueue, worker: None, receiver: tuple[Receiver, str]
) -> None:
    r, url = receiver
    r.fail_next = 1
    register_with(queue, HookTarget(url, SECRET), QUICK)
    HookSender(queue).emit("upload.created", UPLOAD)
    assert wait_until(lambda: r.count() == 2)
    time.sleep(0.3)
    assert r.count() == 2  # delivered on the second attempt: nothing more is sent
    (first, sig1), (second, sig2) = r.received
    assert first == second  # same notification (same id) ...
    WebhookVerifier(SECRET).verify(sig2, second)  # ... signed afresh for the retry


def test_a_receiver_that_keeps_failing_is_given_up(
    queue: HueyQueue,
    worker: None,
    receiver: tuple[Receiver, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    r, url = receiver
    r.fail_next = 1000
    register_with(queue, HookTarget(url, SECRET), QUICK)
    with caplog.at_level(logging.INFO, logger="hybridvideo.ingest"):
        HookSender(queue).emit("upload.failed", UPLOAD)
        assert wait_until(lambda: r.count() == QUICK.attempts)
        assert wait_until(lambda: any("given up" in m for m in caplog.messages))
        time.sleep(0.5)  # well past the next backoff step (0.2 s)
    assert r.count() == QUICK.attempts
    assert queue.pending() == 0
    given_up = [rec for rec in caplog.records if "given up" in rec.getMessage()]
    assert len(given_up) == 1
    assert given_up[0].__dict__["upload_id"] == UPLOAD["id"]
    assert given_up[0].__dict__["error"] == "HTTP 500"


def test_no_url_configured_means_no_job(queue: HueyQueue) -> None:
    register_with(queue, None, QUICK)
    hooks = build_hook_sender(load_settings(), queue)
    assert isinstance(hooks, NoHooks)
    hooks.emit("upload.created", UPLOAD)
    assert queue.pending() == 0
    with pytest.raises(ValueError):
        hooks.emit("nonsense", UPLOAD)  # misuse shows even with hooks off

    configured = load_settings(upload_hook_url="http://127.0.0.1:9/hook", upload_hook_secret=SECRET)
    sender = build_hook_sender(configured, queue)
    assert isinstance(sender, HookSender)
    sender.emit("upload.created", UPLOAD)
    assert queue.pending() == 1


def test_hooks_waiting_when_the_url_is_removed_are_dropped(
    queue: HueyQueue, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="hybridvideo.ingest"):
        hook = {"id": "h", "event": "upload.created", "time": "t", "upload": UPLOAD}
        assert deliver(queue, None, hook, policy=QUICK) == "disabled"
    assert queue.pending() == 0
    assert any("dropped" in m for m in caplog.messages)


def test_direct_attempts_count_and_schedule_the_next(queue: HueyQueue) -> None:
    register_with(queue, None, QUICK)
    closed = HookTarget(f"http://127.0.0.1:{free_port()}/hook", SECRET)
    hook = {"id": "h", "event": "upload.created", "time": "t", "upload": UPLOAD}
    assert deliver(queue, closed, hook, attempt=1, policy=QUICK) == "retrying"
    assert deliver(queue, closed, hook, attempt=QUICK.attempts, policy=QUICK) == "failed"
    assert QUICK.delay_after(1) == pytest.approx(0.05)
    assert QUICK.delay_after(3) == pytest.approx(0.2)


def test_post_signed_reports_without_raising(receiver: tuple[Receiver, str]) -> None:
    r, url = receiver
    assert post_signed(url, SECRET, b"{}").ok
    refused = post_signed(f"http://127.0.0.1:{free_port()}/x", SECRET, b"{}", timeout=2)
    assert not refused.ok and refused.status is None and refused.error == "ConnectError"
    r.fail_next = 1
    failed = post_signed(url, SECRET, b"{}")
    assert failed.status == 500 and failed.error == "HTTP 500" and not failed.ok
    # Redirects are not followed: a signed notification goes to the configured URL only.
    redirecting = httpx.Client(
        transport=httpx.MockTransport(
            lambda req: httpx.Response(307, headers={"Location": "http://elsewhere/"})
        )
    )
    with redirecting:
        moved = post_signed("http://127.0.0.1:1/hook", SECRET, b"{}", client=redirecting)
    assert moved.status == 307 and not moved.ok


def test_emit_survives_a_queue_outage(caplog: pytest.LogCaptureFixture) -> None:
    down = redis_queue(f"redis://127.0.0.1:{free_port()}/0", "hooks-down", timing=FAST)
    try:
        register_with(down, None, QUICK)
        with caplog.at_level(logging.WARNING, logger="hybridvideo.ingest"):
            HookSender(down).emit("upload.finished", UPLOAD)  # logged, not raised
        assert any("not queued" in m for m in caplog.messages)
    finally:
        down.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"HYBRIDVIDEO_UPLOAD_HOOK_URL": "https://app.example/hooks"},
            "HYBRIDVIDEO_UPLOAD_HOOK_SECRET: required",
        ),
        ({"HYBRIDVIDEO_UPLOAD_HOOK_URL": "ftp://app.example/"}, "HYBRIDVIDEO_UPLOAD_HOOK_URL"),
        (
            {
                "HYBRIDVIDEO_UPLOAD_HOOK_URL": "https://a.example/",
                "HYBRIDVIDEO_UPLOAD_HOOK_SECRET": "short",
            },
            "HYBRIDVIDEO_UPLOAD_HOOK_SECRET: Value error, must be at least 16",
        ),
    ],
)
def test_hook_settings_are_checked(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert expected in info.value.message


def test_hook_settings_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRIDVIDEO_UPLOAD_HOOK_URL", "https://app.example/hooks/")
    monkeypatch.setenv("HYBRIDVIDEO_UPLOAD_HOOK_SECRET", SECRET)
    target = HookTarget.from_settings(load_settings())
    assert target == HookTarget("https://app.example/hooks/", SECRET)  # URL kept as given
    monkeypatch.delenv("HYBRIDVIDEO_UPLOAD_HOOK_URL")
    assert HookTarget.from_settings(load_settings()) is None


def test_the_job_is_registered_under_its_name(queue: HueyQueue) -> None:
    register_with(queue, None, QUICK)
    with pytest.raises(ValueError, match=HOOK_JOB):
        register_with(queue, None, QUICK)  # one name, one job
