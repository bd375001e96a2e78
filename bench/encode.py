"""Benchmark the engine's encoder against one hand-written ffmpeg command.

    .venv/bin/python bench/encode.py [--seconds 60] [--size 1920x1080] [--fps 30] [--rounds 1]

Generates a ``testsrc2`` clip with a sine tone (H.264/AAC MP4), then, in one run and
alternating the order each round to spread machine noise:

1. ``encode()`` with the default first-rung strategy,
2. a hand-written ffmpeg command for the same 16:9 ladder (its own argv, below: the
   baseline an operator would type, with the same rates and GOP rules but none of the
   engine's probing, measuring, manifests or thumbnail),
3. ``encode()`` with the other strategy.

It prints wall times, the ratio engine/hand-written (target <= 1.05) and, for both
strategies, the time to ``on_first_playable`` against the time to done, and writes them
into the "Encoding" section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg

from hybridvideo.engine.encode import DEFAULT_EARLY_FIRST_RUNG, encode
from hybridvideo.media.testclip import make_test_clip

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## Encoding"
#: The hand-written ladder: (width, height, kb/s), Apple's 16:9 figures as in the engine.
HAND_LADDER = [(640, 360, 730), (960, 540, 2000), (1280, 720, 3000), (1920, 1080, 6000)]


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def hand_written_command(src: Path, out: Path, height: int, fps: int) -> list[str]:
    """One ffmpeg command, written out by hand: decode once, split, 4 x libx264, fMP4 HLS."""
    ladder = [r for r in HAND_LADDER if r[1] <= height]
    n = len(ladder)
    labels = "".join(f"[s{i}]" for i in range(n))
    graph = f"[0:v]fps={fps},format=yuv420p,split={n}{labels};" + ";".join(
        f"[s{i}]scale={w}:{h},setsar=1[o{i}]" for i, (w, h, _) in enumerate(ladder)
    )
    gop = str(2 * fps)
    argv = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-v", "warning"]
    argv += ["-i", str(src), "-filter_complex", graph]
    for i in range(n):
        argv += ["-map", f"[o{i}]"]
    argv += ["-map", "0:a:0", "-c:v", "libx264", "-preset", "veryfast"]
    argv += ["-g", gop, "-keyint_min", gop, "-sc_threshold", "0"]
    argv += ["-force_key_frames", "expr:gte(t,n_forced*2)"]
    for i, (_, _, kbps) in enumerate(ladder):
        argv += [f"-b:v:{i}", f"{kbps}k", f"-maxrate:v:{i}", f"{kbps * 3 // 2}k"]
        argv += [f"-bufsize:v:{i}", f"{kbps * 2}k", f"-profile:v:{i}", "high"]
    argv += ["-c:a", "aac", "-b:a", "128k", "-ac", "2", "-ar", "48000"]
    argv += ["-f", "hls", "-hls_segment_type", "fmp4", "-hls_time", "6"]
    argv += ["-hls_playlist_type", "vod", "-hls_flags", "independent_segments"]
    argv += ["-hls_segment_filename", str(out / "v%v" / "seg_%05d.m4s")]
    argv += ["-master_pl_name", "master.m3u8", "-var_stream_map"]
    argv += [" ".join([*(f"v:{i},agroup:aud" for i in range(n)), "a:0,agroup:aud"])]
    argv += [str(out / "v%v" / "index.m3u8")]
    return argv


def cpu_seconds() -> float:
    """User + system CPU of this process and its finished children (the ffmpeg runs):
    far steadier than wall time on a shared machine."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_hand(src: Path, work: Path, height: int, fps: int) -> dict[str, float]:
    out = work / "hand"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    start, cpu = time.monotonic(), cpu_seconds()
    subprocess.run(hand_written_command(src, out, height, fps), check=True, timeout=3600)
    return {"done": time.monotonic() - start, "cpu": cpu_seconds() - cpu}


def run_engine(src: Path, work: Path, early: bool) -> dict[str, float]:
    out = work / ("early" if early else "onepass")
    shutil.rmtree(out, ignore_errors=True)
    marks: dict[str, float] = {}
    start, cpu = time.monotonic(), cpu_seconds()

    def first_playable() -> None:
        marks.setdefault("first", time.monotonic() - start)

    encode(src, out, early_first_rung=early, on_first_playable=first_playable)
    marks["done"] = time.monotonic() - start
    marks["cpu"] = cpu_seconds() - cpu
    return marks


