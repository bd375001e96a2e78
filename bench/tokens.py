"""Benchmark: the playback endpoint's throughput against the raw RS256 signing rate.

Issue 6: ``GET /api/v1/videos/{id}/playback`` with 50 concurrent clients — requests/s,
p50 and p99 latency — next to how many Stream tokens one core signs per second with the
same signer (``stream/tokens.sign_token``), measured in the same run. Target: the endpoint
reaches at least 80% of the raw rate with the token cache off; the cache-on figure is
reported beside it.

Real parts on loopback: ``hybridvideo serve`` as a process (one uvicorn worker, embedded
SQLite catalog, engine mounted), a READY catalog video, viewers signed in with HS256 JWTs
(the ``signed_in`` policy), a local signing key in DATA_DIR/signing-key.json. The load
generator is this process (asyncio + httpx, 50 tasks, keep-alive), so on a small machine
it shares the cores with the server: the figure is a floor.

    .venv/bin/python bench/tokens.py --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import httpx
import jwt
from ingest import free_port, wait_http  # bench/ is the script's folder: sys.path[0]

from hybridvideo.config import load_settings
from hybridvideo.container import build_container
from hybridvideo.domain.video import MediaInfo, NewVideo, StreamStatus
from hybridvideo.stream.tokens import SigningKey, sign_token

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).with_name("RESULTS.md")
HEADING = "## Playback tokens"
BIN = ROOT / ".venv" / "bin" / "hybridvideo"
SECRET = "bench-viewer-secret-" + "x" * 20


def say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def raw_signing_rate(seconds: float) -> float:
    """Tokens per second one thread signs (PyJWT-free: our signer on ``cryptography``)."""
    key = SigningKey.generate()
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(50):
            sign_token(key, "0123456789abcdef0123456789abcdef", expires_in=3600)
        count += 50
    return count / (time.perf_counter() - start)


def prepare(data_dir: Path) -> str:
    """A data dir with a signing key and one READY video; returns the video id."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "signing-key.json").write_text(json.dumps(SigningKey.generate().to_cloudflare()))
    container = build_container(load_settings(data_dir=data_dir), migrate=True)
    try:
        n = uuid.uuid4().hex
        video = container.catalog.add_video(
            NewVideo(
                title="bench",
                collection="work",
                archive_bucket="masters",
                archive_key=f"videos/{n}.mp4",
                media=MediaInfo(10, hashlib.sha256(n.encode()).hexdigest(), "mp4", 1.0, 16, 9),
                thumbnail_url="http://127.0.0.1/poster.jpg",
            )
        )
        container.catalog.set_stream_status(video.id, StreamStatus.PROCESSING, stream_uid=n)
        container.catalog.set_stream_status(video.id, StreamStatus.READY)
        return video.id
    finally:
        container.close()


async def load(url: str, token: str, *, clients: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def one(deadline: float, record: bool) -> None:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                response = await client.get(url, headers=headers)
                if response.status_code != 200:
                    raise RuntimeError(f"{response.status_code}: {response.text[:200]}")
                if record:
                    latencies.append(time.perf_counter() - start)

        warm = time.perf_counter() + min(2.0, seconds / 5)
        await asyncio.gather(*(one(warm, False) for _ in range(clients)))
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*(one(deadline, True) for _ in range(clients)))
    return latencies


def run_mode(
    data_dir: Path, video_id: str, *, cache: float, clients: int, seconds: float
) -> dict[str, float]:
    port = free_port()
    env = {
        **os.environ,
        "HYBRIDVIDEO_DATA_DIR": str(data_dir),
        "HYBRIDVIDEO_PORT": str(port),
        "HYBRIDVIDEO_LOG_LEVEL": "WARNING",
        "HYBRIDVIDEO_PLAYBACK_JWT_SECRET": SECRET,
        "HYBRIDVIDEO_PLAYBACK_POLICY": "signed_in",
        "HYBRIDVIDEO_PLAYBACK_TOKEN_CACHE_SECONDS": str(cache),
    }
    server = subprocess.Popen(
        [str(BIN), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        token = jwt.encode(
            {"sub": "viewer", "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256"
        )
        url = f"http://127.0.0.1:{port}/api/v1/videos/{video_id}/playback"
        started = time.perf_counter()
        latencies = asyncio.run(load(url, token, clients=clients, seconds=seconds))
        elapsed = time.perf_counter() - started - min(2.0, seconds / 5)
    finally:
        server.terminate()
        server.wait(timeout=30)
    latencies.sort()
    return {
        "rps": len(latencies) / max(elapsed, 1e-9),
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "requests": float(len(latencies)),
    }


def write_section(lines: list[str], command: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    body = f"{HEADING}\n\nCommand: `{command}`\n\n" + "\n".join(lines) + "\n"
    start = text.find(f"\n{HEADING}\n")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        end = text.find("\n## ", start + len(HEADING) + 2)
        text = text[: start + 1] + body + (text[end:] if end != -1 else "")
    RESULTS.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per mode")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args(argv)

    say("raw RS256 signing rate (one thread)...")
    raw = raw_signing_rate(min(args.seconds, 5.0))
    say(f"  {raw:,.0f} signatures/s")
    rows = []
    with tempfile.TemporaryDirectory(prefix="hv-bench-tokens-") as tmp:
        data_dir = Path(tmp) / "data"
        video_id = prepare(data_dir)
        for name, cache in (("cache off", 0.0), ("cache on (60 s)", 60.0)):
            say(f"endpoint, {name}, {args.clients} clients, {args.seconds:.0f} s...")
            result = run_mode(
                data_dir, video_id, cache=cache, clients=args.clients, seconds=args.seconds
            )
            say(
                f"  {result['rps']:,.0f} req/s, p50 {result['p50']:.1f} ms, "
                f"p99 {result['p99']:.1f} ms"
            )
            rows.append((name, result))
    lines = [
        f"One `hybridvideo serve` process (one uvicorn worker, SQLite catalog), "
        f"{args.clients} concurrent keep-alive clients in the benchmark process, "
        f"{args.seconds:.0f} s per mode after a warm-up; {os.cpu_count()} cores "
        f"({platform.machine()}), Python {platform.python_version()}, load average "
        f"{os.getloadavg()[0]:.2f}. Raw rate: `sign_token` in a loop on one thread of the "
        "same run.",
        "",
        "| mode | requests/s | p50 | p99 | ÷ raw signing rate |",
        "|---|---|---|---|---|",
        f"| raw RS256 signing | {raw:,.0f} | - | - | 1.00 |",
    ]
    for name, r in rows:
        lines.append(
            f"| endpoint, {name} | {r['rps']:,.0f} | {r['p50']:.1f} ms | {r['p99']:.1f} ms | "
            f"{r['rps'] / raw:.2f} |"
        )
    sys.stdout.write("\n".join(lines) + "\n")
    if not args.no_write:
        command = ".venv/bin/python bench/tokens.py " + shlex.join(
            argv if argv is not None else sys.argv[1:]
        )
        write_section(lines, command.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
