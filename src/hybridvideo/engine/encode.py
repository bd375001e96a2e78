"""Encode a master into an fMP4 (CMAF) ladder served as both HLS and DASH.

``build_command`` is pure: ONE ffmpeg invocation that decodes the source once, normalises
it (constant frame rate, 8-bit 4:2:0), ``split``s it into a scaler per rung and encodes
every rung with libx264 under the same GOP rules, so segment boundaries line up across
rungs and players can switch at any segment:

* a keyframe every 2 s at the same timestamps on every rung (``-force_key_frames``
  ``expr:gte(t,n_forced*2)`` plus ``-g``/``-keyint_min`` = 2 x fps and ``-sc_threshold 0``
  so x264 adds none of its own), closed GOPs;
* 6 s HLS segments (three GOPs), numbered from 1, ``independent_segments``;
* one shared AAC-LC stereo 48 kHz rendition (see :mod:`.packager` for why not muxed).

``encode`` runs it, measures what was produced, writes the manifests and a thumbnail.

Output folder (``out_dir``, owned by the encoder)::

    master.m3u8              HLS multivariant playlist   (appears once playable)
    video.mpd                DASH manifest               (appears once playable)
    v0/index.m3u8            HLS media playlist of rung 0 (the lowest)
    v0/init_v0.mp4           its init segment
    v0/seg_00001.m4s ...     its media segments, shared by HLS and DASH
    v1/ ... vN/              the other rungs, same layout
    audio/index.m3u8, audio/init_audio.mp4, audio/seg_00001.m4s ...
    thumbnail.jpg
    encode.json              written last: the encode is complete

**Lowest rung first.** With ``early_first_rung`` the lowest rung (and the audio) is encoded
alone, published (``master.m3u8``/``video.mpd`` naming only it) and announced through
``on_first_playable``; a second command then encodes the other rungs with the same GOP
settings (the keyframe timestamps are a function of the source's timeline, so they align)
and the manifests are replaced by the full ones. That costs a second decode of the source.
Without it, one command encodes everything and ``on_first_playable`` runs at the end.

Measured by ``bench/encode.py`` (60 s 1080p30, 2 cores; bench/RESULTS.md): one pass takes
0.87-1.01x the time of the same ladder as one hand-written ffmpeg command; the early
strategy makes the lowest rung playable after ~8 s instead of ~44 s but finishes 10-21%
later (the extra decode). ``DEFAULT_EARLY_FIRST_RUNG`` is therefore False, the choice that
keeps the engine within 5% of plain ffmpeg; callers that value time-to-playable over
throughput ask for the early strategy per call.

Content types for whoever serves the folder: ``.m3u8`` application/vnd.apple.mpegurl,
``.mpd`` application/dash+xml, ``.m4s`` video/iso.segment (or video/mp4), ``init_*.mp4``
video/mp4 (audio/mp4 for ``audio/``), ``.jpg`` image/jpeg. Every manifest refers to its
files relatively, names never start with a dot (temporary files always do), and media files
never change once a manifest names them, so they can be cached forever.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

from hybridvideo.engine.encode_result import AudioOutput, EncodeResult, RungOutput, write_result
from hybridvideo.engine.ffmpeg import FfmpegFailed, ffmpeg_exe, run_ffmpeg
from hybridvideo.engine.fmp4 import MediaFormatError
from hybridvideo.engine.ladder import Rung, plan_fps, plan_ladder
from hybridvideo.engine.packager import (
    AUDIO_ID,
    DASH_NAME,
    MASTER_NAME,
    PLAYLIST_NAME,
    SEGMENT_PATTERN,
    Rendition,
    measure,
    video_id,
    write_dash_manifest,
    write_master_playlist,
)
from hybridvideo.engine.source import (
    ERR_MALFORMED_VIDEO,
    ERR_UNKNOWN,
    EncodeError,
    SourceInfo,
    probe_source,
)

log = logging.getLogger(__name__)

DEFAULT_PRESET = "veryfast"
DEFAULT_EARLY_FIRST_RUNG = False
SEGMENT_SECONDS = 6
KEYFRAME_SECONDS = 2
THUMBNAIL_NAME = "thumbnail.jpg"
#: Deadline of each ffmpeg run: this many seconds per second of video, plus a base.
TIMEOUT_FACTOR = 10.0
TIMEOUT_BASE = 120.0
_OUR_FILES = frozenset({MASTER_NAME, DASH_NAME, THUMBNAIL_NAME, "encode.json", AUDIO_ID})
_OUR_ERRORS = ("No space left on device", "Permission denied", "Cannot allocate memory")


def build_command(
    source: Path,
    out_dir: Path,
    rungs: Sequence[Rung],
    fps: Fraction,
    has_audio: bool,
    *,
    preset: str = DEFAULT_PRESET,
    first_index: int = 0,
    video_map: str = "0:v:0",
    audio_map: str = "0:a:0",
    input_format: str | None = None,
    ffmpeg: str = "ffmpeg",
) -> list[str]:
    """The argv that encodes ``rungs`` (named ``v{first_index}``, ``v{first_index+1}``...)
    and, when ``has_audio``, the shared audio rendition, into ``out_dir``."""
    if not rungs:
        raise ValueError("nothing to encode")
    n = len(rungs)
    head = f"[{video_map}]fps={fps},format=yuv420p"
    scalers = [
        f"scale={r.width}:{r.height}:flags=bicubic,setsar=1[o{i}]" for i, r in enumerate(rungs)
    ]
    if n == 1:
        graph = f"{head},{scalers[0]}"
    else:
        outs = "".join(f"[s{i}]" for i in range(n))
        graph = ";".join(
            [f"{head},split={n}{outs}", *(f"[s{i}]{s}" for i, s in enumerate(scalers))]
        )
    gop = str(max(1, round(KEYFRAME_SECONDS * fps)))
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-y", "-v", "warning", "-nostats"]
    argv += ["-progress", "pipe:1"]
    if input_format:
        argv += ["-f", input_format]
    argv += ["-i", str(source), "-filter_complex", graph]
    for i in range(n):
        argv += ["-map", f"[o{i}]"]
    if has_audio:
        argv += ["-map", audio_map]
    argv += ["-c:v", "libx264", "-preset", preset, "-flags:v", "+cgop"]
    argv += ["-g", gop, "-keyint_min", gop, "-sc_threshold", "0"]
    argv += ["-force_key_frames", f"expr:gte(t,n_forced*{KEYFRAME_SECONDS})"]
    for i, r in enumerate(rungs):
        argv += [f"-b:v:{i}", f"{r.video_kbps}k", f"-maxrate:v:{i}", f"{r.maxrate_kbps}k"]
        argv += [f"-bufsize:v:{i}", f"{r.bufsize_kbps}k"]
        argv += [f"-profile:v:{i}", r.profile, f"-level:v:{i}", r.level]
    stream_map = [f"v:{i},name:{video_id(first_index + i)}" for i in range(n)]
    if has_audio:
        argv += ["-c:a", "aac", "-b:a", f"{rungs[0].audio_kbps}k", "-ac", "2", "-ar", "48000"]
        stream_map.append(f"a:0,name:{AUDIO_ID}")
    argv += ["-f", "hls", "-hls_segment_type", "fmp4", "-hls_time", str(SEGMENT_SECONDS)]
    argv += ["-hls_playlist_type", "vod", "-hls_flags", "independent_segments"]
    argv += ["-start_number", "1", "-hls_fmp4_init_filename", "init_%v.mp4"]
    argv += ["-hls_segment_filename", str(out_dir / "%v" / SEGMENT_PATTERN)]
    argv += ["-var_stream_map", " ".join(stream_map), str(out_dir / "%v" / PLAYLIST_NAME)]
    return argv


def make_thumbnail(
    source: Path,
    out_path: Path,
    *,
    at_seconds: float,
    width: int = 640,
    video_map: str = "0:v:0",
    input_format: str | None = None,
    timeout: float = 120,
) -> Path:
    """A JPEG of the displayed frame at ``at_seconds`` (or of the first frame, when the
    seek lands past the last one), ``width`` pixels wide; written under a temporary name
    and renamed, so ``out_path`` is never half a file."""
    tmp = out_path.with_name(f".{out_path.name}.tmp.jpg")
    vf = f"scale=trunc(iw*sar/2)*2:ih,setsar=1,scale={width}:-2"
    tail = ""
    for at in dict.fromkeys((max(0.0, at_seconds), 0.0)):
        argv = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-v", "error", "-ss", f"{at:.3f}"]
        argv += ["-f", input_format] if input_format else []
        argv += ["-i", str(source), "-map", video_map, "-frames:v", "1", "-vf", vf]
        argv += ["-q:v", "3", "-update", "1", "-f", "image2", str(tmp)]
        try:
            run_ffmpeg(argv, timeout=timeout)
        except FfmpegFailed as exc:
            tail = exc.stderr_tail
            continue
        if tmp.is_file() and tmp.stat().st_size:
            tmp.replace(out_path)
            return out_path
    raise EncodeError(ERR_MALFORMED_VIDEO, "no frame to make a thumbnail from", detail=tail)


class _Progress:
    """Maps ffmpeg's output time in each pass onto one rising 0..99 scale; 100 is sent
    only when everything is written. A failing callback is logged, never fatal."""

    def __init__(self, callback: Callable[[float], None] | None, duration: float) -> None:
        self._callback = callback
        self._duration = max(duration, 0.001)
        self._last = -1.0

    def emit(self, pct: float) -> None:
        pct = round(min(100.0, max(0.0, pct)), 1)
        if self._callback is None or pct <= self._last:
            return
        self._last = pct
        try:
            self._callback(pct)
        except Exception:  # progress is advisory: a DB hiccup must not kill the encode
            log.warning("on_progress callback failed", exc_info=True)

    def pass_reporter(self, start: float, share: float) -> Callable[[float], None]:
        return lambda seconds: self.emit(
            min(99.0, start + share * min(1.0, seconds / self._duration))
        )


def _pass_shares(rungs: Sequence[Rung], info: SourceInfo, early: bool) -> list[float]:
    """Rough cost of each pass in percent: decoding (about a third of encoding the same
    pixels at veryfast) plus encoding each rung's pixels."""
    if not early:
        return [100.0]
    decode = info.width * info.height / 3
    first = decode + rungs[0].width * rungs[0].height
    rest = decode + sum(r.width * r.height for r in rungs[1:])
    return [100 * first / (first + rest), 100 * rest / (first + rest)]


