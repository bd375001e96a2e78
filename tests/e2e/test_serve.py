"""The real commands in real processes: `serve`, `worker`, `videos ...`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hybridvideo.config import load_settings
from hybridvideo.container import build_container
from tests.services import free_port

pytestmark = pytest.mark.slow
HV = [sys.executable, "-m", "hybridvideo.cli"]


def env_for(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HYBRIDVIDEO_", "CLOUDFLARE_"))
        and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update({"HYBRIDVIDEO_DATA_DIR": str(data_dir), "HYBRIDVIDEO_LOG_FORMAT": "json"}, **extra)
    return env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HV, *args], env=env, capture_output=True, text=True, timeout=60)


def wait_until(cond: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def events(data_dir: Path, video_id: str) -> list[str]:
    container = build_container(load_settings(data_dir=data_dir), migrate=False)
    try:
        return [e.kind for e in container.catalog.events(video_id)]
    finally:
        container.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[str], float]]:
    data_dir = tmp_path / "data"
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [*HV, "serve", "--port", str(port)],
        env=env_for(data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    ok = wait_until(ready, 20)
    elapsed = time.monotonic() - started
    if not ok:
        proc.kill()
        pytest.fail(f"server not ready: {proc.communicate()[1][-2000:]}")
    yield base, data_dir, proc, elapsed
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def test_serve_on_embedded_defaults(
    server: tuple[str, Path, subprocess.Popen[str], float], sample_video: Path
) -> None:
    base, data_dir, proc, elapsed = server
    assert elapsed < 10, f"/readyz took {elapsed:.1f}s"
    assert httpx.get(f"{base}/readyz").json()["checks"]["worker"] == "ok"
    token = (data_dir / "admin-token").read_text().strip()
    env = env_for(data_dir)

    added = cli(env, "videos", "add", str(sample_video), "--collection", "work")
    assert added.returncode == 0, added.stderr
    video_id = added.stdout.split()[1]
    listed = json.loads(cli(env, "videos", "list", "--json").stdout)
    assert listed["items"][0]["spec"]["duration"] == pytest.approx(1.0, abs=0.1)
    assert listed["items"][0]["spec"]["sha256"]

    api = httpx.get(f"{base}/api/v1/videos", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 200 and api.json()["items"][0]["id"] == video_id

    # A queued job is picked up by the worker embedded in `serve`.
    queued = cli(env, "videos", "verify", video_id)
    assert queued.returncode == 0 and "queued" in queued.stdout
    assert wait_until(lambda: "master_verified" in events(data_dir, video_id), 20)

    proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so supervisors see why it ended.
    assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
    stderr = proc.stderr.read() if proc.stderr else ""
    assert "queue worker stopped" in stderr  # the lifespan shutdown ran
    assert token in stderr  # printed once, on the first start
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any(line.get("path") == "/api/v1/videos" and line.get("status") == 200 for line in lines)


def test_token_is_printed_only_on_first_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = env_for(data_dir)
    assert cli(env, "videos", "list").returncode == 0  # other commands make no token
    for attempt in range(2):
        port = free_port()
        proc = subprocess.Popen(
            [*HV, "serve", "--port", str(port)],
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )

        def up(port: int = port) -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).is_success
            except httpx.HTTPError:
                return False

        assert wait_until(up, 20)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
        assert ("Generated an admin token" in stderr) is (attempt == 0)


def test_worker_command_on_redis(tmp_path: Path, redis_url: str, sample_video: Path) -> None:
    data_dir = tmp_path / "data"
    env = env_for(data_dir, REDIS_URL=redis_url)
    added = cli(env, "videos", "add", str(sample_video))
    assert added.returncode == 0, added.stderr
    video_id = added.stdout.split()[1]
    worker = subprocess.Popen(
        [*HV, "worker", "--concurrency", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        queued = cli(env, "videos", "verify", video_id)
        assert queued.returncode == 0, queued.stderr
        assert wait_until(lambda: "master_verified" in events(data_dir, video_id), 30)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0


def test_engine_command_serves_only_the_engine(tmp_path: Path) -> None:
    from hybridvideo.container import stream_credentials
    from hybridvideo.stream.cloudflare import CloudflareStream

    data_dir = tmp_path / "data"
    port = free_port()
    env = env_for(data_dir, HYBRIDVIDEO_PUBLIC_URL=f"http://127.0.0.1:{port}")
    proc = subprocess.Popen(
        [*HV, "engine", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_until(ready, 20)
        assert "engine" in httpx.get(f"{base}/readyz").json()["checks"]
        account, token = stream_credentials(load_settings(data_dir=data_dir), create=False)
        client = CloudflareStream(account_id=account, api_token=token, base_url=f"{base}/client/v4")
        assert client.storage_usage().video_count == 0
        assert httpx.get(f"{base}/api/v1/videos").status_code == 404  # no catalog API here
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
