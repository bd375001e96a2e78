"""Every ten minutes: drop expired uploads (aborting their multipart uploads and removing
bytes kept for inspection), re-queue complete uploads without an outcome, and clear storage
a crash left without an upload record."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from hybridvideo.queue.base import JobSpec, Periodic

if TYPE_CHECKING:
    from hybridvideo.container import Container

NAME = "ingest.sweep"
SPEC = JobSpec(name=NAME, retries=0, periodic=Periodic(minute="*/10"))
log = logging.getLogger("hybridvideo.ingest")


def register(container: Container) -> None:
    def handler() -> dict[str, int]:
        counts = container.ingest.sweep()
        if any(counts.values()):
            log.info("swept uploads", extra=counts)
        return counts

    container.queue.register(SPEC, handler)
