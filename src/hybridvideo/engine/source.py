"""Inspect a master before encoding it, and name failures with Cloudflare's reason codes.

Cloudflare Stream reports a failed video with ``status.errorReasonCode``; the encoder uses
the same codes so the engine's API can pass them through unchanged:

* ``ERR_NON_VIDEO``: no demuxer we accept reads it as a container with a moving picture
  (text, images, audio-only files, unknown bytes);
* ``ERR_MALFORMED_VIDEO``: it *looks* like a video (a known container signature, or a
  video stream was found) but cannot be demuxed or decoded to the end;
* ``ERR_DURATION_TOO_SHORT``: under 0.1 s;
* ``ERR_DURATION_EXCEED_CONSTRAINT``: longer than the video's ``maxDurationSeconds``
  (set on a direct/tus upload or by an edit), checked before anything is encoded;
* ``ERR_UNKNOWN``: anything else (our side: disk, timeout, a bug).

Only container formats from Cloudflare's accepted list (plus raw H.264/HEVC/MPEG-4
elementary streams) are accepted, and the ffmpeg command is then pinned to the demuxer
PyAV chose (``-f``): a crafted file can never reach a demuxer that opens other files or
URLs (``hls``, ``concat``, ``tty`` ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from hybridvideo.errors import HybridVideoError

ERR_NON_VIDEO = "ERR_NON_VIDEO"
ERR_MALFORMED_VIDEO = "ERR_MALFORMED_VIDEO"
ERR_DURATION_TOO_SHORT = "ERR_DURATION_TOO_SHORT"
ERR_DURATION_EXCEED_CONSTRAINT = "ERR_DURATION_EXCEED_CONSTRAINT"
ERR_UNKNOWN = "ERR_UNKNOWN"
MIN_DURATION = 0.1

#: PyAV demuxer names (first of FFmpeg's comma list) we hand to ffmpeg's ``-f``.
ACCEPTED_DEMUXERS = frozenset(
    {"mov", "matroska", "avi", "flv", "mpegts", "mpeg", "mpegvideo", "mxf", "lxf", "gxf"}
    | {"asf", "ogg", "dv", "h264", "hevc", "m4v"}
)
_STILL = av.stream.Disposition


class EncodeError(HybridVideoError):
    """An encode that failed; ``code`` is one of Cloudflare's ``ERR_*`` reason codes and
    ``text`` the human explanation (``errorReasonText``); ``detail`` keeps ffmpeg's tail."""

    code = ERR_UNKNOWN

    def __init__(self, code: str, text: str, *, detail: str | None = None) -> None:
        super().__init__(text, detail=detail)
        self.code = code
        self.text = text


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What encoding needs to know. ``width``/``height`` are the *displayed* size (after
    rotation and pixel aspect ratio); ``video_duration`` is the video stream's own."""

    size: int
    demuxer: str
    duration: float
    video_duration: float | None
    width: int
    height: int
    fps: Fraction
    video_stream: int
    audio_stream: int | None


def _looks_like_video(path: Path) -> bool:
    """A video container's signature: worth ``ERR_MALFORMED_VIDEO`` rather than
    ``ERR_NON_VIDEO`` when the demuxer then fails (e.g. an MP4 cut before its ``moov``)."""
    with path.open("rb") as fh:
        head = fh.read(400)
    return (
        head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")
        or head.startswith((b"\x1a\x45\xdf\xa3", b"FLV", b"\x00\x00\x01\xba", b"OggS"))
        or head.startswith((b"\x06\x0e\x2b\x34", b"\x30\x26\xb2\x75"))
        or (head[:4] == b"RIFF" and head[8:11] == b"AVI")
        or (len(head) > 188 and head[0] == 0x47 and head[188] == 0x47)
    )


def _stream_seconds(stream: av.stream.Stream) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


