"""Expire the engine's tus uploads: delete abandoned ones and fail their videos.

Every five minutes: uploads past their deadline are deleted and their videos move from
``pendingupload`` to ``error`` (the webhook is told); a complete upload whose hand-off to
ingest was cut short by a crash is handed off again. See :mod:`hybridvideo.engine.uploads`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from hybridvideo.engine.uploads import EngineUploadEvents, upload_store
from hybridvideo.jobs import engine_ingest, engine_webhook
from hybridvideo.queue.base import JobSpec, Periodic

if TYPE_CHECKING:
    from hybridvideo.container import Container

NAME = "engine.upload_sweep"
SPEC = JobSpec(name=NAME, retries=0, periodic=Periodic(minute="*/5"))
log = logging.getLogger("hybridvideo.engine")


def sweep(container: Container) -> int:
    """One pass (what the periodic job runs); how many uploads and videos it acted on."""
    rt = container.engine
    if rt is None:
        return 0
    events = EngineUploadEvents(
        rt,
        upload_store(rt),
        enqueue_ingest=lambda uid: container.queue.enqueue(engine_ingest.NAME, {"uid": uid}),
        notify=lambda uid: engine_webhook.enqueue_for(container, uid),
    )
    acted = events.sweep()
    if acted:
        log.info("swept engine uploads", extra={"count": acted})
    return acted


def register(container: Container) -> None:
    if container.engine is None:
        return
    container.queue.register(SPEC, lambda: sweep(container))
