"""Drift between a delivery world's catalog and its engine, made the ways it happens.

Each helper leaves the state a real incident leaves: a copy deleted behind the catalog's
back, a copy request whose answer was lost, a superseded copy, another system's video, a
copy of a video the catalog does not have, copies created long ago or in the same instant.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import pytest

from hybridvideo.catalog.sql import create_catalog_engine
from hybridvideo.delivery.service import VIDEO_ID_META, DeliveryService
from hybridvideo.domain.video import VideoState
from hybridvideo.engine.models import EngineVideoRow
from hybridvideo.errors import BackendUnavailable
from tests.unit.delivery.world import NON_VIDEO, CatalogFailingOnce, World


def add_clip(world: World, sample_video: Path, folder: Path, n: int) -> VideoState:
    """A distinct master (one master, one catalog video)."""
    clip = folder / f"clip{n}.mp4"
    clip.write_bytes(sample_video.read_bytes() + b"\0" * (n + 1))
    return world.add(clip, title=f"clip {n}")


def delivered(world: World, video: VideoState) -> str:
    """Deliver ``video`` and let the engine finish it: READY with its uid."""
    uid = world.service.deliver(video.id).spec.stream_uid or ""
    world.service.apply_stream_update(world.finish(uid))
    return uid


def lost_answer(world: World, video: VideoState) -> str:
    """A copy Stream made for ``video`` whose uid the catalog never recorded."""
    flaky = CatalogFailingOnce(world.catalog_engine)
    service = DeliveryService(catalog=flaky, archive=world.archive, stream=world.stream)
    with pytest.raises(BackendUnavailable):
        service.deliver(video.id)
    return world.copies[-1]


def superseded(world: World, video: VideoState) -> tuple[str, str]:
    """The first copy failed, the retry's copy is READY: ``(old uid, live uid)``."""
    first = world.service.deliver(video.id).spec.stream_uid or ""
    world.service.apply_stream_update(world.finish(first, error=NON_VIDEO))
    return first, delivered(world, video)


def foreign(world: World) -> str:
    """Another system's video on the same account: no hybridvideo meta."""
    return world.stream.copy_from_url("http://elsewhere.test/a.mp4", name="not ours").uid


def copy_naming(world: World, video_id: str) -> str:
    """A copy carrying ``video_id`` in its meta, made outside delivery."""
    made = world.stream.copy_from_url(
        "http://archive.test/gone.mp4", meta={"name": "gone", VIDEO_ID_META: video_id}
    )
    return made.uid


def set_created(tmp_path: Path, uids: Iterable[str], created: datetime) -> None:
    """Give engine videos a creation time: made long ago, or in the same instant (a
    service whose timestamps are coarser than a page of copies)."""
    from sqlalchemy import update

    engine = create_catalog_engine(f"sqlite:///{tmp_path / 'engine.db'}")
    try:
        with engine.begin() as conn:
            conn.execute(
                update(EngineVideoRow)
                .where(EngineVideoRow.uid.in_(list(uids)))
                .values(created=created)
            )
    finally:
        engine.dispose()


def snapshot(world: World) -> list[tuple[VideoState, int]]:
    """Every catalog video and its number of events: what "unchanged" means."""
    from hybridvideo.domain.video import VideoScan

    videos = world.catalog.scan_videos(VideoScan(), limit=1000)
    return [(v, len(world.catalog.events(v.id))) for v in videos]
