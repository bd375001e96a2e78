"""Probing and poster frames straight from an archive object, through ranged reads."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import av
import pytest

from hybridvideo.archive.local import LocalArchive
from hybridvideo.errors import NotAVideo
from hybridvideo.media.probe import probe_source
from hybridvideo.media.reader import ArchiveReader
from hybridvideo.media.thumbnail import MAX_WIDTH, make_thumbnail
from tests.conftest import make_clip


@pytest.fixture
def archive(tmp_path: Path) -> LocalArchive:
    (tmp_path / "arch").mkdir()
    return LocalArchive(tmp_path / "arch", base_url="http://127.0.0.1:1", secret=b"k" * 32)


def test_reader_reads_seeks_and_caches(archive: LocalArchive) -> None:
    data = bytes(range(256)) * 40  # 10240 bytes
    archive.put("incoming/x", io.BytesIO(data))
    reader = ArchiveReader(archive, "incoming/x", len(data), block=1000, keep=2)
    assert reader.read(10) == data[:10]
    reader.seek(-5, io.SEEK_END)
    assert reader.read() == data[-5:]
    reader.seek(995)
    assert reader.read(10) == data[995:1005]  # crosses a block boundary
    assert reader.read(0) == b""
    reader.seek(0)
    assert reader.read() == data
    with pytest.raises(ValueError):
        reader.seek(-1)


def test_probe_and_thumbnail_from_the_archive(archive: LocalArchive, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", seconds=2, size="1280x720")
    raw = clip.read_bytes()
    archive.put("incoming/clip", io.BytesIO(raw))
    sha = hashlib.sha256(raw).hexdigest()
    with ArchiveReader(archive, "incoming/clip", len(raw)) as source:
        media = probe_source(source, name="clip.mp4", suffix=".mp4", size=len(raw), sha256=sha)
    assert (media.width, media.height, media.format, media.sha256) == (1280, 720, "mp4", sha)
    with ArchiveReader(archive, "incoming/clip", len(raw)) as source:
        jpeg = make_thumbnail(source, duration=media.duration)
    assert jpeg[:3] == b"\xff\xd8\xff"
    with av.open(io.BytesIO(jpeg)) as picture:
        frame = next(picture.decode(video=0))
    assert (frame.width, frame.height) == (MAX_WIDTH, 360)


def test_non_video_bytes_are_not_a_video(archive: LocalArchive) -> None:
    archive.put("incoming/t", io.BytesIO(b"just some text, not a video\n" * 100))
    with ArchiveReader(archive, "incoming/t", 2800) as source, pytest.raises(NotAVideo):
        probe_source(source, name="notes.txt", suffix=".txt", size=2800, sha256="0" * 64)
    with ArchiveReader(archive, "incoming/t", 2800) as source, pytest.raises(NotAVideo):
        make_thumbnail(source, duration=None)
