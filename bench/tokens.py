"""Benchmark: the playback endpoint's throughput against the raw RS256 signing rate.

Issue 6: ``GET /api/v1/videos/{id}/playback`` with 50 concurrent clients — requests/s,
p50 and p99 latency — next to how many Stream tokens one core signs per second with the
same signer (``stream/tokens.sign_token``), measured in the same run. Target: the endpoint
reaches at least 80% of the raw rate with the token cache off; the cache-on figure is
reported beside it.

Real parts on loopback: ``hybridvideo serve`` as a process (one uvicorn worker, embedded
SQLite catalog, engine mounted, INFO access logs to a pipe), a READY catalog video,
viewers signed in with HS256 JWTs (the ``signed_in`` policy), a local signing key in
DATA_DIR/signing-key.json. The load generator is this process (a minimal asyncio HTTP/1.1
client, 50 keep-alive connections), so on a small machine it shares the cores with the
server: requests/s is a floor. Requests per CPU-second of the server process is reported
beside it: what the server would do on a core of its own. Modes alternate over
``--rounds`` and medians are reported, as the machine may be shared.

    .venv/bin/python bench/tokens.py --seconds 10

Before/after in one run: ``git archive <commit> src | tar -x -C /tmp/base`` and add
``--baseline-src /tmp/base/src`` (the server is started with that ``src`` first on
PYTHONPATH).
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
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import ingest  # bench/ is the script's folder: sys.path[0]
import jwt
from ingest import free_port, wait_http

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


def _request(url: str, token: str) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = (
        f"GET {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\nAccept: application/json\r\n\r\n"
    )
    return host, port, head.encode()


async def load(
    url: str, token: str, *, clients: int, seconds: float, mark: Callable[[], None] = lambda: None
) -> list[float]:
    """``clients`` keep-alive connections, each asking again as soon as it is answered.

    A minimal HTTP/1.1 client on asyncio streams rather than httpx: with httpx the load
    generator itself burned ~3x the server's CPU per request (profiled), so on a 2-core
    machine it, not the server, set the rate. Every answer must be a 200 with a token.
    """
    latencies: list[float] = []
    host, port, request = _request(url, token)

    async def one(deadline: float, record: bool) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                lower = head.lower()
                at = lower.find(b"\r\ncontent-length:")
                if at == -1:
                    raise RuntimeError(f"no Content-Length: {head[:200]!r}")
                length = int(lower[at + 17 : lower.find(b"\r\n", at + 2)])
                body = await reader.readexactly(length)
                if status != 200 or b'"token"' not in body:
                    raise RuntimeError(f"{status}: {body[:200]!r}")
                if record:
                    latencies.append(time.perf_counter() - start)
        finally:
            writer.close()

    warm = time.perf_counter() + min(2.0, seconds / 5)
    await asyncio.gather(*(one(warm, False) for _ in range(clients)))
    mark()
    deadline = time.perf_counter() + seconds
    await asyncio.gather(*(one(deadline, True) for _ in range(clients)))
    return latencies


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process (all its threads) so far; None off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_load(
    url: str, token: str, *, clients: int, seconds: float, mark: Callable[[], None]
) -> list[float]:
    """:func:`load` on uvloop when installed (a cheaper client leaves more CPU to the server)."""
    work = load(url, token, clients=clients, seconds=seconds, mark=mark)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(work)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(work)


def run_mode(
    data_dir: Path,
    video_id: str,
    *,
    cache: float,
    clients: int,
    seconds: float,
    log_level: str = "INFO",
    src: Path | None = None,
) -> dict[str, float]:
    """One server process, loaded; ``src`` serves another checkout's ``src`` (an A/B)."""
    port = free_port()
    env = {
        **os.environ,
        **({"PYTHONPATH": str(src)} if src is not None else {}),
        "HYBRIDVIDEO_DATA_DIR": str(data_dir),
        "HYBRIDVIDEO_PORT": str(port),
        "HYBRIDVIDEO_LOG_LEVEL": log_level,
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
        marks: list[tuple[float, float | None]] = []

        def mark() -> None:
            marks.append((time.perf_counter(), cpu_seconds(server.pid)))

        latencies = run_load(url, token, clients=clients, seconds=seconds, mark=mark)
        mark()
    finally:
        server.terminate()
        server.wait(timeout=30)
    (t0, cpu0), (t1, cpu1) = marks
    latencies.sort()
    cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
    return {
        "rps": len(latencies) / max(t1 - t0, 1e-9),
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "requests": float(len(latencies)),
        # Requests per CPU-second of the server process: what one core of its own serves,
        # whatever else the shared machine was doing meanwhile.
        "per_cpu_s": len(latencies) / cpu if cpu else float("nan"),
    }


def write_section(lines: list[str], command: str) -> None:
    ingest.write_section(HEADING, lines, command)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per mode")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds; medians reported")
    parser.add_argument("--log-level", default="INFO", help="the server's (INFO: access logs on)")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="also serve this checkout's src/ in every round (before/after in one run)",
    )
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args(argv)

    modes: list[tuple[str, float, Path | None]] = [
        ("cache off", 0.0, None),
        ("cache on (60 s)", 60.0, None),
    ]
    if args.baseline_src is not None:
        modes += [
            ("baseline, cache off", 0.0, args.baseline_src.resolve()),
            ("baseline, cache on (60 s)", 60.0, args.baseline_src.resolve()),
        ]
    raws: list[float] = []
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in modes}
    with tempfile.TemporaryDirectory(prefix="hv-bench-tokens-") as tmp:
        data_dir = Path(tmp) / "data"
        video_id = prepare(data_dir)
        for n in range(args.rounds):
            raws.append(raw_signing_rate(min(args.seconds, 3.0)))
            say(f"round {n + 1}: raw RS256 signing {raws[-1]:,.0f} signatures/s")
            for name, cache, src in modes:
                r = run_mode(
                    data_dir,
                    video_id,
                    cache=cache,
                    clients=args.clients,
                    seconds=args.seconds,
                    log_level=args.log_level,
                    src=src,
                )
                results[name].append(r)
                say(
                    f"  endpoint, {name}: {r['rps']:,.0f} req/s, p50 {r['p50']:.1f} ms, "
                    f"p99 {r['p99']:.1f} ms, {r['per_cpu_s']:,.0f} req per server CPU-s"
                )
    raw = statistics.median(raws)
    lines = [
        f"One `hybridvideo serve` process (one uvicorn worker, SQLite catalog, log level "
        f"{args.log_level}: JSON access logs to a pipe), {args.clients} concurrent keep-alive "
        f"clients (a minimal asyncio HTTP/1.1 client in the benchmark process), "
        f"{args.seconds:.0f} s per mode after a warm-up, {args.rounds} rounds alternating the "
        f"modes, medians shown; {os.cpu_count()} cores ({platform.machine()}), Python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.2f}. Raw rate: "
        "`sign_token` in a loop on one thread, measured at the start of every round. "
        '"per server CPU-s" is requests divided by the server process\'s CPU time over '
        "the window: the rate one core of its own would give, on a machine the load "
        "generator (and anything else) shares.",
        "",
        "| mode | requests/s | p50 | p99 | ÷ raw | requests per server CPU-s | ÷ raw |",
        "|---|---|---|---|---|---|---|",
        f"| raw RS256 signing | {raw:,.0f} | - | - | 1.00 | {raw:,.0f} | 1.00 |",
    ]
    for name, _, _ in modes:
        rs = results[name]
        rps = statistics.median(r["rps"] for r in rs)
        per_cpu = statistics.median(r["per_cpu_s"] for r in rs)
        lines.append(
            f"| endpoint, {name} | {rps:,.0f} | "
            f"{statistics.median(r['p50'] for r in rs):.1f} ms | "
            f"{statistics.median(r['p99'] for r in rs):.1f} ms | {rps / raw:.2f} | "
            f"{per_cpu:,.0f} | {per_cpu / raw:.2f} |"
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
