"""Run `hybridvideo serve` as real processes (for crash and multi-node tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

HV = [sys.executable, "-m", "hybridvideo.cli"]
ADMIN_TOKEN = "admin-" + "x" * 40


def node_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HYBRIDVIDEO_", "CLOUDFLARE_", "AWS_"))
        and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(
        {
            "HYBRIDVIDEO_DATA_DIR": str(data_dir),
            "HYBRIDVIDEO_LOG_FORMAT": "json",
            "HYBRIDVIDEO_ADMIN_TOKEN": ADMIN_TOKEN,
        }
    )
    env.update(extra)
    return env


def start_node(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    log = open(Path(env["HYBRIDVIDEO_DATA_DIR"]).parent / f"node-{port}.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [*HV, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"node on {port} exited with {proc.returncode}: see {log.name}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"node on {port} did not answer /healthz")


def stop_node(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def node(env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_node(env, port)
    try:
        yield proc
    finally:
        stop_node(proc)
