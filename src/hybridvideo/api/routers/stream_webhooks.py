"""``POST /webhooks/stream``: Stream (Cloudflare or the engine) reports a finished video.

The URL is public, so nothing in the body is trusted before ``Webhook-Signature`` checks
out against our secret(s) (:class:`~hybridvideo.stream.webhooks.WebhookVerifier`: HMAC,
freshness, replay). Then the body, Cloudflare's bare Video object, moves the catalog video
to READY or ERROR (:meth:`~hybridvideo.delivery.service.DeliveryService.apply_stream_update`).

Answers: 401 for a missing, forged, stale or replayed signature and 400 for a body that is
not a video object (both in the standard error body, and both change nothing); 200 for a
video we do not know (another system's, or a copy superseded by a retry), because Stream
cannot do better by sending it again; 5xx only when we failed, so the sender retries.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from hybridvideo.api.deps import ContainerDep
from hybridvideo.container import Container
from hybridvideo.delivery.notification import parse_stream_video
from hybridvideo.delivery.webhook_secrets import WEBHOOK_PATH, WebhookSecretStore
from hybridvideo.errors import ConfigurationError, InvalidInput
from hybridvideo.stream.webhooks import (
    SIGNATURE_HEADER,
    InvalidWebhook,
    MemoryReplayCache,
    ReplayCache,
    WebhookVerifier,
)

log = logging.getLogger("hybridvideo.delivery")

#: Cloudflare's Video object is a few kilobytes; anything far larger is not one.
MAX_BODY = 256 * 1024


class WebhookAck(BaseModel):
    received: bool
    #: False when no catalog video has the reported uid (ignored, still acknowledged).
    matched: bool


def build_router(*, replay_cache: ReplayCache | None = None) -> APIRouter:
    """The webhook route, with one replay cache for this app (one per process)."""
    cache = replay_cache if replay_cache is not None else MemoryReplayCache()
    router = APIRouter(tags=["webhooks"])

    @router.post(WEBHOOK_PATH, response_model=WebhookAck)
    async def stream_webhook(request: Request, container: ContainerDep) -> WebhookAck:
        body = await _read_body(request)
        header = request.headers.get(SIGNATURE_HEADER)
        return await run_in_threadpool(_handle, container, cache, header, body)

    return router


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise InvalidInput("the webhook body is too large for a Stream video object")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise InvalidInput("the webhook body is too large for a Stream video object")
        chunks.append(chunk)
    return b"".join(chunks)


def _handle(
    container: Container, cache: ReplayCache, header: str | None, body: bytes
) -> WebhookAck:
    secrets = WebhookSecretStore.for_settings(container.settings).secrets()
    if not secrets:
        raise ConfigurationError(
            "no Stream webhook secret is configured: set HYBRIDVIDEO_STREAM_WEBHOOK_SECRET "
            "or run `hybridvideo stream webhook set URL`"
        )
    try:
        WebhookVerifier(secrets, replay_cache=cache).verify(header, body)
    except InvalidWebhook as exc:
        log.warning("stream webhook refused", extra={"reason": exc.reason, "detail": exc.detail})
        raise
    update = parse_stream_video(body)
    video = container.delivery.apply_stream_update(update, source="webhook")
    return WebhookAck(received=True, matched=video is not None)
