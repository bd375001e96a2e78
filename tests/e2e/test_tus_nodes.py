"""tus across real server processes: a SIGKILL mid-upload, and two nodes sharing one upload.

These run `hybridvideo serve` as separate processes, so nothing is shared in memory: what
survives must be on disk (local store) or in PostgreSQL, Redis and the S3 API server.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import imageio_ffmpeg
import pytest
from tusclient import client as tus_client

from tests.e2e.nodes import ADMIN_TOKEN, HV, node, node_env, start_node, stop_node
from tests.services import free_port

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"


@pytest.fixture(scope="module")
def big_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real video of ~12-20 MB (lossless x264 of a moving test pattern): several S3 parts."""
    out = tmp_path_factory.mktemp("big") / "big.mp4"
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-v", "error", "-f", "lavfi",
            "-i", "testsrc2=size=640x360:rate=30:duration=2", "-vf", "noise=alls=40:allf=t",
            "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p",
            str(out),
        ],
        check=True,
        timeout=120,
    )  # fmt: skip
    assert out.stat().st_size > 11 * 1024 * 1024, out.stat().st_size
    return out


def _outcome(base: str, upload_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = httpx.get(f"{base}/api/v1/uploads/{upload_id}", headers=AUTH).json()
        if body.get("state") in ("ready", "failed"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


def _video(base: str, video_id: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{base}/api/v1/videos/{video_id}", headers=AUTH).json()
    return body


def _spec(video: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = video.get("technicalSpec") or video["spec"]
    return spec


def test_sigkill_mid_upload_loses_nothing_and_the_client_resumes(
    tmp_path: Path, big_clip: Path
) -> None:
    data = big_clip.read_bytes()
    port = free_port()
    env = node_env(tmp_path / "data", HYBRIDVIDEO_ENGINE="false",
                   HYBRIDVIDEO_STREAM_API_URL="http://127.0.0.1:9/client/v4",
                   CLOUDFLARE_ACCOUNT_ID="a" * 32, CLOUDFLARE_STREAM_TOKEN="t" * 40)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    proc = start_node(env, port)
    try:
        r = httpx.post(
            f"{base}/files/",
            headers={**AUTH, "Upload-Length": str(len(data)), "Upload-Metadata": ""},
        )
        assert r.status_code == 201, r.text
        url = base + r.headers["Location"]
        first = 3 * 1024 * 1024
        r = httpx.patch(
            url,
            content=data[:first],
            headers={**AUTH, "Content-Type": OCTETS, "Upload-Offset": "0"},
        )
        assert r.status_code == 204 and r.headers["Upload-Offset"] == str(first)

        sent = 0

        def body() -> Iterator[bytes]:
            nonlocal sent
            for start in range(first, len(data), 256 * 1024):
                chunk = data[start : start + 256 * 1024]
                sent += len(chunk)
                yield chunk
                if sent >= 4 * 1024 * 1024:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
                    time.sleep(0.2)

        with pytest.raises(httpx.HTTPError):
            httpx.patch(
                url,
                content=body(),
                headers={**AUTH, "Content-Type": OCTETS, "Upload-Offset": str(first)},
                timeout=30,
            )
        assert proc.poll() == -signal.SIGKILL
    finally:
        stop_node(proc)

    with node(env, port):
        head = httpx.head(url, headers=AUTH)
        assert head.status_code == 200
        offset = int(head.headers["Upload-Offset"])
        # never ahead of what was sent, never behind what was acknowledged
        assert first <= offset <= first + sent
        # tuspy resumes from the server's offset and finishes the file
        client = tus_client.TusClient(
            f"{base}/files/", headers={"Authorization": AUTH["Authorization"]}
        )
        uploader = client.uploader(str(big_clip), url=url, chunk_size=2 * 1024 * 1024)
        assert uploader.offset == offset
        uploader.upload()
        outcome = _outcome(base, url.rsplit("/", 1)[1])
        assert outcome["state"] == "ready", outcome
        spec = _spec(_video(base, outcome["videoId"]))
        assert spec["sha256"] == hashlib.sha256(data).hexdigest()
        stored = (tmp_path / "data" / "archive" / spec["archiveKey"]).read_bytes()
        assert hashlib.sha256(stored).hexdigest() == spec["sha256"]


def test_two_nodes_share_one_upload_through_postgres_redis_and_s3(
    tmp_path: Path, big_clip: Path, postgres_db: str, redis_url: str, s3_endpoint: str
) -> None:
    import boto3

    bucket = f"two-nodes-{os.getpid()}-{time.monotonic_ns()}"
    s3 = boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
    )  # fmt: skip
    s3.create_bucket(Bucket=bucket)
    shared = {
        "DATABASE_URL": postgres_db,
        "HYBRIDVIDEO_REDIS_URL": redis_url,
        "HYBRIDVIDEO_QUEUE_BACKEND": "postgres",
        "HYBRIDVIDEO_EMBEDDED_WORKER": "true",
        "HYBRIDVIDEO_UPLOAD_LOCK": "redis",
        "HYBRIDVIDEO_ARCHIVE_BACKEND": "s3",
        "HYBRIDVIDEO_S3_ENDPOINT_URL": s3_endpoint,
        "HYBRIDVIDEO_S3_BUCKET": bucket,
        "HYBRIDVIDEO_S3_REGION": "us-east-1",
        "HYBRIDVIDEO_S3_ACCESS_KEY_ID": "test",
        "HYBRIDVIDEO_S3_SECRET_ACCESS_KEY": "test",
        "HYBRIDVIDEO_SECRET_KEY": "s" * 40,
        "HYBRIDVIDEO_ENGINE": "false",
        "HYBRIDVIDEO_STREAM_API_URL": "http://127.0.0.1:9/client/v4",
        "CLOUDFLARE_ACCOUNT_ID": "a" * 32,
        "CLOUDFLARE_STREAM_TOKEN": "t" * 40,
    }
    data = big_clip.read_bytes()
    ports = [free_port(), free_port()]
    env_a = node_env(tmp_path / "a", **shared)
    env_b = node_env(tmp_path / "b", **shared)
    # PostgreSQL is never migrated behind the operator's back: once, before the nodes
    migrated = subprocess.run(
        [*HV, "db", "upgrade"], env=env_a, capture_output=True, text=True, timeout=120
    )
    assert migrated.returncode == 0, migrated.stderr
    with node(env_a, ports[0]), node(env_b, ports[1]):
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        r = httpx.post(f"{bases[0]}/files/", headers={**AUTH, "Upload-Length": str(len(data))})
        assert r.status_code == 201, r.text
        path = r.headers["Location"]
        step = 3 * 1024 * 1024 + 12345  # odd sizes: chunks and parts never line up
        # While node A is in the middle of a PATCH, node B refuses to write (423)
        gate = threading.Event()

        def slow_body() -> Iterator[bytes]:
            yield data[: 64 * 1024]
            gate.wait(20)
            yield data[64 * 1024 : step]

        first: dict[str, httpx.Response] = {}
        writer = threading.Thread(
            target=lambda: first.setdefault(
                "r",
                httpx.patch(
                    bases[0] + path,
                    content=slow_body(),
                    headers={**AUTH, "Content-Type": OCTETS, "Upload-Offset": "0"},
                    timeout=60,
                ),
            )
        )
        writer.start()
        import redis

        lock_key = f"hybridvideo:tus:lock:{path.rsplit('/', 1)[1]}"
        r_client = redis.Redis.from_url(redis_url)
        deadline = time.monotonic() + 15
        while not r_client.exists(lock_key) and time.monotonic() < deadline:
            time.sleep(0.02)  # node A has taken the upload's lock in Redis
        # Node B's request asks node A (through Redis) to let go of the stalled request, as
        # tusd does: A stops reading, records what it stored, and B sees that offset.
        r = httpx.patch(
            bases[1] + path,
            content=b"",
            headers={**AUTH, "Content-Type": OCTETS, "Upload-Offset": "0"},
            timeout=30,
        )
        assert r.status_code in (204, 409), r.text
        writer.join(30)
        gate.set()
        assert first["r"].status_code == 204, first["r"].text
        offset = int(first["r"].headers["Upload-Offset"])
        assert offset < step  # A was cut short: it never waited for the rest of its body
        head = httpx.head(bases[1] + path, headers=AUTH)
        assert int(head.headers["Upload-Offset"]) == offset
        turn = 1
        while offset < len(data):
            base = bases[turn % 2]
            head = httpx.head(base + path, headers=AUTH)
            assert int(head.headers["Upload-Offset"]) == offset  # any node sees the truth
            chunk = data[offset : offset + step]
            r = httpx.patch(
                base + path,
                content=chunk,
                headers={**AUTH, "Content-Type": OCTETS, "Upload-Offset": str(offset)},
                timeout=60,
            )
            assert r.status_code == 204, r.text
            offset += len(chunk)
            assert r.headers["Upload-Offset"] == str(offset)
            turn += 1
        assert turn >= 4
        outcome = _outcome(bases[1], path.rsplit("/", 1)[1])
        assert outcome["state"] == "ready", outcome
        spec = _spec(_video(bases[0], outcome["videoId"]))
        assert spec["sha256"] == hashlib.sha256(data).hexdigest()
        stored = s3.get_object(Bucket=bucket, Key=spec["archiveKey"])["Body"].read()
        assert hashlib.sha256(stored).hexdigest() == spec["sha256"]
        assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
