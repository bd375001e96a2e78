"""Tell the application about uploads: signed webhooks on created / finished / terminated / failed.

tusd runs "post-" hooks (post-create, post-finish, post-terminate) that never hold up the
client's request; ours are the same, but durable: :meth:`HookSender.emit` only enqueues a
job (:mod:`hybridvideo.jobs.ingest_hook`), which POSTs to ``HYBRIDVIDEO_UPLOAD_HOOK_URL``
later, retried with backoff and given up after a fixed number of attempts. A slow or
down application endpoint therefore never slows an upload, and a restart does not lose a
notification already queued.

The body is JSON::

    {"id": "<hook id>", "event": "upload.finished", "time": "2026-01-01T00:00:00+00:00",
     "upload": {"id": ..., "offset": ..., "length": ..., "metadata": {...}, ...}}

``id`` is the same on every attempt of one notification (receivers deduplicate on it);
``time`` is when the event happened, not when it was sent. It is signed exactly like
Cloudflare Stream's webhooks (``Webhook-Signature: time=<unix>,sig1=<hex>``, see
:mod:`hybridvideo.stream.webhooks`), so an application checks both with one
:class:`~hybridvideo.stream.webhooks.WebhookVerifier` (given both secrets if they differ).

Events: ``upload.created`` (POST made the upload), ``upload.finished`` (its last byte is
stored), ``upload.terminated`` (DELETE), and ``upload.failed`` (a finished upload that could
not become a video). The bare names (``created`` ...) are accepted by :meth:`emit` and sent
in the ``upload.`` form. What ``upload`` holds is the caller's choice (the ingest service
builds it). Delivery is at least once and unordered between events, like tusd's.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from hybridvideo.errors import BackendUnavailable
from hybridvideo.queue.base import TaskQueue

if TYPE_CHECKING:
    from hybridvideo.config import Settings

log = logging.getLogger("hybridvideo.ingest")

#: The queue job that delivers one notification (:mod:`hybridvideo.jobs.ingest_hook`).
HOOK_JOB = "ingest.hook"

#: The events, as they appear in the body's ``event``.
EVENTS: tuple[str, ...] = (
    "upload.created",
    "upload.finished",
    "upload.terminated",
    "upload.failed",
)


class UploadHooks(Protocol):
    """Where the ingest service reports upload events."""

    def emit(self, event: str, payload: Mapping[str, Any]) -> None:
        """Queue a notification about the upload ``payload``; never blocks on the app."""


class HookSender:
    """:class:`UploadHooks` that enqueues one delivery job per event.

    A queue outage is logged rather than raised: the upload itself succeeded, and failing
    the client's request would only make it retry an upload that is already stored.
    Programming errors (an unknown event, a payload that is not JSON) do raise.
    """

    def __init__(
        self, queue: TaskQueue, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._queue = queue
        self._clock = clock

    def emit(self, event: str, payload: Mapping[str, Any]) -> None:
        hook = hook_document(event, payload, at=self._clock())
        try:
            self._queue.enqueue(HOOK_JOB, {"hook": hook})
        except BackendUnavailable as exc:
            log.warning(
                "upload hook not queued: the queue is unreachable",
                extra={
                    "event": hook["event"],
                    "upload_id": payload.get("id"),
                    "detail": exc.detail,
                },
            )


class NoHooks:
    """:class:`UploadHooks` when no hook URL is configured: nothing is queued."""

    def emit(self, event: str, payload: Mapping[str, Any]) -> None:
        hook_document(event, payload)  # the same checks as a real sender, so misuse shows


def build_hook_sender(settings: Settings, queue: TaskQueue) -> UploadHooks:
    """A :class:`HookSender` when ``HYBRIDVIDEO_UPLOAD_HOOK_URL`` is set, else :class:`NoHooks`."""
    return HookSender(queue) if settings.upload_hook_url else NoHooks()


def event_name(event: str) -> str:
    """``created`` or ``upload.created`` → ``upload.created``; ValueError for anything else."""
    name = event if event.startswith("upload.") else f"upload.{event}"
    if name not in EVENTS:
        raise ValueError(f"unknown upload hook event {event!r}; expected one of {EVENTS}")
    return name


def hook_document(
    event: str, upload: Mapping[str, Any], *, at: datetime | None = None
) -> dict[str, Any]:
    """The JSON body of one notification (without the signature, which is per attempt)."""
    document = {
        "id": uuid.uuid4().hex,
        "event": event_name(event),
        "time": (at or datetime.now(UTC)).isoformat(),
        "upload": dict(upload),
    }
    json.dumps(document, allow_nan=False)  # TypeError/ValueError now, not in the worker
    return document


__all__ = [
    "EVENTS",
    "HOOK_JOB",
    "HookSender",
    "NoHooks",
    "UploadHooks",
    "build_hook_sender",
    "event_name",
    "hook_document",
]
