"""The finish job's repeat-safety, step by step, on the real local store and archive."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hybridvideo.config import load_settings
from hybridvideo.container import Container, build_container
from hybridvideo.ingest.service import FAILED, READY
from hybridvideo.ingest.tus.protocol import TusError, UploadInfo
from hybridvideo.ingest.tus.store import new_upload_id
from hybridvideo.videos.service import master_key


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    settings = load_settings(
        data_dir=tmp_path / "data",
        engine=False,
        queue_backend="memory",
        stream_api_url="http://127.0.0.1:9/client/v4",
        cloudflare_account_id="a" * 32,
        cloudflare_stream_token="t" * 40,
    )
    c = build_container(settings, serving=True)
    yield c
    c.close()


def _uploaded(container: Container, data: bytes, **notes: str) -> UploadInfo:
    store = container.ingest.store
    info = UploadInfo(
        id=new_upload_id(),
        offset=0,
        length=len(data),
        created_at=datetime.now(UTC),
        notes={"state": "receiving", **notes},
    )
    store.create(info)
    store.write(info.id, 0, iter([data]), len(data))
    return store.get(info.id)


def test_a_retry_after_the_move_finishes_from_the_master(
    container: Container, sample_video: Path
) -> None:
    data = sample_video.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    info = _uploaded(container, data, filename="clip.mp4")
    # a first run got as far as moving the bytes, then its worker died
    key = container.ingest.store.finish(info.id)
    target = master_key(sha, ".mp4")
    container.ingest.store.update(info.id, notes={"sha256": sha, "master_key": target})
    container.archive.move(key, target)
    status = container.ingest.finish_upload(info.id)  # no sha passed: taken from the notes
    assert status.state == READY, status
    video = container.catalog.get_video(str(status.video_id))
    assert (video.spec.archive_key, video.spec.sha256) == (target, sha)
    # and once more: nothing changes, no second video
    again = container.ingest.finish_upload(info.id)
    assert again.video_id == status.video_id


def test_without_a_digest_the_bytes_are_hashed_from_the_archive(
    container: Container, sample_video: Path
) -> None:
    data = sample_video.read_bytes()
    info = _uploaded(container, data, filename="clip.mp4")
    status = container.ingest.finish_upload(info.id, None)
    video = container.catalog.get_video(str(status.video_id))
    assert video.spec.sha256 == hashlib.sha256(data).hexdigest()


def test_sweep_removes_expired_uploads_and_requeues_stuck_ones(container: Container) -> None:
    store = container.ingest.store
    past = datetime.now(UTC) - timedelta(seconds=1)
    expired = _uploaded(container, b"abc")
    store.update(expired.id, expires_at=past)
    stuck = _uploaded(container, b"not a video at all", filename="x.mp4")
    store.update(
        stuck.id,
        notes={"completed_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat()},
    )
    counts = container.ingest.sweep()
    assert counts["removed"] == 1 and counts["requeued"] == 1
    with pytest.raises(TusError):
        store.get(expired.id)
    # the re-queued job runs and records the outcome
    assert container.queue.pending() >= 1
    status = container.ingest.finish_upload(stuck.id)
    assert status.state == FAILED and status.error_code == "NOT_A_VIDEO"


def test_finishing_a_terminated_upload_is_a_quiet_no_op(container: Container) -> None:
    info = _uploaded(container, b"abc")
    container.ingest.store.terminate(info.id)
    status = container.ingest.finish_upload(info.id)
    assert (status.state, status.error_code) == (FAILED, "GONE")
