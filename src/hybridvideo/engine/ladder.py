"""Plan the bitrate ladder for one source: which rungs, at what size, rate and H.264 level.

Pure and stdlib-only, so every rule is unit-tested without ffmpeg.

**Reference rungs** (16:9, H.264 High, 8-bit 4:2:0), after Apple's *HLS Authoring
Specification for Apple Devices*, "Video" section, table of recommended variants (H.264):
416x234 @ 145 kb/s, 640x360 @ 365, 768x432 @ 730 and 1100, 960x540 @ 2000, 1280x720 @ 3000
and 4500, 1920x1080 @ 6000 and 7800 (average bit rates). We keep four of them, one per
common picture height, which is also the shape of Cloudflare Stream's public ladder:

=======  ==========  =======  ==========================================================
rung     box         kb/s     note
=======  ==========  =======  ==========================================================
360p     640x360       730    Apple's 432p rate at 360p: 365 kb/s is too soft for detail
540p     960x540      2000    Apple
720p     1280x720     3000    Apple (the 4500 kb/s twin is dropped)
1080p    1920x1080    6000    Apple (the 7800 kb/s twin is dropped)
=======  ==========  =======  ==========================================================

Our own rules on top (Apple gives no numbers for them):

* **Aspect ratio is kept.** Each rung is a bounding box (turned on its side for portrait
  sources, so a 1080x1920 phone video gets 360x640 ... 1080x1920); the picture is scaled to
  fit it with even dimensions, and the bit rate scales with the pixel area actually used
  (a 4:3 picture in the 360p box uses 75% of the pixels, so 75% of the rate).
* **Never upscale.** A rung is planned only when the source reaches its box (within 15%,
  so a 1900x1060 crop still gets a 1080p-class rung at its own size instead of stopping at
  720p); its size is then clamped to the source's. A source smaller than the 360p box gets a
  single rung at its own size.
* **Frame rate** is the source's, capped at 60 by dropping every n-th frame (120 -> 60,
  100 -> 50: an integer divisor, so no judder). Above 30 fps a rung gets up to 1.5x the
  rate (linearly to 60 fps), the usual allowance for high-frame-rate H.264.
* **Peaks**: ``maxrate`` 1.5x and VBV ``bufsize`` 2x the average, inside Apple's rule that a
  VOD peak stays under 200% of the average.
* **Level**: the lowest H.264 level (3.0 or above) whose frame size, macroblock rate,
  bit rate and buffer limits hold the rung (ITU-T H.264 Table A-1, High-profile 1.25x).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

#: (name, box width, box height, reference average kb/s) for a 16:9 landscape picture.
REFERENCE_RUNGS: tuple[tuple[str, int, int, int], ...] = (
    ("360p", 640, 360, 730),
    ("540p", 960, 540, 2000),
    ("720p", 1280, 720, 3000),
    ("1080p", 1920, 1080, 6000),
)
AUDIO_KBPS = 128
MAX_FPS = 60
#: A source this close to a box (fraction of its limiting side) still gets that rung.
REACH = 0.85
MIN_VIDEO_KBPS = 145  # Apple's lowest recommended rung
PEAK_FACTOR = 1.5
BUFFER_FACTOR = 2.0
PROFILE = "high"

# ITU-T H.264 Table A-1: level -> (MaxMBPS, MaxFS in macroblocks, MaxBR kb/s, MaxCPB kb/s),
# BR/CPB already multiplied by 1.25 for the High profile (Table A-2).
_LEVELS: tuple[tuple[str, int, int, int, int], ...] = (
    ("3.0", 40_500, 1_620, 12_500, 12_500),
    ("3.1", 108_000, 3_600, 17_500, 17_500),
    ("3.2", 216_000, 5_120, 25_000, 25_000),
    ("4.0", 245_760, 8_192, 25_000, 31_250),
    ("4.1", 245_760, 8_192, 62_500, 78_125),
    ("4.2", 522_240, 8_704, 62_500, 78_125),
    ("5.0", 589_824, 22_080, 168_750, 168_750),
    ("5.1", 983_040, 36_864, 300_000, 300_000),
    ("5.2", 2_073_600, 36_864, 300_000, 300_000),
)


@dataclass(frozen=True, slots=True)
class Rung:
    """One rendition of the ladder; rates in kb/s, ``level`` as ffmpeg spells it (``3.1``)."""

    name: str
    width: int
    height: int
    video_kbps: int
    maxrate_kbps: int
    bufsize_kbps: int
    audio_kbps: int
    profile: str
    level: str


def plan_fps(src_fps: float | Fraction) -> Fraction:
    """The output frame rate: the source's, divided by the smallest integer that brings it
    to 60 or below. Unknown or absurd rates (<= 0) fall back to 30."""
    rate = Fraction(src_fps).limit_denominator(1001) if src_fps and src_fps > 0 else None
    if rate is None:
        return Fraction(30)
    divisor = math.ceil(rate / MAX_FPS)
    return rate / divisor if divisor > 1 else rate


def _even(x: float) -> int:
    return max(2, 2 * round(x / 2))


def _floor_even(x: int) -> int:
    return max(2, x - x % 2)


def h264_level(width: int, height: int, fps: float, maxrate_kbps: int, bufsize_kbps: int) -> str:
    """Lowest level (3.0 or above) that holds this picture size, frame rate and VBV."""
    frame_mbs = math.ceil(width / 16) * math.ceil(height / 16)
    mbps = frame_mbs * fps
    for name, max_mbps, max_fs, max_br, max_cpb in _LEVELS:
        # MaxFS also bounds each side: sqrt(8 * MaxFS) macroblocks (A.3.1 item f).
        side_limit = math.sqrt(8 * max_fs)
        if (
            frame_mbs <= max_fs
            and mbps <= max_mbps
            and max(math.ceil(width / 16), math.ceil(height / 16)) <= side_limit
            and maxrate_kbps <= max_br
            and bufsize_kbps <= max_cpb
        ):
            return name
    return _LEVELS[-1][0]


def _fps_factor(fps: Fraction) -> float:
    """1.0 up to 30 fps, rising linearly to 1.5 at 60 fps."""
    return 1.0 + 0.5 * max(0.0, min(float(fps), MAX_FPS) - 30) / 30


def _rung(name: str, width: int, height: int, box_area: int, ref_kbps: int, fps: Fraction) -> Rung:
    area_share = min(1.0, (width * height) / box_area)
    kbps = max(MIN_VIDEO_KBPS, round(ref_kbps * area_share * _fps_factor(fps)))
    maxrate = round(kbps * PEAK_FACTOR)
    bufsize = round(kbps * BUFFER_FACTOR)
    return Rung(
        name=name,
        width=width,
        height=height,
        video_kbps=kbps,
        maxrate_kbps=maxrate,
        bufsize_kbps=bufsize,
        audio_kbps=AUDIO_KBPS,
        profile=PROFILE,
        level=h264_level(width, height, float(fps), maxrate, bufsize),
    )


def plan_ladder(src_width: int, src_height: int, src_fps: float | Fraction) -> list[Rung]:
    """The rungs for a source of this *displayed* size (after rotation and pixel aspect),
    lowest first. Always at least one rung; never larger than the source."""
    if src_width <= 0 or src_height <= 0:
        raise ValueError("the source size must be positive")
    fps = plan_fps(src_fps)
    portrait = src_height > src_width
    max_w, max_h = _floor_even(src_width), _floor_even(src_height)
    rungs: list[Rung] = []
    for name, box_w, box_h, ref_kbps in REFERENCE_RUNGS:
        if portrait:
            box_w, box_h = box_h, box_w
        scale = min(box_w / src_width, box_h / src_height)
        if scale > 1 / REACH:
            break  # the source does not reach this box, nor any larger one
        scale = min(scale, 1.0)
        width = min(_even(src_width * scale), max_w)
        height = min(_even(src_height * scale), max_h)
        rungs.append(_rung(name, width, height, box_w * box_h, ref_kbps, fps))
    if not rungs:
        name, box_w, box_h, ref_kbps = REFERENCE_RUNGS[0]
        rungs.append(_rung(f"{min(max_w, max_h)}p", max_w, max_h, box_w * box_h, ref_kbps, fps))
    return rungs


__all__ = ["AUDIO_KBPS", "REFERENCE_RUNGS", "Rung", "h264_level", "plan_fps", "plan_ladder"]
