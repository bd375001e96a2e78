"""Benchmark: ``hybridvideo migrate`` against a rate-limited Stream, next to its floor.

Issue 5: 10,000 catalog rows, the engine in its no-encode accept mode with an API rate
limit of R requests per second; the migration's wall time against the floor 10,000 ÷ R
(no client can copy faster than the service lets it), API requests per video, and
duplicates (must be 0). Target: at most 1.1× the floor.

Everything runs on loopback, as real processes:

* ``hybridvideo engine`` with ``HYBRIDVIDEO_ENGINE_ACCEPT_ONLY=true`` and
  ``HYBRIDVIDEO_ENGINE_API_RATE_LIMIT=R·W`` per ``W`` seconds (429 + Retry-After beyond);
* a catalog (SQLite, or PostgreSQL with ``--postgres URL``) filled with ``--rows`` videos
  whose masters are tiny files in a local archive (the engine never fetches them);
* ``hybridvideo migrate --json`` as a subprocess, timed from start to exit, in two modes:
  ``limiter``: our client limiter set to the same R (the configuration we ship: stay under
  the limit, never see a 429); ``429s``: our limiter far above R, so only the service's 429s
  and their Retry-After pace the run (what a client without a limiter gets).

After each run the engine's videos are listed and grouped by the catalog id in their
``meta``: duplicates = copies − distinct ids. Results go to the "Migration" section of
bench/RESULTS.md with the command that produced them.

    .venv/bin/python bench/migrate.py --rows 10000 --rate 100
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import ingest  # bench/ is the script's folder: sys.path[0]
from ingest import free_port, wait_http

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).with_name("RESULTS.md")
HEADING = "## Migration"
BIN = ROOT / ".venv" / "bin" / "hybridvideo"


def say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


@dataclass(frozen=True)
class Engine:
    api: str
    account: str
    token: str


def base_env(data_dir: Path, engine: Engine, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYBRIDVIDEO_")}
    env.update(
        HYBRIDVIDEO_DATA_DIR=str(data_dir),
        HYBRIDVIDEO_STREAM_API_URL=engine.api,
        CLOUDFLARE_ACCOUNT_ID=engine.account,
        CLOUDFLARE_STREAM_TOKEN=engine.token,
        HYBRIDVIDEO_LOG_LEVEL="WARNING",
        HYBRIDVIDEO_LOG_FORMAT="json",
    )
    env.update(extra)
    return env


@contextmanager
def engine_process(work: Path, rate: float, window: float) -> Iterator[Engine]:
    port = free_port()
    engine = Engine(
        api=f"http://127.0.0.1:{port}/client/v4",
        account=secrets.token_hex(16),
        token=secrets.token_urlsafe(24),
    )
    env = base_env(
        work / "engine",
        engine,
        HYBRIDVIDEO_PORT=str(port),
        HYBRIDVIDEO_HOST="127.0.0.1",
        HYBRIDVIDEO_ENGINE_ACCEPT_ONLY="true",
        HYBRIDVIDEO_ENGINE_API_RATE_LIMIT=str(max(1, round(rate * window))),
        HYBRIDVIDEO_ENGINE_API_RATE_WINDOW=str(window),
        HYBRIDVIDEO_EMBEDDED_WORKER="true",
    )
    log = (work / "engine.log").open("wb")
    proc = subprocess.Popen([str(BIN), "engine"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        yield engine
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def fill_catalog(env: dict[str, str], rows: int, archive: Path) -> None:
    """``rows`` videos in one transaction, masters as tiny files (never fetched)."""
    subprocess.run([str(BIN), "db", "upgrade"], env=env, check=True, capture_output=True)
    sys.path.insert(0, str(ROOT / "src"))
    from hybridvideo.catalog.sql import create_catalog_engine
    from hybridvideo.catalog.sql.models import Video, VideoSpec
    from hybridvideo.config import load_settings

    settings = load_settings(data_dir=Path(env["HYBRIDVIDEO_DATA_DIR"]))
    url = env.get("HYBRIDVIDEO_DATABASE_URL") or settings.resolved_database_url
    engine = create_catalog_engine(url)
    start = datetime.now(UTC) - timedelta(days=1)
    try:
        with engine.begin() as conn:
            videos, specs = [], []
            for n in range(rows):
                video_id = str(uuid.uuid4())
                key = f"bench/{n // 1000:02d}/{n:06d}.mp4"
                path = archive / key
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"m" * 16)
                at = start + timedelta(milliseconds=n)
                videos.append(
                    {
                        "id": video_id,
                        "title": f"Lesson {n}",
                        "collection": "bench",
                        "owner_id": None,
                        "pinned": False,
                        "created_at": at,
                        "updated_at": at,
                    }
                )
                specs.append(
                    {
                        "id": str(uuid.uuid4()),
                        "video_id": video_id,
                        "archive_bucket": "local",
                        "archive_key": key,
                        "thumbnail_url": None,
                        "stream_uid": None,
                        "stream_status": "NOT_DELIVERED",
                        "stream_error": None,
                        "size_bytes": 16,
                        "format": "mp4",
                        "duration_seconds": 60.0,
                        "width": 640,
                        "height": 360,
                        "sha256": uuid.uuid4().hex + uuid.uuid4().hex,
                        "created_at": at,
                        "updated_at": at,
                    }
                )
            conn.execute(Video.__table__.insert(), videos)
            conn.execute(VideoSpec.__table__.insert(), specs)
    finally:
        engine.dispose()


def stream_copies(engine: Engine) -> Counter[str]:
    """Copies per catalog id, listed straight from the engine (1,000 per page)."""
    counts: Counter[str] = Counter()
    headers = {"Authorization": f"Bearer {engine.token}"}
    after: str | None = None
    seen: set[str] = set()
    with httpx.Client(timeout=60.0) as client:
        while True:
            params = {"asc": "true", "limit": "1000"}
            if after:
                params["after"] = after
            for _ in range(100):  # the engine's own rate limit applies to us too
                r = client.get(
                    f"{engine.api}/accounts/{engine.account}/stream", params=params, headers=headers
                )
                if r.status_code != 429:
                    break
                time.sleep(float(r.headers.get("retry-after", "1")))
            r.raise_for_status()
            page = r.json()["result"]
            fresh = [v for v in page if v["uid"] not in seen]
            for video in fresh:
                seen.add(video["uid"])
                counts[str(video.get("meta", {}).get("hybridvideo_video_id"))] += 1
            if len(page) < 1000 or not fresh:
                return counts
            last = datetime.fromisoformat(page[-1]["created"].replace("Z", "+00:00"))
            after = (last - timedelta(microseconds=1)).isoformat()


@dataclass
class Outcome:
    mode: str
    rows: int
    rate: float
    wall: float
    elapsed: float
    requests: int
    counts: dict[str, int]
    copies: int
    duplicates: int

    @property
    def floor(self) -> float:
        return self.rows / self.rate

    @property
    def ratio(self) -> float:
        return self.wall / self.floor


def run_mode(
    work: Path,
    mode: str,
    rows: int,
    rate: float,
    window: float,
    concurrency: int,
    postgres: str | None,
) -> Outcome:
    root = work / mode
    root.mkdir()
    with engine_process(root, rate, window) as engine:
        extra = {"HYBRIDVIDEO_ENGINE": "false"}
        if postgres:
            extra["HYBRIDVIDEO_DATABASE_URL"] = postgres
        client_limit = rate * window if mode == "limiter" else 1_000_000
        extra["HYBRIDVIDEO_STREAM_RATE_LIMIT"] = str(max(1, round(client_limit)))
        extra["HYBRIDVIDEO_STREAM_RATE_WINDOW"] = str(window)
        env = base_env(root / "app", engine, **extra)
        (root / "app").mkdir()
        say(f"[{mode}] filling the catalog with {rows} videos")
        fill_catalog(env, rows, root / "app" / "archive")
        report = root / "report.json"
        cmd = [
            str(BIN),
            "migrate",
            "--concurrency",
            str(concurrency),
            "--attempts",
            "20",
            "--json",
            str(report),
        ]
        say(f"[{mode}] {shlex.join(cmd)}")
        started = time.monotonic()
        with (root / "migrate.log").open("wb") as log:
            done = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        wall = time.monotonic() - started
        if done.returncode not in (0, 1):
            raise RuntimeError(f"migrate exited {done.returncode}; see {root / 'migrate.log'}")
        body = json.loads(report.read_text())
        copies = stream_copies(engine)
    total = sum(copies.values())
    return Outcome(
        mode=mode,
        rows=rows,
        rate=rate,
        wall=wall,
        elapsed=body["elapsed_seconds"],
        requests=body["requests"],
        counts=body["this_pass"],
        copies=total,
        duplicates=total - len(copies),
    )


def machine() -> str:
    return (
        f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )


def section(outcomes: Sequence[Outcome], args: argparse.Namespace, catalog: str) -> list[str]:
    lines = [
        f"{args.rows:,} catalog rows ({catalog} catalog), engine in accept-only mode limited to "
        f"{args.rate:g} requests/s (sliding window of {args.window:g} s), "
        f"`--concurrency {args.concurrency}`; {machine()}.",
        "",
        "| mode | wall | floor (rows ÷ R) | wall ÷ floor | API requests / video | "
        "copied | failed + deferred | Stream copies | duplicates |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        bad = o.counts.get("failed", 0) + o.counts.get("deferred", 0)
        lines.append(
            f"| {o.mode} | {o.wall:.1f} s | {o.floor:.1f} s | {o.ratio:.3f}x | "
            f"{o.requests / o.rows:.4f} | {o.counts.get('copied', 0):,} | {bad} | "
            f"{o.copies:,} | {o.duplicates} |"
        )
    lines += [
        "",
        "*limiter*: our client limiter set to the engine's R (what we ship: no 429 at all). "
        "*429s*: our limiter far above R, so the engine's 429 + Retry-After alone pace the run. "
        "Wall time is the `hybridvideo migrate` process from start to exit (start-up, the "
        "Stream listing and the final report included).",
    ]
    return lines


def write_section(lines: list[str], command: str) -> None:
    ingest.write_section(HEADING, lines, command)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=100.0, help="R, requests per second")
    parser.add_argument("--window", type=float, default=1.0, help="rate window, seconds")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--modes", default="limiter,429s")
    parser.add_argument("--postgres", help="a PostgreSQL URL for the catalog (default SQLite)")
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="hv-bench-migrate-"))
    outcomes = []
    try:
        for mode in args.modes.split(","):
            outcome = run_mode(
                work, mode, args.rows, args.rate, args.window, args.concurrency, args.postgres
            )
            say(
                f"[{mode}] wall {outcome.wall:.1f} s, floor {outcome.floor:.1f} s "
                f"({outcome.ratio:.3f}x), {outcome.requests} requests, "
                f"{outcome.duplicates} duplicates, counts {outcome.counts}"
            )
            outcomes.append(outcome)
    finally:
        if args.keep:
            say(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    lines = section(outcomes, args, "PostgreSQL" if args.postgres else "SQLite")
    sys.stdout.write("\n".join(lines) + "\n")
    if not args.no_write:
        command = ".venv/bin/python bench/migrate.py " + shlex.join(
            sys.argv[1:] if argv is None else list(argv)
        )
        write_section(lines, command.strip())
    return 0 if all(o.duplicates == 0 for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