def _fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f} s"
    return f"{statistics.median(values):.1f} s (median; {min(values):.1f}-{max(values):.1f})"


def _round_cell(marks: dict[str, float]) -> str:
    first = f"{marks['first']:.1f} / " if "first" in marks else ""
    return f"{first}{marks['done']:.1f} / {marks['cpu']:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args()
    height = int(args.size.split("x")[1])
    work = Path(tempfile.mkdtemp(prefix="bench-encode-"))
    try:
        src = work / "source.mp4"
        t0 = time.monotonic()
        make_test_clip(src, seconds=args.seconds, size=args.size, fps=args.fps)
        made = f"{src.stat().st_size / 1e6:.1f} MB in {time.monotonic() - t0:.1f} s"
        say(f"source: {args.seconds:g} s {args.size}@{args.fps} testsrc2+sine ({made})")
        default, other = DEFAULT_EARLY_FIRST_RUNG, not DEFAULT_EARLY_FIRST_RUNG
        runs: dict[str, list[dict[str, float]]] = {"default": [], "hand": [], "other": []}
        load_before = os.getloadavg()
        for i in range(args.rounds):
            order = ["default", "hand", "other"] if i % 2 == 0 else ["other", "hand", "default"]
            for name in order:
                if name == "hand":
                    marks = run_hand(src, work, height, args.fps)
                else:
                    marks = run_engine(src, work, default if name == "default" else other)
                runs[name].append(marks)
                figures = " ".join(f"{k}={v:.1f}s" for k, v in marks.items())
                say(f"round {i + 1} {name:8s} {figures}")
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def col(name: str, key: str) -> list[float]:
        return [m[key] for m in runs[name] if key in m]

    def ratio(name: str, key: str) -> float:
        return statistics.median(col(name, key)) / statistics.median(col("hand", key))

    label = {True: "early first rung (2 passes)", False: "one pass"}
    names = {"default": f"default ({label[default]})", "hand": "hand-written",
             "other": label[other]}  # fmt: skip
    lines = [
        f"Source: {args.seconds:g} s {args.size} @ {args.fps} fps `testsrc2` + sine, H.264/AAC; "
        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        f"ffmpeg from imageio-ffmpeg, x264 `veryfast`; {args.rounds} round(s), order "
        f"alternated. Load average before/after: {load_before[0]:.2f}/{load_after[0]:.2f}.",
        "",
        "| run | first playable | done (wall) | wall vs hand | CPU (user+sys) | CPU vs hand |",
        "|---|---|---|---|---|---|",
        f"| engine, default = {label[default]} | {_fmt(col('default', 'first'))} "
        f"| {_fmt(col('default', 'done'))} | {ratio('default', 'done'):.3f}x "
        f"| {_fmt(col('default', 'cpu'))} | {ratio('default', 'cpu'):.3f}x |",
        f"| hand-written ffmpeg command | - | {_fmt(col('hand', 'done'))} | 1.000x "
        f"| {_fmt(col('hand', 'cpu'))} | 1.000x |",
        f"| engine, {label[other]} | {_fmt(col('other', 'first'))} "
        f"| {_fmt(col('other', 'done'))} | {ratio('other', 'done'):.3f}x "
        f"| {_fmt(col('other', 'cpu'))} | {ratio('other', 'cpu'):.3f}x |",
    ]
    lines += ["", "Each round (seconds; first playable / done / CPU):", ""]
    lines += ["| round | " + " | ".join(names[n] for n in runs) + " |", "|---|---|---|---|"]
    for i in range(args.rounds):
        cells = [_round_cell(runs[n][i]) for n in runs]
        lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    say("\n".join(lines))
    hand = hand_written_command(Path("source.mp4"), Path("out"), height, args.fps)
    lines += ["", "The hand-written command (run 2):", "", "```", shlex.join(["ffmpeg", *hand[1:]])]
    lines += ["```"]
    if not args.no_write:
        cmd = " ".join(sys.argv[1:])
        write_section(lines, f".venv/bin/python bench/encode.py {cmd}".strip())
    return 0


def write_section(lines: list[str], command: str) -> None:
    """Replace (or add) the Encoding section of RESULTS.md, leaving the others alone."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    body = "\n".join([SECTION, "", f"Command: `{command}`", "", *lines, ""])
    start = text.find(SECTION + "\n")  # not "## Encoding: notes", which is kept as written
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + body + (text[end + 1 :] if end >= 0 else "")
    RESULTS.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