def _prepare(out_dir: Path) -> None:
    """Empty ``out_dir`` of a previous (complete or crashed) encode; refuse a folder that
    holds anything else, so a wrong path never costs someone's files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = list(out_dir.iterdir())
    for entry in entries:
        name = entry.name
        ours = (
            name in _OUR_FILES
            or (name.startswith(".") and ".tmp" in name and entry.is_file())
            or (name[:1] == "v" and name[1:].isdigit() and entry.is_dir())
        )
        if not ours:
            raise EncodeError(ERR_UNKNOWN, f"{out_dir} holds {name!r}: not an encoder output")
    _empty(out_dir)


def _empty(out_dir: Path) -> None:
    with contextlib.suppress(OSError):
        for entry in out_dir.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _check_whole(info: SourceInfo, stderr_tail: str, first: Rendition) -> None:
    """ffmpeg exits 0 on a truncated file: catch it by its log and by the duration."""
    expected = info.video_duration or info.duration
    if "partial file" in stderr_tail or first.duration < expected - max(1.0, 0.05 * expected):
        raise EncodeError(
            ERR_MALFORMED_VIDEO,
            f"the video ends early ({first.duration:.1f} s of {expected:.1f} s): "
            "the file is truncated or corrupt",
            detail=stderr_tail,
        )


def _run(
    source: Path,
    out_dir: Path,
    info: SourceInfo,
    *,
    thumbnail_pct: float,
    preset: str,
    early: bool,
    on_first_playable: Callable[[], None] | None,
    progress: _Progress,
) -> EncodeResult:
    rungs = plan_ladder(info.width, info.height, info.fps)
    fps = plan_fps(info.fps)
    has_audio = info.audio_stream is not None
    early = early and len(rungs) > 1
    passes = (
        [(0, rungs[:1], has_audio), (1, rungs[1:], False)] if early else [(0, rungs, has_audio)]
    )
    timeout = TIMEOUT_BASE + TIMEOUT_FACTOR * info.duration
    exe = ffmpeg_exe()
    videos: list[Rendition] = []
    audio: Rendition | None = None
    done = 0.0
    for (first, group, with_audio), share in zip(
        passes, _pass_shares(rungs, info, early), strict=True
    ):
        argv = build_command(
            source, out_dir, group, fps, with_audio, preset=preset, first_index=first,
            video_map=f"0:{info.video_stream}", audio_map=f"0:{info.audio_stream}",
            input_format=info.demuxer, ffmpeg=exe,
        )  # fmt: skip
        tail = run_ffmpeg(argv, timeout=timeout, on_time=progress.pass_reporter(done, share))
        done += share
        if tail.strip():
            log.info("ffmpeg warnings for %s: %s", source.name, tail[-1000:])
        videos += [measure(out_dir, video_id(first + i), fps) for i in range(len(group))]
        if with_audio:
            audio = measure(out_dir, AUDIO_ID)
        _check_whole(info, tail, videos[first])
        write_master_playlist(out_dir, videos, audio)
        write_dash_manifest(out_dir, videos, audio)
        if first == 0 and on_first_playable is not None:
            on_first_playable()
    # at 100% aim just before the last frame: a seek past it yields nothing
    length = info.video_duration or info.duration
    at = min(min(1.0, max(0.0, thumbnail_pct)) * length, max(0.0, length - 0.1))
    thumbnail = make_thumbnail(
        source,
        out_dir / THUMBNAIL_NAME,
        at_seconds=at,
        video_map=f"0:{info.video_stream}",
        input_format=info.demuxer,
    )
    result = EncodeResult(
        out_dir=out_dir,
        duration=round(max(r.duration for r in [*videos, *([audio] if audio else [])]), 3),
        width=info.width,
        height=info.height,
        fps=float(fps),
        size=info.size,
        rungs=[
            RungOutput.from_rendition(rung.name, v, audio, out_dir)
            for rung, v in zip(rungs, videos, strict=True)
        ],
        audio=AudioOutput.from_rendition(audio, out_dir) if audio else None,
        master_playlist=out_dir / MASTER_NAME,
        dash_manifest=out_dir / DASH_NAME,
        thumbnail=thumbnail,
    )
    write_result(result)
    return result


def encode(
    source: Path,
    out_dir: Path,
    *,
    thumbnail_pct: float = 0.0,
    preset: str = DEFAULT_PRESET,
    early_first_rung: bool = DEFAULT_EARLY_FIRST_RUNG,
    on_first_playable: Callable[[], None] | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> EncodeResult:
    """Encode ``source`` into ``out_dir`` (see the module docstring for the layout).

    ``thumbnail_pct`` is Cloudflare's ``thumbnailTimestampPct`` (0.0-1.0 of the duration).
    ``on_first_playable()`` runs once the lowest rung is published (``readyToStream``);
    ``on_progress(pct)`` receives rising values and 100 once complete (``pctComplete``).
    Raises only :class:`EncodeError`; on failure ``out_dir`` is emptied, so nothing
    half-written can be mistaken for an encode (``encode.json`` marks a complete one).
    """
    prepared = False
    try:
        info = probe_source(source)
        progress = _Progress(on_progress, info.video_duration or info.duration)
        _prepare(out_dir)
        prepared = True
        result = _run(
            source, out_dir, info, thumbnail_pct=thumbnail_pct, preset=preset,
            early=early_first_rung, on_first_playable=on_first_playable, progress=progress,
        )  # fmt: skip
    except Exception as exc:
        if prepared:
            _empty(out_dir)
        raise _as_encode_error(exc) from None
    progress.emit(100.0)
    return result


def _as_encode_error(exc: Exception) -> EncodeError:
    if isinstance(exc, EncodeError):
        return exc
    if isinstance(exc, FfmpegFailed):
        ours = exc.timed_out or any(s in exc.stderr_tail for s in _OUR_ERRORS)
        code = ERR_UNKNOWN if ours else ERR_MALFORMED_VIDEO
        text = str(exc) if ours else "the video could not be decoded"
        return EncodeError(code, text, detail=exc.stderr_tail)
    if isinstance(exc, MediaFormatError):
        return EncodeError(
            ERR_MALFORMED_VIDEO, "the encoder produced no usable media", detail=str(exc)
        )
    log.exception("encode failed unexpectedly")
    return EncodeError(ERR_UNKNOWN, "the encode failed", detail=repr(exc))


__all__ = [
    "DEFAULT_EARLY_FIRST_RUNG",
    "AudioOutput",
    "EncodeError",
    "EncodeResult",
    "RungOutput",
    "build_command",
    "encode",
    "make_thumbnail",
    "write_dash_manifest",
]
