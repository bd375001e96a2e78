"""Measure the engine's copy endpoint and 1000-item list page in accept-only mode.

Not a test (pytest does not collect it): a figure-maker for the migration benchmark's
engine. It starts ``hybridvideo engine`` (or ``serve``) as its own process: one uvicorn
process, embedded worker on, accept-only mode, SQLite in a temporary data dir. Our
``CloudflareStream`` client (no retries) copies from a few threads over loopback; then,
once every video is ready and the queue is empty, a full list page (``limit=1000``) is
timed. Besides wall-clock rates it reports the server's CPU time per request, which a busy
shared machine distorts less.

``serve`` subscribes its own ``/webhooks/stream`` to its engine, so every copy also costs
a webhook delivery (queued, then POSTed back to the same process): that path, not the
engine's, sets its pace.

    .venv/bin/python -m tests.integration.engine.bench_accept_only --videos 10000
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from hybridvideo.stream.cloudflare import CloudflareStream
from tests.services import free_port, wait_for_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=10_000, help="copies to make in all")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--pages", type=int, default=10, help="list pages to time")
    parser.add_argument("--command", choices=["engine", "serve"], default="engine")
    parser.add_argument(
        "--no-worker", action="store_true", help="copies only: no embedded worker, no list"
    )
    parser.add_argument("--profile", help="py-spy the server during the copies (raw stacks)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="hv-bench-accept-"))
    port = free_port()
    env = {
        **os.environ,
        "HYBRIDVIDEO_DATA_DIR": str(root / "data"),
        "HYBRIDVIDEO_PORT": str(port),
        "HYBRIDVIDEO_ENGINE_ACCEPT_ONLY": "true",
        "HYBRIDVIDEO_LOG_LEVEL": "WARNING",
        "HYBRIDVIDEO_EMBEDDED_WORKER": "false" if args.no_worker else "true",
    }
    log = (root / "server.log").open("w")
    exe = [sys.executable, "-m", "hybridvideo.cli", args.command]
    server = subprocess.Popen(exe, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=60)
        data = root / "data"
        account = (data / "engine-account-id").read_text().strip()
        token = (data / "stream-token").read_text().strip()
        base = f"http://127.0.0.1:{port}/client/v4"
        spy = None
        if args.profile:
            spy_cmd = [
                "py-spy",
                "record",
                "-p",
                str(server.pid),
                "-o",
                args.profile,
                "-r",
                "200",
                "-f",
                "raw",
            ]
            spy = subprocess.Popen(spy_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
        cpu_before = cpu_seconds(server.pid)
        copies_per_s = copy_rate(base, account, token, args.videos, args.threads)
        copy_cpu_ms = (cpu_seconds(server.pid) - cpu_before) * 1000 / args.videos
        if spy is not None:
            spy.send_signal(2)
            spy.wait(timeout=60)
        say(
            f"copy: {copies_per_s:.0f} requests/s ({args.threads} threads, {args.videos} "
            f"copies); server CPU {copy_cpu_ms:.2f} ms per copy "
            f"(= {1000 / copy_cpu_ms:.0f} copies per CPU-second)"
        )
        if args.no_worker:
            return
        drained = time.perf_counter()
        wait_all_ready(base, account, token, args.videos)
        say(f"all ready {time.perf_counter() - drained:.1f} s after the last copy")
        wait_queue_empty(data / "queue.db")
        say(f"queue empty (webhooks sent) {time.perf_counter() - drained:.1f} s after the copies")
        cpu_before = cpu_seconds(server.pid)
        list_ms = list_latency(base, account, token, args.pages)
        list_cpu_ms = (cpu_seconds(server.pid) - cpu_before) * 1000 / (args.pages + 1)
        say(
            f"list (limit=1000, {args.videos} videos): median {statistics.median(list_ms):.1f} ms, "
            f"min {min(list_ms):.1f} ms, max {max(list_ms):.1f} ms over {len(list_ms)} pages; "
            f"server CPU {list_cpu_ms:.1f} ms per page"
        )
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
        shutil.rmtree(root / "data", ignore_errors=True)
        say(f"server log: {root / 'server.log'}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux): a figure other load does not inflate
    as much as wall time, on a shared machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def client(base: str, account: str, token: str) -> CloudflareStream:
    return CloudflareStream(
        account_id=account, api_token=token, base_url=base, max_retries=0, timeout=30
    )


def copy_rate(base: str, account: str, token: str, total: int, threads: int) -> float:
    counter = iter(range(total))
    lock = threading.Lock()
    failures: list[BaseException] = []

    def run() -> None:
        stream = client(base, account, token)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            try:
                stream.copy_from_url(
                    f"https://archive.example.com/masters/{i:08d}.mp4",
                    name=f"video {i}",
                    meta={"hybridvideo_video_id": str(i)},
                )
            except Exception as exc:
                failures.append(exc)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} copies failed, first: {failures[0]!r}")
    return total / elapsed


def wait_all_ready(base: str, account: str, token: str, total: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    url = f"{base}/accounts/{account}/stream"
    headers = {"Authorization": f"Bearer {token}"}
    while time.monotonic() < deadline:
        params = {"status": "ready", "include_counts": "true", "limit": "1"}
        answer = httpx.get(url, headers=headers, params=params, timeout=30)
        if int(answer.json()["total"]) >= total:
            return
        time.sleep(0.5)
    raise SystemExit("the videos did not all become ready")


def wait_queue_empty(path: Path, timeout: float = 600) -> None:
    """Wait for the embedded queue to drain, so the list is timed on an idle server."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
            (waiting,) = db.execute("select count(*) from task").fetchone()
        if waiting == 0:
            return
        time.sleep(0.5)
    raise SystemExit("the queue did not drain")


def list_latency(base: str, account: str, token: str, pages: int) -> list[float]:
    url = f"{base}/accounts/{account}/stream"
    headers = {"Authorization": f"Bearer {token}"}
    timings = []
    with httpx.Client(headers=headers, timeout=30) as http:
        http.get(url, params={"limit": "1000"})  # warm up
        for _ in range(pages):
            started = time.perf_counter()
            answer = http.get(url, params={"limit": "1000", "asc": "true"})
            timings.append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200 and len(answer.json()["result"]) == 1000
    return timings


if __name__ == "__main__":
    main()
