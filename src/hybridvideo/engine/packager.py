"""Write the HLS master playlist and the DASH manifest from the measured renditions.

One set of fMP4 files serves both protocols: ffmpeg writes ``<id>/init_<id>.mp4``,
``<id>/seg_00001.m4s``... and one HLS media playlist per rendition (``<id>/index.m3u8``);
this module adds

* ``master.m3u8``: every variant with CODECS, RESOLUTION, FRAME-RATE and both bandwidths
  **measured** from the segments (peak = the highest segment bit rate, as RFC 8216 defines
  BANDWIDTH; average = bytes over duration), plus the audio rendition's share, since the
  player downloads both. ffmpeg 9's own master has no FRAME-RATE and derives BANDWIDTH from
  the requested rates, and a two-pass encode would have it overwrite a playable master with
  a partial one, so we never ask ffmpeg for one.
* ``video.mpd``: a static DASH presentation (``isoff-live`` profile: separate segments,
  addressed by a ``SegmentTemplate`` whose ``$Number%05d$`` names exactly the files the HLS
  playlists list, and whose ``SegmentTimeline`` carries each segment's exact time). The
  edit list's offset becomes ``presentationTimeOffset``, so audio and video start together
  in DASH players that ignore edit lists.

Audio is one shared rendition (an HLS ``EXT-X-MEDIA`` group, a DASH audio AdaptationSet),
not muxed into each rung: DASH players expect one media type per AdaptationSet, hls.js
handles alternate audio natively, the audio is encoded and stored once, and switching
rungs never refetches it.

Manifests are replaced atomically (write + rename), so a reader never sees half a file.
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from hybridvideo.engine.fmp4 import (
    MediaFormatError,
    SegmentTiming,
    TrackInfo,
    read_init,
    read_segment,
)

MASTER_NAME = "master.m3u8"
DASH_NAME = "video.mpd"
PLAYLIST_NAME = "index.m3u8"
AUDIO_ID = "audio"
#: ffmpeg's segment pattern and the DASH template that names the same files.
SEGMENT_PATTERN = "seg_%05d.m4s"
SEGMENT_TEMPLATE = "seg_$Number%05d$.m4s"
FIRST_SEGMENT = 1
AUDIO_GROUP = "audio"
_DASH_NS = "urn:mpeg:dash:schema:mpd:2011"
_DASH_PROFILE = "urn:mpeg:dash:profile:isoff-live:2011"


def video_id(index: int) -> str:
    """Directory and rendition id of rung ``index`` (``v0`` is the lowest)."""
    return f"v{index}"


@dataclass(frozen=True, slots=True)
class Rendition:
    """One encoded track as produced on disk; paths are relative to the output folder."""

    id: str
    track: TrackInfo
    playlist: str
    init: str
    segments: tuple[SegmentTiming, ...]
    frame_rate: Fraction | None = None

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.segments) / self.track.timescale

    @property
    def segment_paths(self) -> list[str]:
        return [f"{self.id}/{s.name}" for s in self.segments]

    @property
    def peak_bandwidth(self) -> int:
        """Bits per second of the most expensive segment."""
        ts = self.track.timescale
        return max(math.ceil(s.size * 8 * ts / s.duration) for s in self.segments if s.duration)

    @property
    def average_bandwidth(self) -> int:
        total = sum(s.size for s in self.segments)
        return math.ceil(total * 8 / self.duration) if self.duration else 0


def measure(out_dir: Path, rendition_id: str, frame_rate: Fraction | None = None) -> Rendition:
    """Read a finished rendition: its HLS playlist, init segment and every media segment.

    Raises :class:`MediaFormatError` when the playlist is unfinished or names files that do
    not follow :data:`SEGMENT_PATTERN` from :data:`FIRST_SEGMENT` (the DASH template would
    then point elsewhere than HLS)."""
    folder = out_dir / rendition_id
    text = (folder / PLAYLIST_NAME).read_text(encoding="utf-8")
    if "#EXT-X-ENDLIST" not in text:
        raise MediaFormatError(f"{rendition_id}: the playlist is not finished")
    init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', text)
    names = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if init is None or not names:
        raise MediaFormatError(f"{rendition_id}: the playlist has no init or no segment")
    expected = [SEGMENT_PATTERN % n for n in range(FIRST_SEGMENT, FIRST_SEGMENT + len(names))]
    if names != expected:
        raise MediaFormatError(f"{rendition_id}: unexpected segment names {names[:3]}...")
    track = read_init(folder / init.group(1))
    segments = tuple(read_segment(folder / n, track.default_duration) for n in names)
    return Rendition(
        id=rendition_id,
        track=track,
        playlist=f"{rendition_id}/{PLAYLIST_NAME}",
        init=f"{rendition_id}/{init.group(1)}",
        segments=segments,
        frame_rate=frame_rate,
    )


def variant_codecs(video: Rendition, audio: Rendition | None) -> str:
    """The variant's CODECS: its own video codec and the audio group's codec."""
    return ",".join(r.track.codecs for r in (video, audio) if r is not None)


def master_playlist(videos: Sequence[Rendition], audio: Rendition | None) -> str:
    """The HLS multivariant playlist, lowest rung first (players start there and climb)."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    if audio is not None:
        lines.append(
            f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="{AUDIO_GROUP}",NAME="Audio",DEFAULT=YES,'
            f'AUTOSELECT=YES,CHANNELS="{audio.track.channels or 2}",URI="{audio.playlist}"'
        )
    for video in videos:
        peak, avg = video.peak_bandwidth, video.average_bandwidth
        if audio is not None:
            peak, avg = peak + audio.peak_bandwidth, avg + audio.average_bandwidth
        attrs = [
            f"BANDWIDTH={peak}",
            f"AVERAGE-BANDWIDTH={avg}",
            f'CODECS="{variant_codecs(video, audio)}"',
            f"RESOLUTION={video.track.width}x{video.track.height}",
        ]
        if video.frame_rate:
            attrs.append(f"FRAME-RATE={float(video.frame_rate):.3f}")
        if audio is not None:
            attrs.append(f'AUDIO="{AUDIO_GROUP}"')
        attrs.append("CLOSED-CAPTIONS=NONE")
        lines += ["#EXT-X-STREAM-INF:" + ",".join(attrs), video.playlist]
    return "\n".join(lines) + "\n"


