"""Send one catalog video to delivery (``DeliveryService.deliver``), retrying what may pass.

Ingest, the migration, the admin API and ``videos deliver`` all queue this job. A rate
limit or an unreachable Stream service (or catalog, or archive) is tried again later: the
job queues its own next attempt with a delay that doubles each time and is never shorter
than the service's ``Retry-After``, which huey's fixed retry delay could not honour. After
:data:`MAX_ATTEMPTS` the video is recorded as ERROR so operators see it. One run per video
at a time (lock on the video id); ``deliver`` itself is idempotent, so a duplicate job
finds the video PROCESSING and does nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hybridvideo.errors import BackendUnavailable
from hybridvideo.queue.base import JobSpec, TaskQueue
from hybridvideo.stream.base import RateLimited

if TYPE_CHECKING:
    from hybridvideo.container import Container

NAME = "delivery.send"
MAX_ATTEMPTS = 10
FIRST_DELAY = 5.0
MAX_DELAY = 15 * 60.0
#: A ``Retry-After`` beyond this is taken as this (a misbehaving header must not park the
#: video for days).
MAX_RETRY_AFTER = 3600.0
log = logging.getLogger("hybridvideo.delivery")


def _lock(payload: Mapping[str, Any]) -> str:
    return str(payload["video_id"])


# retries=0: attempts are queued by the handler itself, with the delay the failure asks for.
# lock_ttl: the SDK's own retries of one call can take minutes under a rate limit.
SPEC = JobSpec(name=NAME, retries=0, lock_key=_lock, lock_ttl=1800.0)


def retry_delay(attempt: int, retry_after: float | None = None) -> float:
    """Seconds before attempt ``attempt + 1``: 5, 10, 20 ... 900, at least ``retry_after``."""
    backoff = min(MAX_DELAY, FIRST_DELAY * 2.0 ** max(0, attempt - 1))
    if retry_after is None or retry_after <= 0:
        return backoff
    return max(backoff, min(retry_after, MAX_RETRY_AFTER))


def enqueue(
    queue: TaskQueue, video_id: str, *, attempt: int = 1, delay: float | None = None
) -> str:
    """Queue the delivery of ``video_id`` (what ingest and the migration call)."""
    return queue.enqueue(NAME, {"video_id": video_id, "attempt": attempt}, delay=delay)


def run(container: Container, video_id: str, attempt: int = 1) -> str:
    """One attempt; returns the video's delivery status, or ``retrying``."""
    try:
        return container.delivery.deliver(video_id).spec.stream_status.value
    except BackendUnavailable as exc:
        if attempt >= MAX_ATTEMPTS:
            log.error(
                "delivery given up",
                extra={"video_id": video_id, "attempt": attempt, "code": exc.code},
            )
            return container.delivery.give_up(video_id, exc).spec.stream_status.value
        wait = retry_delay(attempt, exc.retry_after if isinstance(exc, RateLimited) else None)
        log.warning(
            "delivery will be tried again",
            extra={
                "video_id": video_id,
                "attempt": attempt,
                "delay": wait,
                "code": exc.code,
                "detail": exc.detail,
            },
        )
        enqueue(container.queue, video_id, attempt=attempt + 1, delay=wait)
        return "retrying"


def register(container: Container) -> None:
    def handler(video_id: str, attempt: int = 1) -> str:
        return run(container, video_id, attempt)

    container.queue.register(SPEC, handler)
