"""Read what the encoder actually produced: one fMP4 (CMAF) track per rendition.

Manifests are written from the media, not from the settings we asked ffmpeg for, so that
BANDWIDTH, CODECS and the DASH timeline are true by construction. Two sources of truth:

* the **init segment**, opened with PyAV for the codec's configuration record (the RFC 6381
  ``CODECS`` string comes from the real SPS profile/level bytes, not from ``-level``) and
  parsed for ``mdhd`` (timescale), ``elst`` (the presentation offset of B-frame delay and
  AAC priming) and ``trex`` (default sample duration);
* each **media segment**, parsed box by box (``tfdt`` + ``trun``): its earliest
  presentation time and exact duration in track ticks. That is cheap (no decoding) and is
  precisely what a DASH ``SegmentTimeline`` needs.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import av


class MediaFormatError(ValueError):
    """An init or media segment that is not the fMP4 we expect."""


@dataclass(frozen=True, slots=True)
class TrackInfo:
    """One track's decoding facts. ``start_offset`` is the media time (in ticks) shown at
    presentation time zero: the edit list's offset, or 0."""

    kind: str  # "video" or "audio"
    codecs: str
    timescale: int
    start_offset: int
    default_duration: int
    width: int | None = None
    height: int | None = None
    sample_rate: int | None = None
    channels: int | None = None


