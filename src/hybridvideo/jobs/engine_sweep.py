"""Re-queue engine videos that stopped moving (a worker killed mid-ingest).

The queue does not redeliver a job whose worker process died, so a video could sit in
``downloading``/``queued``/``inprogress`` for ever. Every few minutes this finds videos
in those states untouched for ``STALE_AFTER`` and queues their ingest again. Ingest holds
a per-video lock and leaves finished videos alone, so a video whose ingest is in fact still
running just waits for it and then finds nothing to do.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from hybridvideo.engine.models import VideoQuery
from hybridvideo.jobs import engine_ingest
from hybridvideo.queue.base import JobSpec, Periodic

if TYPE_CHECKING:
    from hybridvideo.container import Container
    from hybridvideo.engine.runtime import EngineRuntime

NAME = "engine.sweep"
STALE_AFTER = timedelta(minutes=30)
SPEC = JobSpec(name=NAME, retries=0, periodic=Periodic(minute="*/5"))
log = logging.getLogger("hybridvideo.engine")


def stale_videos(rt: EngineRuntime, *, now: datetime | None = None) -> list[str]:
    cutoff = (now or datetime.now(UTC)) - STALE_AFTER
    found: list[str] = []
    for state in ("downloading", "queued", "inprogress"):
        for video in rt.store.list_videos(rt.account_id, VideoQuery(status=state, asc=True)):
            modified = (
                video.modified if video.modified.tzinfo else video.modified.replace(tzinfo=UTC)
            )
            if modified < cutoff:
                found.append(video.uid)
    return found


def register(container: Container) -> None:
    rt = container.engine
    if rt is None:
        return

    def handler() -> int:
        uids = stale_videos(rt)
        for uid in uids:
            container.queue.enqueue(engine_ingest.NAME, {"uid": uid})
        if uids:
            log.warning("re-queued stalled engine videos", extra={"count": len(uids)})
        return len(uids)

    container.queue.register(SPEC, handler)
