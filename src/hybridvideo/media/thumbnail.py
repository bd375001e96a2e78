"""A poster frame for a master: one JPEG, taken a little way in, at most 640 px wide.

Done with PyAV (FFmpeg's libraries from the wheel) on a path or a seekable file object, so
it works on an archive object through :class:`~hybridvideo.media.reader.ArchiveReader`
without downloading the master. The first second is often black (fade-in, slate), so the
frame is taken at 10 % of the duration, capped at 5 s.
"""

from __future__ import annotations

import io
from typing import BinaryIO

import av

from hybridvideo.errors import NotAVideo

MAX_WIDTH = 640


def _position(duration: float | None) -> float:
    if not duration or duration <= 0:
        return 0.0
    return min(duration * 0.1, 5.0)


def make_thumbnail(source: str | BinaryIO, *, duration: float | None) -> bytes:
    """JPEG bytes of a frame near :func:`_position`; ``NotAVideo`` if none decodes."""
    try:
        with av.open(source, mode="r") as container:
            stream = container.streams.video[0]
            at = _position(duration)
            if at > 0 and stream.time_base:
                container.seek(int(at / stream.time_base), stream=stream, backward=True)
            frame = None
            for candidate in container.decode(stream):
                frame = candidate
                if candidate.time is None or candidate.time >= at:
                    break
            if frame is None:
                raise NotAVideo("no frame to make a thumbnail from")
            width = min(frame.width, MAX_WIDTH)
            height = max(2, round(frame.height * width / frame.width / 2) * 2)
            picture = frame.reformat(width=width, height=height, format="yuvj420p")
    except NotAVideo:
        raise
    except (av.FFmpegError, IndexError, ValueError) as exc:
        raise NotAVideo("could not decode a frame for the thumbnail", detail=repr(exc)) from None
    out = io.BytesIO()
    with av.open(out, mode="w", format="mjpeg") as target:
        encoder = target.add_stream("mjpeg", rate=1)
        encoder.width = width
        encoder.height = height
        encoder.pix_fmt = "yuvj420p"
        for packet in encoder.encode(picture):
            target.mux(packet)
        for packet in encoder.encode(None):
            target.mux(packet)
    return out.getvalue()


__all__ = ["make_thumbnail"]
