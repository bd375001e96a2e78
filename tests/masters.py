"""Catalog rows over tiny archived masters, for tests of what happens *after* ingest.

The migration, reconcile and the admin pages never read a master's bytes (Stream fetches
them, and in these tests the engine is not asked to), so a few unique bytes stand in for
a video, recorded as the Phase 1 import records masters. Real clips (``sample_video``)
are for tests that probe or encode.
"""

from __future__ import annotations

import hashlib
import io

from hybridvideo.archive.base import ArchiveStore
from hybridvideo.catalog.base import Catalog
from hybridvideo.domain.video import MediaInfo, NewVideo, VideoState


def add_tiny_master(
    catalog: Catalog,
    archive: ArchiveStore,
    n: int,
    *,
    key: str | None = None,
    collection: str = "work",
    duration: float | None = 60.0,
    salt: str = "",
) -> VideoState:
    """Video ``n``: unique bytes put at ``key`` (default ``masters/<sha[:2]>/<sha>.mp4``)."""
    data = f"master {n} {salt} {key}".encode() * 8
    sha = hashlib.sha256(data).hexdigest()
    key = key or f"masters/{sha[:2]}/{sha}.mp4"
    archive.put(key, io.BytesIO(data), content_type="video/mp4")
    media = MediaInfo(
        size=len(data), sha256=sha, format="mp4", duration=duration, width=640, height=360
    )
    return catalog.add_video(
        NewVideo(
            title=f"Lesson {n}",
            collection=collection,
            archive_bucket=archive.bucket,
            archive_key=key,
            media=media,
        )
    )
