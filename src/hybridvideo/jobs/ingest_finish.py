"""Turn one complete tus upload into a catalog video (probe, file, thumbnail, deliver).

Queued by the tus handler right after the last byte is stored, and again by
``ingest.sweep`` for a complete upload that never got an outcome (a worker killed mid-job).
One run per upload at a time; a repeat finds the outcome recorded and does nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hybridvideo.ingest.service import FINISH_JOB
from hybridvideo.queue.base import JobSpec

if TYPE_CHECKING:
    from hybridvideo.container import Container

NAME = FINISH_JOB


def _lock(payload: Mapping[str, Any]) -> str:
    return f"upload:{payload['upload_id']}"


SPEC = JobSpec(name=NAME, retries=5, retry_delay=2.0, retry_backoff=3.0, lock_key=_lock)


def register(container: Container) -> None:
    def handler(upload_id: str, sha256: str | None = None) -> None:
        container.ingest.finish_upload(upload_id, sha256)

    container.queue.register(SPEC, handler)
