"""What an encode produced, and the ``encode.json`` file that marks it complete.

``encode.json`` is written last (atomically): a folder without it is an encode in progress
or a crashed one, never something to present as ready. It holds :meth:`EncodeResult.to_dict`
with paths relative to the folder, so the folder can be moved or copied to object storage
as is, and :func:`read_result` rebuilds the result from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybridvideo.engine.packager import Rendition, variant_codecs, write_atomic

RESULT_NAME = "encode.json"
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class RungOutput:
    """One video variant, as its ``EXT-X-STREAM-INF`` line declares it: ``bandwidth`` and
    ``average_bandwidth`` include the audio rendition and ``codecs`` lists both codecs."""

    name: str
    width: int
    height: int
    bandwidth: int
    average_bandwidth: int
    codecs: str
    playlist: Path
    init: Path
    segments: list[Path]

    @classmethod
    def from_rendition(
        cls, name: str, video: Rendition, audio: Rendition | None, out_dir: Path
    ) -> RungOutput:
        extra_peak = audio.peak_bandwidth if audio else 0
        extra_avg = audio.average_bandwidth if audio else 0
        return cls(
            name=name,
            width=video.track.width or 0,
            height=video.track.height or 0,
            bandwidth=video.peak_bandwidth + extra_peak,
            average_bandwidth=video.average_bandwidth + extra_avg,
            codecs=variant_codecs(video, audio),
            playlist=out_dir / video.playlist,
            init=out_dir / video.init,
            segments=[out_dir / p for p in video.segment_paths],
        )


@dataclass(frozen=True, slots=True)
class AudioOutput:
    """The shared audio rendition (AAC-LC)."""

    bandwidth: int
    average_bandwidth: int
    codecs: str
    sample_rate: int
    channels: int
    playlist: Path
    init: Path
    segments: list[Path]

    @classmethod
    def from_rendition(cls, audio: Rendition, out_dir: Path) -> AudioOutput:
        return cls(
            bandwidth=audio.peak_bandwidth,
            average_bandwidth=audio.average_bandwidth,
            codecs=audio.track.codecs,
            sample_rate=audio.track.sample_rate or 0,
            channels=audio.track.channels or 0,
            playlist=out_dir / audio.playlist,
            init=out_dir / audio.init,
            segments=[out_dir / p for p in audio.segment_paths],
        )


@dataclass(frozen=True, slots=True)
class EncodeResult:
    """A finished encode. ``width``/``height``/``size`` describe the *source* (Cloudflare's
    ``input`` and ``size``), ``duration`` and ``fps`` the output; paths are absolute."""

    out_dir: Path
    duration: float
    width: int
    height: int
    fps: float
    size: int
    rungs: list[RungOutput]
    audio: AudioOutput | None
    master_playlist: Path
    dash_manifest: Path
    thumbnail: Path

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible, with every path relative to ``out_dir`` (POSIX separators)."""

        def rel(p: Path) -> str:
            return p.relative_to(self.out_dir).as_posix()

        def media(o: RungOutput | AudioOutput) -> dict[str, Any]:
            return {"playlist": rel(o.playlist), "init": rel(o.init),
                    "segments": [rel(s) for s in o.segments]}  # fmt: skip

        audio = None
        if self.audio is not None:
            a = self.audio
            audio = {"bandwidth": a.bandwidth, "average_bandwidth": a.average_bandwidth,
                     "codecs": a.codecs, "sample_rate": a.sample_rate, "channels": a.channels,
                     **media(a)}  # fmt: skip
        return {
            "version": FORMAT_VERSION,
            "duration": self.duration,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "size": self.size,
            "rungs": [
                {
                    "name": r.name,
                    "width": r.width,
                    "height": r.height,
                    "bandwidth": r.bandwidth,
                    "average_bandwidth": r.average_bandwidth,
                    "codecs": r.codecs,
                    **media(r),
                }
                for r in self.rungs
            ],  # fmt: skip
            "audio": audio,
            "master_playlist": rel(self.master_playlist),
            "dash_manifest": rel(self.dash_manifest),
            "thumbnail": rel(self.thumbnail),
        }


def write_result(result: EncodeResult) -> Path:
    text = json.dumps(result.to_dict(), indent=1)
    return write_atomic(result.out_dir / RESULT_NAME, text + "\n")


def read_result(out_dir: Path) -> EncodeResult | None:
    """The complete encode in ``out_dir``, or None when there is none (yet)."""
    try:
        data = json.loads((out_dir / RESULT_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None

    def paths(d: dict[str, Any]) -> dict[str, Any]:
        return {"playlist": out_dir / d["playlist"], "init": out_dir / d["init"],
                "segments": [out_dir / s for s in d["segments"]]}  # fmt: skip

    audio = data["audio"]
    return EncodeResult(
        out_dir=out_dir,
        duration=data["duration"],
        width=data["width"],
        height=data["height"],
        fps=data["fps"],
        size=data["size"],
        rungs=[
            RungOutput(
                **{k: v for k, v in r.items() if k not in ("playlist", "init", "segments")},
                **paths(r),
            )
            for r in data["rungs"]
        ],  # fmt: skip
        audio=AudioOutput(
            **{k: v for k, v in audio.items() if k not in ("playlist", "init", "segments")},
            **paths(audio),
        )
        if audio
        else None,
        master_playlist=out_dir / data["master_playlist"],
        dash_manifest=out_dir / data["dash_manifest"],
        thumbnail=out_dir / data["thumbnail"],
    )


__all__ = [
    "RESULT_NAME",
    "AudioOutput",
    "EncodeResult",
    "RungOutput",
    "read_result",
    "write_result",
]
