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


def _uploaded(
    container: Container, data: bytes, length: int | None = None, **notes: str
) -> UploadInfo:
    store = container.ingest.store
    info = UploadInfo(
        id=new_upload_id(),
        offset=0,
        length=len(data) if length is None else length,
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
    abandoned = _uploaded(container, b"abc", length=10)  # never finished by its client
    store.update(abandoned.id, expires_at=past)
    stuck = _uploaded(container, b"not a video at all", filename="x.mp4")
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    store.update(stuck.id, notes={"completed_at": an_hour_ago}, expires_at=past)
    busy = _uploaded(container, b"abc", length=10)
    store.update(busy.id, expires_at=past)
    handle = container.upload_locker.acquire(busy.id)  # a PATCH is writing it right now
    assert handle is not None
    try:
        counts = container.ingest.sweep()
    finally:
        handle.release()
    # the abandoned one goes; the complete one the client was promised is kept and
    # re-queued even though it expired (an outage longer than the expiry); the one
    # being written is left alone
    assert counts["removed"] == 1 and counts["requeued"] == 1, counts
    with pytest.raises(TusError):
        store.get(abandoned.id)
    assert store.get(busy.id).offset == 3
    assert container.queue.pending() >= 1
    status = container.ingest.finish_upload(stuck.id)
    assert status.state == FAILED and status.error_code == "NOT_A_VIDEO"
    assert container.ingest.sweep()["removed"] == 2  # now it may go, and so may the idle one


def test_finishing_waits_for_the_upload_lock(container: Container, sample_video: Path) -> None:
    from hybridvideo.errors import BackendUnavailable

    info = _uploaded(container, sample_video.read_bytes(), filename="clip.mp4")
    handle = container.upload_locker.acquire(info.id)
    assert handle is not None
    try:
        with pytest.raises(BackendUnavailable):  # the queue retries it later
            container.ingest.finish_upload(info.id)
    finally:
        handle.release()
    assert container.ingest.finish_upload(info.id).state == READY


def test_an_upload_being_processed_cannot_be_terminated(container: Container) -> None:
    info = _uploaded(container, b"abc", state="processing")
    with pytest.raises(TusError) as caught:
        container.ingest.check_terminate(info)
    assert caught.value.status == 423
    container.ingest.check_terminate(_uploaded(container, b"abc"))  # receiving: allowed


def test_finishing_a_terminated_upload_is_a_quiet_no_op(container: Container) -> None:
    info = _uploaded(container, b"abc")
    container.ingest.store.terminate(info.id)
    status = container.ingest.finish_upload(info.id)
    assert (status.state, status.error_code) == (FAILED, "GONE")


def test_a_master_whose_frames_cannot_be_decoded_never_reaches_masters(
    container: Container, tmp_path: Path
) -> None:
    import subprocess

    import imageio_ffmpeg

    from hybridvideo.errors import NotAVideo
    from hybridvideo.media.probe import probe_source
    from hybridvideo.media.thumbnail import make_thumbnail

    full = tmp_path / "full.mp4"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-f", "lavfi",
         "-i", "testsrc2=size=320x240:rate=25:duration=4", "-c:v", "libx264",
         "-preset", "ultrafast", "-movflags", "+faststart", str(full)],
        check=True,
    )  # fmt: skip
    data = full.read_bytes()[: int(full.stat().st_size * 0.06)]  # index + first frames only
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data)
    # precondition: it probes as a video, yet no poster frame can be decoded from it
    media = probe_source(str(cut), name="cut.mp4", suffix=".mp4", size=len(data), sha256="0" * 64)
    with pytest.raises(NotAVideo):
        make_thumbnail(str(cut), duration=media.duration)
    info = _uploaded(container, data, filename="cut.mp4")
    status = container.ingest.finish_upload(info.id)
    assert (status.state, status.error_code) == (FAILED, "NOT_A_VIDEO")
    assert [o.key for o in container.archive.list("masters/")] == []
    assert container.archive.exists(f"incoming/{info.id}")  # kept for inspection
