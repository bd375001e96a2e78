"""Deliver one engine webhook: POST the bare Video object, signed the way Cloudflare signs.

Each video that finishes (ready or error) gets a delivery record; this job posts it with
``Webhook-Signature: time=...,sig1=...`` and records every attempt. A non-2xx answer or a
network error is retried with backoff until ``webhook_attempts`` are spent, then the
delivery is marked ``failed`` (given up) rather than retried forever. The body is built at
send time, so a retry carries the video's current state.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import httpx

from hybridvideo.engine.shapes import video_json
from hybridvideo.errors import NotFound
from hybridvideo.queue.base import JobSpec
from hybridvideo.stream.webhooks import SIGNATURE_HEADER, sign_webhook

if TYPE_CHECKING:
    from hybridvideo.container import Container
    from hybridvideo.engine.runtime import EngineRuntime

NAME = "engine.webhook"
log = logging.getLogger("hybridvideo.engine")


class DeliveryFailed(Exception):
    """Raised to make the queue retry the delivery later."""


def spec(attempts: int) -> JobSpec:
    return JobSpec(name=NAME, retries=max(0, attempts - 1), retry_delay=2.0, retry_backoff=2.0)


def enqueue_for(container: Container, uid: str) -> None:
    """Record and queue a delivery for ``uid``'s final state, if a webhook is configured."""
    rt = container.engine
    if rt is None:
        return
    hook = rt.store.get_webhook(rt.account_id)
    if hook is None:
        return
    delivery = rt.store.record_delivery(rt.account_id, uid, hook.notification_url)
    container.queue.enqueue(NAME, {"delivery_id": delivery.id})


def body_for(rt: EngineRuntime, uid: str) -> bytes:
    document = video_json(rt.store.get_video(uid), delivery_base=rt.delivery_base)
    return json.dumps(document, separators=(",", ":")).encode()


def deliver(rt: EngineRuntime, delivery_id: str, *, client: httpx.Client | None = None) -> str:
    """One attempt; returns the delivery's state, raises :class:`DeliveryFailed` to retry."""
    delivery = rt.store.get_delivery(delivery_id)
    if delivery.state != "pending":
        return delivery.state
    hook = rt.store.get_webhook(delivery.account_id)
    try:
        body = body_for(rt, delivery.video_uid)
    except NotFound:
        hook = None
    if hook is None:
        rt.store.update_delivery(
            delivery_id, state="failed", last_error="webhook or video removed", attempted=False
        )
        return "failed"
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign_webhook(hook.secret, body),
    }
    status: int | None = None
    error: str | None = None
    try:
        http = client or httpx.Client(timeout=10.0)
        try:
            response = http.post(hook.notification_url, content=body, headers=headers)
        finally:
            if client is None:
                http.close()
        status = response.status_code
        if 200 <= status < 300:
            rt.store.update_delivery(delivery_id, state="delivered", last_status=status)
            return "delivered"
        error = f"HTTP {status}"
    except Exception as exc:  # any failure to POST to the subscriber's URL is one attempt
        error = type(exc).__name__
    if delivery.attempts + 1 >= rt.webhook_attempts:
        rt.store.update_delivery(delivery_id, state="failed", last_status=status, last_error=error)
        log.warning(
            "webhook delivery given up",
            extra={"delivery_id": delivery_id, "video_uid": delivery.video_uid, "error": error},
        )
        return "failed"
    rt.store.update_delivery(delivery_id, state="pending", last_status=status, last_error=error)
    raise DeliveryFailed(f"webhook delivery {delivery_id}: {error}")


def register(container: Container) -> None:
    rt = container.engine
    if rt is None:
        return

    def handler(delivery_id: str) -> Any:
        return deliver(rt, delivery_id)

    container.queue.register(spec(rt.webhook_attempts), handler)