@dataclass(frozen=True, slots=True)
class SegmentTiming:
    """``start`` is the earliest presentation time, ``duration`` the sum of the sample
    durations, both in track ticks; ``size`` in bytes."""

    name: str
    size: int
    start: int
    duration: int


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int, int]]:
    """Yield ``(type, payload offset, box end)`` for the boxes in ``data[start:end]``."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise MediaFormatError(f"box {kind!r} overruns its parent")
        yield kind, pos + header, pos + size
        pos += size


def _find(data: bytes, path: tuple[bytes, ...], start: int = 0, end: int | None = None) -> int:
    """Payload offset of the first box at ``path`` (e.g. ``moov/trak/mdia/mdhd``), or -1."""
    for kind, payload, box_end in _boxes(data, start, end):
        if kind == path[0]:
            return payload if len(path) == 1 else _find(data, path[1:], payload, box_end)
    return -1


def _codecs(path: Path) -> tuple[str, Mapping[str, int | None]]:
    """The RFC 6381 codec string and picture/sound facts, from the codec configuration."""
    try:
        with av.open(str(path)) as container:
            for video in container.streams.video:
                extra = bytes(video.codec_context.extradata or b"")
                if video.codec_context.name != "h264" or len(extra) < 4 or extra[0] != 1:
                    raise MediaFormatError(f"{path.name}: not H.264 with an avcC record")
                ctx = video.codec_context
                return f"avc1.{extra[1:4].hex()}", {"width": ctx.width, "height": ctx.height}
            for audio in container.streams.audio:
                extra = bytes(audio.codec_context.extradata or b"")
                if audio.codec_context.name != "aac" or not extra:
                    raise MediaFormatError(f"{path.name}: not AAC with an AudioSpecificConfig")
                object_type = extra[0] >> 3
                if object_type == 31 and len(extra) > 1:  # escape: 32 + the next 6 bits
                    object_type = 32 + (((extra[0] & 7) << 3) | (extra[1] >> 5))
                actx = audio.codec_context
                facts: dict[str, int | None] = {
                    "sample_rate": actx.sample_rate,
                    "channels": actx.channels,
                }
                return f"mp4a.40.{object_type}", facts
    except av.FFmpegError as exc:
        raise MediaFormatError(f"{path.name}: {exc}") from None
    raise MediaFormatError(f"{path.name}: no audio or video stream")


def read_init(path: Path) -> TrackInfo:
    """Describe the single track of an init segment."""
    data = path.read_bytes()
    mdhd = _find(data, (b"moov", b"trak", b"mdia", b"mdhd"))
    hdlr = _find(data, (b"moov", b"trak", b"mdia", b"hdlr"))
    if mdhd < 0 or hdlr < 0:
        raise MediaFormatError(f"{path.name}: no track header")
    version = data[mdhd]
    (timescale,) = struct.unpack_from(">I", data, mdhd + (20 if version == 1 else 12))
    handler = data[hdlr + 8 : hdlr + 12]
    kind = {b"vide": "video", b"soun": "audio"}.get(handler)
    if kind is None or timescale <= 0:
        raise MediaFormatError(f"{path.name}: not an audio or video track")
    start_offset = 0
    elst = _find(data, (b"moov", b"trak", b"edts", b"elst"))
    if elst >= 0:
        version = data[elst]
        (count,) = struct.unpack_from(">I", data, elst + 4)
        fmt, step = (">Qq", 20) if version == 1 else (">Ii", 12)
        for i in range(count):
            _, media_time = struct.unpack_from(fmt, data, elst + 8 + i * step)
            if media_time >= 0:  # -1 is an empty edit (a delay); we produce none
                start_offset = media_time
                break
    trex = _find(data, (b"moov", b"mvex", b"trex"))
    default_duration = struct.unpack_from(">I", data, trex + 12)[0] if trex >= 0 else 0
    codecs, facts = _codecs(path)
    return TrackInfo(kind, codecs, timescale, start_offset, default_duration, **facts)


def _traf_timing(data: bytes, start: int, end: int, default_duration: int) -> tuple[int, int]:
    """``(earliest presentation time, total duration)`` of one track fragment."""
    decode_time: int | None = None
    duration = default_duration
    earliest: int | None = None
    total = 0
    for kind, payload, _box_end in _boxes(data, start, end):
        if kind == b"tfhd":
            flags = int.from_bytes(data[payload + 1 : payload + 4], "big")
            pos = payload + 8 + (8 if flags & 0x1 else 0) + (4 if flags & 0x2 else 0)
            if flags & 0x8:
                (duration,) = struct.unpack_from(">I", data, pos)
        elif kind == b"tfdt":
            fmt = ">Q" if data[payload] == 1 else ">I"
            (decode_time,) = struct.unpack_from(fmt, data, payload + 4)
        elif kind == b"trun":
            if decode_time is None:
                raise MediaFormatError("trun before tfdt")
            version, flags = data[payload], int.from_bytes(data[payload + 1 : payload + 4], "big")
            (count,) = struct.unpack_from(">I", data, payload + 4)
            pos = payload + 8 + (4 if flags & 0x1 else 0) + (4 if flags & 0x4 else 0)
            for _ in range(count):
                sample_duration, cts = duration, 0
                if flags & 0x100:
                    (sample_duration,) = struct.unpack_from(">I", data, pos)
                    pos += 4
                pos += (4 if flags & 0x200 else 0) + (4 if flags & 0x400 else 0)
                if flags & 0x800:
                    (cts,) = struct.unpack_from(">i" if version == 1 else ">I", data, pos)
                    pos += 4
                pts = decode_time + total + cts
                earliest = pts if earliest is None else min(earliest, pts)
                total += sample_duration
    if earliest is None:
        raise MediaFormatError("a fragment without samples")
    return earliest, total


def read_segment(path: Path, default_duration: int) -> SegmentTiming:
    """Time one media segment (all its ``moof`` boxes; we write one per segment)."""
    data = path.read_bytes()
    earliest: int | None = None
    total = 0
    try:
        for kind, payload, end in _boxes(data):
            if kind != b"moof":
                continue
            for inner, traf, traf_end in _boxes(data, payload, end):
                if inner == b"traf":
                    start, duration = _traf_timing(data, traf, traf_end, default_duration)
                    earliest = start if earliest is None else min(earliest, start)
                    total += duration
    except struct.error as exc:
        raise MediaFormatError(f"{path.name}: truncated box ({exc})") from None
    if earliest is None:
        raise MediaFormatError(f"{path.name}: no movie fragment")
    return SegmentTiming(path.name, len(data), earliest, total)


__all__ = ["MediaFormatError", "SegmentTiming", "TrackInfo", "read_init", "read_segment"]
