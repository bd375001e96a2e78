"""Re-read a video's master from the archive and check it still matches its sha256.

The archive is the system of record, so bit rot or a stray overwrite must be noticed; the
result is recorded as a ``master_verified`` or ``master_mismatch`` event on the video.
One job per video at a time (lock on the video id).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hybridvideo.queue.base import JobSpec

if TYPE_CHECKING:
    from hybridvideo.container import Container

NAME = "videos.verify_master"


def _lock(payload: Mapping[str, Any]) -> str:
    return str(payload["video_id"])


SPEC = JobSpec(name=NAME, retries=3, retry_delay=5.0, retry_backoff=2.0, lock_key=_lock)


def verify(container: Container, video_id: str) -> bool:
    video = container.catalog.get_video(video_id)
    digest = hashlib.sha256()
    for chunk in container.archive.open(video.spec.archive_key):
        digest.update(chunk)
    ok = digest.hexdigest() == video.spec.sha256
    container.catalog.record_event(
        video_id,
        "master_verified" if ok else "master_mismatch",
        {"sha256": digest.hexdigest()},
    )
    return ok


def register(container: Container) -> None:
    def handler(video_id: str) -> None:
        verify(container, video_id)

    container.queue.register(SPEC, handler)
