from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import imageio_ffmpeg
import pytest

from hybridvideo.errors import InvalidInput, NotAVideo
from hybridvideo.media.probe import probe
from tests.conftest import make_clip


def test_probe_reads_a_real_clip(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", seconds=2, size="320x180")
    info = probe(clip)
    assert info.format == "mp4"
    assert info.size == clip.stat().st_size
    assert info.sha256 == hashlib.sha256(clip.read_bytes()).hexdigest()
    assert info.duration is not None and 1.9 <= info.duration <= 2.2
    assert (info.width, info.height) == (320, 180)


def test_probe_reads_other_containers(tmp_path: Path) -> None:
    out = tmp_path / "clip.webm"
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=64x48:rate=10:duration=1",
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    info = probe(out)
    assert info.format == "webm" and (info.width, info.height) == (64, 48)


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *args],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.mark.parametrize("kind", ["text", "empty", "jpeg", "audio", "truncated"])
def test_non_videos_are_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"input.{'mp4' if kind in ('text', 'empty', 'truncated') else kind}"
    if kind == "text":
        path.write_text("this is not a video\n" * 100)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "jpeg":
        path = tmp_path / "poster.jpg"
        _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64", "-frames:v", "1", str(path))
    elif kind == "audio":
        path = tmp_path / "song.m4a"
        _ffmpeg("-f", "lavfi", "-i", "sine=duration=1", str(path))
    else:
        full = make_clip(tmp_path / "full.mp4")
        path.write_bytes(full.read_bytes()[:200])
    with pytest.raises(NotAVideo) as info:
        probe(path)
    assert path.name in info.value.message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no such file"):
        probe(tmp_path / "nope.mp4")


def test_audio_with_cover_art_is_not_a_video(tmp_path: Path) -> None:
    cover = tmp_path / "cover.png"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64", "-frames:v", "1", str(cover))
    song = tmp_path / "song.m4a"
    _ffmpeg(
        "-f", "lavfi", "-i", "sine=duration=1", "-i", str(cover), "-map", "0", "-map", "1",
        "-c:a", "aac", "-c:v", "png", "-disposition:v", "attached_pic", str(song),
    )  # fmt: skip
    with pytest.raises(NotAVideo, match="no video stream"):
        probe(song)
