"""Benchmark: time to first frame of the reference player, in Chromium (issue 6).

Twenty plays (``--plays``) of a tiny testsrc video delivered by the embedded engine, each
in a fresh browser context (no HTTP cache, no segment cache, no service state: every play
is a first visit), on loopback and under Chromium's network throttling at a 4G profile.
Targets: p50 ≤ 500 ms on loopback, p50 ≤ 2 s under 4G (the seed's goal).

Time to first frame is what the viewer waits: from the start of the page's navigation
(``performance.timeOrigin``) to the first video frame presented, as
``requestVideoFrameCallback`` reports it. It includes the page, the bundle, the playback
answer (API + token), the playlists, the first segments, decoding. The player's own
startup beacon (``play()`` → first ``playing``) is reported beside it.

The 4G profile is Chrome DevTools' "Fast 4G" preset, applied through CDP
``Network.emulateNetworkConditions`` per page: 165 ms latency added to each request
(DevTools' 60 ms RTT × 2.75), 8.1 Mbit/s down (9 Mbit/s × 0.9), 1.35 Mbit/s up
(1.5 Mbit/s × 0.9). ``--profile slow4g`` uses "Slow 4G" instead: 562.5 ms, 1.44 Mbit/s
down, 675 kbit/s up.

Real parts: ``hybridvideo serve`` as a process (embedded SQLite catalog, archive folder,
engine and worker, ``HYBRIDVIDEO_PLAYBACK_POLICY=public`` so no sign-in is timed), Debian's
Chromium driven by Playwright with ``executable_path``.

    .venv/bin/python bench/startup.py --plays 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ingest  # bench/ is the script's folder: sys.path[0]
from ingest import free_port, wait_http

from hybridvideo.config import load_settings
from hybridvideo.container import build_container

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).with_name("RESULTS.md")
HEADING = "## Playback startup"
BIN = ROOT / ".venv" / "bin" / "hybridvideo"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]
#: Chrome DevTools' presets (devtools-frontend NetworkManager): bytes/s and added latency.
PROFILES: dict[str, dict[str, float]] = {
    "fast4g": {
        "latency": 60 * 2.75,
        "downloadThroughput": 9_000_000 / 8 * 0.9,
        "uploadThroughput": 1_500_000 / 8 * 0.9,
    },
    "slow4g": {
        "latency": 150 * 3.75,
        "downloadThroughput": 1_600_000 / 8 * 0.9,
        "uploadThroughput": 750_000 / 8 * 0.9,
    },
}
TARGETS = {"loopback": 500.0, "fast4g": 2000.0, "slow4g": 2000.0}
#: Runs before the page's own script: stamps the first ``playing`` and the first frame.
FIRST_FRAME_PROBE = """
document.addEventListener('playing', (event) => {
  const video = event.target;
  if (window.__playing === undefined) window.__playing = performance.now();
  if (window.__frame === undefined && video.requestVideoFrameCallback) {
    video.requestVideoFrameCallback((now) => {
      if (window.__frame === undefined) window.__frame = now;
    });
  }
}, true);
"""


def say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def make_video(data_dir: Path, seconds: float, size: str) -> str:
    """A testsrc clip added to the catalog (archived, not delivered yet)."""
    clip = data_dir.parent / "clip.mp4"
    subprocess.run(
        [str(BIN), "testclip", str(clip), "--seconds", str(seconds), "--size", size],
        check=True,
        capture_output=True,
    )
    container = build_container(load_settings(data_dir=data_dir), migrate=True)
    try:
        return container.videos.add_file(clip).video.id
    finally:
        container.close()


def wait_playable(base: str, video_id: str, timeout: float = 180.0) -> None:
    url = f"{base}/api/v1/videos/{video_id}/playback"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code != 409:
                raise RuntimeError(f"playback answered {exc.code}: {exc.read()[:300]!r}") from None
        time.sleep(0.5)
    raise RuntimeError(f"{video_id} was not delivered within {timeout:.0f} s")


def play_once(browser: Any, url: str, profile: str | None) -> dict[str, float]:
    context = browser.new_context()
    try:
        context.add_init_script(FIRST_FRAME_PROBE)
        page = context.new_page()
        if profile is not None:
            cdp = context.new_cdp_session(page)
            cdp.send("Network.enable")
            cdp.send("Network.emulateNetworkConditions", {"offline": False, **PROFILES[profile]})
        page.goto(url, wait_until="commit")
        page.wait_for_function("() => window.__frame !== undefined", timeout=60_000)
        found: dict[str, float] = page.evaluate(
            "() => ({frame: window.__frame, playing: window.__playing,"
            " startup: window.hybridvideoPlayer.startupMs})"
        )
        return found
    finally:
        context.close()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def run(plays: int, profiles: list[str | None], seconds: float, size: str) -> list[dict[str, Any]]:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="hv-startup-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        video_id = make_video(data_dir, seconds, size)
        port = free_port()
        env = {
            **os.environ,
            "HYBRIDVIDEO_DATA_DIR": str(data_dir),
            "HYBRIDVIDEO_PORT": str(port),
            "HYBRIDVIDEO_LOG_LEVEL": "WARNING",
            "HYBRIDVIDEO_PLAYBACK_POLICY": "public",
        }
        server = subprocess.Popen(
            [str(BIN), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/healthz")
            # queued for the server's worker, which sends it to the engine it mounts
            subprocess.run(
                [str(BIN), "videos", "deliver", video_id], env=env, check=True, capture_output=True
            )
            wait_playable(base, video_id)
            url = f"{base}/watch/{video_id}"
            results = []
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
                )
                try:
                    play_once(browser, url, None)  # warm-up: server-side caches, page files
                    for profile in profiles:
                        name = profile or "loopback"
                        samples = []
                        for n in range(plays):
                            samples.append(play_once(browser, url, profile))
                            say(f"{name} {n + 1}/{plays}: {samples[-1]['frame']:.0f} ms")
                        results.append({"profile": name, "samples": samples})
                finally:
                    browser.close()
            return results
        finally:
            server.terminate()
            server.wait(timeout=30)


def table(results: list[dict[str, Any]], plays: int) -> list[str]:
    lines = [
        "| network | plays | first frame p50 | p90 | max | player startup p50"
        " | target (p50) | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        frames = [s["frame"] for s in result["samples"]]
        startups = [s["startup"] for s in result["samples"] if s["startup"] is not None]
        p50 = statistics.median(frames)
        target = TARGETS[result["profile"]]
        lines.append(
            f"| {result['profile']} | {plays} | {p50:.0f} ms | {percentile(frames, 90):.0f} ms"
            f" | {max(frames):.0f} ms | {statistics.median(startups):.0f} ms"
            f" | ≤ {target:.0f} ms | {'yes' if p50 <= target else 'NO'} |"
        )
    return lines


def write_section(lines: list[str], command: str) -> None:
    ingest.write_section(HEADING, lines, command)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--plays", type=int, default=20, help="plays per network profile")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="fast4g")
    parser.add_argument("--seconds", type=float, default=6.0, help="the clip's length")
    parser.add_argument("--size", default="640x360", help="the clip's WIDTHxHEIGHT")
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args(argv)
    results = run(args.plays, [None, args.profile], args.seconds, args.size)
    profile = PROFILES[args.profile]
    lines = [
        *table(results, args.plays),
        "",
        f"A {args.seconds:g} s {args.size} testsrc clip delivered by the embedded engine;"
        " every play in a fresh Chromium context (cold: no HTTP or segment cache), after one"
        " warm-up play. First frame: navigation start → first frame presented"
        " (`requestVideoFrameCallback`). Player startup: `play()` → first `playing` (the"
        f" startup beacon). {args.profile} (CDP `Network.emulateNetworkConditions`, DevTools"
        f" preset): {profile['latency']:g} ms latency,"
        f" {profile['downloadThroughput'] * 8 / 1e6:.2f} Mbit/s down,"
        f" {profile['uploadThroughput'] * 8 / 1e6:.2f} Mbit/s up."
        f" {os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()},"
        f" load average {os.getloadavg()[0]:.2f}.",
    ]
    sys.stdout.write("\n".join(lines) + "\n" + json.dumps(results) + "\n")
    if not args.no_write:
        command = shlex.join([".venv/bin/python", "bench/startup.py", *(argv or sys.argv[1:])])
        write_section(lines, command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
