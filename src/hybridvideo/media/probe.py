"""Probe a master: size, sha256, container format, duration and picture size.

PyAV ships FFmpeg's libraries in its wheel, so no system ffmpeg or ffprobe is needed. A file
is accepted as a video only when a demuxer recognises it, it has a video stream that yields
a decodable frame, and it is not a still-image format; anything else raises
:class:`~hybridvideo.errors.NotAVideo` before a byte is stored.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

import av

from hybridvideo.domain.video import MediaInfo
from hybridvideo.errors import InvalidInput, NotAVideo

_CHUNK = 1024 * 1024
#: Demuxers that read single images; a poster is not a master.
_STILL_FORMATS = frozenset({"image2", "gif"})
_STILL = av.stream.Disposition


def sha256_of(path: Path) -> tuple[int, str]:
    """Size and sha256 hex of ``path``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _friendly_format(names: str, suffix: str, major_brand: str | None) -> str:
    """FFmpeg names demuxers by family (``mov,mp4,m4a,...``): pick the member by the file's
    suffix when it is one of them, else by the ISO brand (``qt`` is QuickTime, the rest
    MP4), else the family's first name."""
    options = names.split(",")
    ext = suffix.lower().lstrip(".")
    if ext in options:
        return ext
    if "mp4" in options and major_brand:
        return "mov" if major_brand.strip() == "qt" else "mp4"
    return options[0]


def probe(path: Path) -> MediaInfo:
    if not path.is_file():
        raise InvalidInput(f"{path.name}: no such file")
    size, sha = sha256_of(path)
    return probe_source(str(path), name=path.name, suffix=path.suffix, size=size, sha256=sha)


def probe_source(
    source: str | BinaryIO, *, name: str, suffix: str, size: int, sha256: str
) -> MediaInfo:
    """Probe an already-hashed master given as a path or a seekable binary file object.

    The archive hands uploads over as a ranged reader (:mod:`hybridvideo.media.reader`),
    so an S3 master is probed without downloading it: only the bytes FFmpeg asks for.
    """
    if size == 0:
        raise NotAVideo(f"{name}: the file is empty")
    try:
        with av.open(source, mode="r") as container:
            fmt = container.format.name
            if fmt in _STILL_FORMATS or fmt.endswith("_pipe"):
                raise NotAVideo(f"{name}: a still image ({fmt}), not a video")
            # Cover art in audio files is a one-picture "video" stream: not a video.
            moving = [
                v
                for v in container.streams.video
                if not v.disposition & (_STILL.attached_pic | _STILL.still_image)
            ]
            if not moving:
                raise NotAVideo(f"{name}: no video stream")
            stream = moving[0]
            if next(container.decode(stream), None) is None:
                raise NotAVideo(f"{name}: the video stream has no decodable frame")
            duration = container.duration / av.time_base if container.duration else None
            if duration is None and stream.duration and stream.time_base:
                duration = float(stream.duration * stream.time_base)
            brand = container.metadata.get("major_brand")
            width = stream.codec_context.width or None
            height = stream.codec_context.height or None
    except NotAVideo:
        raise
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise NotAVideo(f"{name}: not a video file FFmpeg can read", detail=repr(exc)) from None
    return MediaInfo(
        size=size,
        sha256=sha256,
        format=_friendly_format(fmt, suffix, brand),
        duration=round(duration, 3) if duration else None,
        width=width,
        height=height,
    )