def _iso_duration(seconds: float) -> str:
    return f"PT{seconds:.3f}S"


def _segment_template(parent: ET.Element, rendition: Rendition) -> None:
    track = rendition.track
    attrs = {
        "timescale": str(track.timescale),
        "initialization": rendition.init,
        "media": f"{rendition.id}/{SEGMENT_TEMPLATE}",
        "startNumber": str(FIRST_SEGMENT),
    }
    if track.start_offset:
        attrs["presentationTimeOffset"] = str(track.start_offset)
    timeline = ET.SubElement(ET.SubElement(parent, "SegmentTemplate", attrs), "SegmentTimeline")
    expected_next: int | None = None
    last: ET.Element | None = None
    for seg in rendition.segments:
        contiguous = seg.start == expected_next
        if contiguous and last is not None and last.get("d") == str(seg.duration):
            last.set("r", str(int(last.get("r", "0")) + 1))
        else:
            attrs = {"d": str(seg.duration)}
            if not contiguous:
                attrs = {"t": str(seg.start), **attrs}
            last = ET.SubElement(timeline, "S", attrs)
        expected_next = seg.start + seg.duration


def _video_set(period: ET.Element, videos: Sequence[Rendition]) -> None:
    top = max(videos, key=lambda r: (r.track.width or 0) * (r.track.height or 0))
    width, height = top.track.width or 0, top.track.height or 0
    par = Fraction(width, height) if width and height else Fraction(16, 9)
    attrs = {
        "id": "0",
        "contentType": "video",
        "mimeType": "video/mp4",
        "segmentAlignment": "true",
        "startWithSAP": "1",
        "maxWidth": str(width),
        "maxHeight": str(height),
        "par": f"{par.numerator}:{par.denominator}",
    }
    if top.frame_rate:
        attrs["maxFrameRate"] = str(top.frame_rate)
    aset = ET.SubElement(period, "AdaptationSet", attrs)
    for video in videos:
        rep = {
            "id": video.id,
            "codecs": video.track.codecs,
            "bandwidth": str(video.peak_bandwidth),
            "width": str(video.track.width),
            "height": str(video.track.height),
            "sar": "1:1",
        }
        if video.frame_rate:
            rep["frameRate"] = str(video.frame_rate)
        _segment_template(ET.SubElement(aset, "Representation", rep), video)


def _audio_set(period: ET.Element, audio: Rendition) -> None:
    aset = ET.SubElement(
        period,
        "AdaptationSet",
        {
            "id": "1",
            "contentType": "audio",
            "mimeType": "audio/mp4",
            "lang": "und",
            "segmentAlignment": "true",
            "startWithSAP": "1",
        },
    )
    rep = ET.SubElement(
        aset,
        "Representation",
        {
            "id": audio.id,
            "codecs": audio.track.codecs,
            "bandwidth": str(audio.peak_bandwidth),
            "audioSamplingRate": str(audio.track.sample_rate or 48000),
        },
    )
    ET.SubElement(
        rep,
        "AudioChannelConfiguration",
        {
            "schemeIdUri": "urn:mpeg:dash:23003:3:audio_channel_configuration:2011",
            "value": str(audio.track.channels or 2),
        },
    )
    _segment_template(rep, audio)


def dash_mpd(videos: Sequence[Rendition], audio: Rendition | None) -> str:
    """A static MPD over the same files as HLS; ``@bandwidth`` is the peak segment rate,
    which with ``minBufferTime`` = the longest segment satisfies DASH's buffer model."""
    everything = [*videos, *([audio] if audio else [])]
    longest = max(s.duration / r.track.timescale for r in everything for s in r.segments)
    mpd = ET.Element(
        "MPD",
        {
            "xmlns": _DASH_NS,
            "profiles": _DASH_PROFILE,
            "type": "static",
            "mediaPresentationDuration": _iso_duration(max(r.duration for r in everything)),
            "minBufferTime": _iso_duration(longest),
        },
    )
    period = ET.SubElement(mpd, "Period", {"id": "0", "start": "PT0S"})
    _video_set(period, videos)
    if audio is not None:
        _audio_set(period, audio)
    ET.indent(mpd)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(mpd, encoding="unicode") + "\n"


def write_atomic(path: Path, text: str) -> Path:
    """Replace ``path`` in one rename, so readers see the old or the new file, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_master_playlist(
    out_dir: Path, videos: Sequence[Rendition], audio: Rendition | None
) -> Path:
    return write_atomic(out_dir / MASTER_NAME, master_playlist(videos, audio))


def write_dash_manifest(
    out_dir: Path, rungs_info: Sequence[Rendition], audio: Rendition | None = None
) -> Path:
    """Write ``video.mpd`` for these video rungs (and the shared audio) into ``out_dir``."""
    if not rungs_info:
        raise ValueError("a DASH manifest needs at least one video rendition")
    return write_atomic(out_dir / DASH_NAME, dash_mpd(rungs_info, audio))


__all__ = [
    "AUDIO_ID",
    "DASH_NAME",
    "MASTER_NAME",
    "Rendition",
    "dash_mpd",
    "master_playlist",
    "measure",
    "video_id",
    "write_dash_manifest",
    "write_master_playlist",
]