def _scan_duration(path: Path, index: int) -> float | None:
    """Demux (no decoding) to the end when the header gives no duration."""
    first: float | None = None
    last = 0.0
    with av.open(str(path)) as container:
        stream = container.streams[index]
        for packet in container.demux(stream):
            if packet.pts is None or packet.time_base is None:
                continue
            t = float(packet.pts * packet.time_base)
            first = t if first is None else min(first, t)
            last = max(last, t + float((packet.duration or 0) * packet.time_base))
    return None if first is None else last - first


def probe_source(path: Path) -> SourceInfo:
    """Open ``path`` with PyAV and decode its first frame; raise :class:`EncodeError`."""
    if not path.is_file():
        raise EncodeError(ERR_UNKNOWN, f"{path.name}: the source file is missing")
    size = path.stat().st_size
    if size == 0:
        raise EncodeError(ERR_NON_VIDEO, "the file is empty")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        code = ERR_MALFORMED_VIDEO if _looks_like_video(path) else ERR_NON_VIDEO
        raise EncodeError(code, "the file cannot be read as a video", detail=repr(exc)) from None
    try:
        with container:
            demuxer = container.format.name.split(",")[0]
            if demuxer not in ACCEPTED_DEMUXERS:
                raise EncodeError(ERR_NON_VIDEO, f"unsupported format ({demuxer})")
            moving = [
                v
                for v in container.streams.video
                if not v.disposition & (_STILL.attached_pic | _STILL.still_image)
            ]
            if not moving:
                raise EncodeError(ERR_NON_VIDEO, "the file has no video stream")
            video = moving[0]
            frame = next(container.decode(video), None)
            if frame is None:
                raise EncodeError(ERR_MALFORMED_VIDEO, "the video stream has no decodable frame")
            width, height = frame.width, frame.height
            sar = video.sample_aspect_ratio
            if sar and sar > 0 and sar != 1:
                width = round(width * sar)
            if abs(int(frame.rotation or 0)) % 180 == 90:
                width, height = height, width
            fps = video.average_rate or video.guessed_rate or video.base_rate or Fraction(30)
            video_duration = _stream_seconds(video)
            duration = container.duration / av.time_base if container.duration else None
            audio = container.streams.audio[0].index if container.streams.audio else None
            video_index = video.index
    except EncodeError:
        raise
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise EncodeError(
            ERR_MALFORMED_VIDEO, "the video cannot be decoded", detail=repr(exc)
        ) from None
    if duration is None and video_duration is None:
        try:
            video_duration = _scan_duration(path, video_index)
        except (av.FFmpegError, ValueError) as exc:
            raise EncodeError(
                ERR_MALFORMED_VIDEO, "the video cannot be demuxed", detail=repr(exc)
            ) from None
    best = video_duration if video_duration is not None else duration
    if best is None or best < MIN_DURATION:
        raise EncodeError(ERR_DURATION_TOO_SHORT, f"the video is shorter than {MIN_DURATION} s")
    return SourceInfo(
        size=size,
        demuxer=demuxer,
        duration=duration or best,
        video_duration=video_duration,
        width=width,
        height=height,
        fps=Fraction(fps),
        video_stream=video_index,
        audio_stream=audio,
    )


def check_max_duration(path: Path, max_seconds: int) -> None:
    """Refuse a source longer than ``max_seconds`` (Cloudflare's ``maxDurationSeconds``).

    Probed before the encode so an over-long upload costs one probe, not a whole ladder.
    """
    duration = probe_source(path).duration
    if duration > max_seconds:
        raise EncodeError(
            ERR_DURATION_EXCEED_CONSTRAINT,
            f"the video is {duration:.1f} s long; maxDurationSeconds is {max_seconds}",
        )


__all__ = [
    "ERR_DURATION_EXCEED_CONSTRAINT",
    "ERR_DURATION_TOO_SHORT",
    "ERR_MALFORMED_VIDEO",
    "ERR_NON_VIDEO",
    "ERR_UNKNOWN",
    "EncodeError",
    "SourceInfo",
    "check_max_duration",
    "probe_source",
]
