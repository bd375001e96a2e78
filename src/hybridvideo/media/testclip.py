"""Generate small real clips with FFmpeg's test sources (demos, tests, benchmarks).

Uses the static ffmpeg inside the ``imageio-ffmpeg`` wheel, so it works on a machine with
no system ffmpeg.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import imageio_ffmpeg

from hybridvideo.errors import InvalidInput

_SIZE = re.compile(r"^\d{2,4}x\d{2,4}$")


def make_test_clip(
    out: Path, *, seconds: float = 3.0, size: str = "320x180", fps: int = 25
) -> Path:
    """Write an H.264/AAC MP4 of ``testsrc2`` with a 440 Hz tone to ``out``."""
    if not 0 < seconds <= 600:
        raise InvalidInput("seconds must be in (0, 600]")
    if not _SIZE.match(size):
        raise InvalidInput("size must look like 320x180")
    if not 1 <= fps <= 120:
        raise InvalidInput("fps must be 1-120")
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-shortest", "-movflags", "+faststart", str(out),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise InvalidInput(f"ffmpeg could not write {out.name}", detail=result.stderr[-2000:])
    return out
