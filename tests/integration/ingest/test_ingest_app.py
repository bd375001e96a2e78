"""tus at /files/ on the real app: auth, metadata, what a finished upload becomes.

A real server on loopback (uvicorn) with the embedded worker, the local archive and the
SQLite catalog; tuspy and raw HTTP as clients. Delivery goes to the built-in engine (not
exercised here beyond being queued: tests/e2e covers it).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tusclient import client as tus_client

from hybridvideo.api.app import create_app
from hybridvideo.config import load_settings
from hybridvideo.container import Container, build_container
from tests.services import free_port, serve_asgi

V = {"Tus-Resumable": "1.0.0"}
OCTETS = {"Content-Type": "application/offset+octet-stream"}


def _meta(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


@pytest.fixture
def app_env(tmp_path: Path) -> Iterator[tuple[str, Container]]:
    port = free_port()
    settings = load_settings(
        data_dir=tmp_path / "data",
        public_url=f"http://127.0.0.1:{port}",
        engine=False,
        stream_api_url="http://127.0.0.1:9/client/v4",  # delivery is not under test here
        cloudflare_account_id="a" * 32,
        cloudflare_stream_token="t" * 40,
        upload_max_size=50 * 1024 * 1024,
        cors_origins=["https://admin.example"],
    )
    container = build_container(settings, serving=True)
    app = create_app(container, run_worker=True)
    with serve_asgi(app, port=port) as base:
        yield base, container
    container.close()


@pytest.fixture
def base(app_env: tuple[str, Container]) -> str:
    return app_env[0]


@pytest.fixture
def container(app_env: tuple[str, Container]) -> Container:
    return app_env[1]


@pytest.fixture
def admin(container: Container) -> dict[str, str]:
    return {"Authorization": f"Bearer {container.admin_token}"}


@pytest.fixture
def http(base: str, admin: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, headers={**V, **admin}, timeout=30) as c:
        yield c


def _wait_outcome(http: httpx.Client, upload_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = http.get(f"/api/v1/uploads/{upload_id}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["state"] in ("ready", "failed"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


def _upload(http: httpx.Client, data: bytes, **meta: str) -> str:
    r = http.post(
        "/files/",
        headers={"Upload-Length": str(len(data)), "Upload-Metadata": _meta(**meta)},
    )
    assert r.status_code == 201, r.text
    upload_id = r.headers["Location"].rsplit("/", 1)[1]
    r = http.patch(f"/files/{upload_id}", content=data, headers={**OCTETS, "Upload-Offset": "0"})
    assert r.status_code == 204, r.text
    return upload_id


def test_tuspy_upload_becomes_a_cataloged_video_with_a_thumbnail(
    base: str, admin: dict[str, str], http: httpx.Client, container: Container, sample_video: Path
) -> None:
    client = tus_client.TusClient(f"{base}/files/", headers=admin)
    uploader = client.uploader(
        str(sample_video),
        chunk_size=16 * 1024,
        upload_checksum=True,
        metadata={"filename": "lecture 1.mp4", "title": "Lecture 1", "collection": "work"},
    )
    uploader.upload()
    upload_id = uploader.url.rsplit("/", 1)[1]
    outcome = _wait_outcome(http, upload_id)
    assert outcome["state"] == "ready", outcome
    assert outcome["error"] is None
    video = http.get(f"/api/v1/videos/{outcome['videoId']}").json()
    source_sha = hashlib.sha256(sample_video.read_bytes()).hexdigest()
    spec = video["technicalSpec"] if "technicalSpec" in video else video["spec"]
    assert spec["sha256"] == source_sha
    assert video["title"] == "Lecture 1" and video["collection"] == "work"
    key = spec["archiveKey"]
    assert key == f"masters/{source_sha[:2]}/{source_sha}.mp4"
    stored = b"".join(container.archive.open(key))
    assert hashlib.sha256(stored).hexdigest() == source_sha
    thumb = f"thumbnails/{source_sha[:2]}/{source_sha}.jpg"
    assert b"".join(container.archive.open(thumb))[:3] == b"\xff\xd8\xff"
    assert spec["thumbnailUrl"] and spec["thumbnailUrl"].endswith(thumb)
    assert not container.archive.exists(f"incoming/{upload_id}")
    # HEAD keeps answering for the finished upload
    head = http.head(f"/files/{upload_id}")
    assert head.status_code == 200
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"]
    # a retried last PATCH (empty, at the final offset) changes nothing and re-queues nothing
    length = head.headers["Upload-Length"]
    r = http.patch(f"/files/{upload_id}", content=b"", headers={**OCTETS, "Upload-Offset": length})
    assert r.status_code == 204 and r.headers["Upload-Offset"] == length
    time.sleep(0.3)
    assert http.get(f"/api/v1/uploads/{upload_id}").json()["state"] == "ready"
    assert container.queue.pending() == 0
    # the same file again points at the same video
    again = _upload(http, sample_video.read_bytes(), filename="copy.mp4")
    assert _wait_outcome(http, again)["videoId"] == outcome["videoId"]


def test_a_non_video_fails_clearly_and_its_bytes_are_kept(
    http: httpx.Client, container: Container
) -> None:
    data = b"these are lecture notes, not a video\n" * 200
    upload_id = _upload(http, data, filename="notes.mp4")
    outcome = _wait_outcome(http, upload_id)
    assert outcome["state"] == "failed"
    assert outcome["error"]["code"] == "NOT_A_VIDEO"
    assert "notes.mp4" in outcome["error"]["message"]
    assert outcome["videoId"] is None
    assert b"".join(container.archive.open(f"incoming/{upload_id}")) == data


def test_authentication_and_upload_tokens(base: str, http: httpx.Client) -> None:
    with httpx.Client(base_url=base, headers=V) as anon:
        r = anon.post("/files/", headers={"Upload-Length": "10"})
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
        r = anon.post("/files/", headers={"Upload-Length": "10", "Authorization": "Bearer nope"})
        assert r.status_code == 401
        forged = "hvu1.eyJpZCI6IngiLCJleHAiOjk5OTk5OTk5OTl9.AAAA"
        r = anon.post(
            "/files/", headers={"Upload-Length": "10", "Authorization": f"Bearer {forged}"}
        )
        assert r.status_code == 401
        assert anon.options("/files/").status_code == 204  # discovery needs no credential
    # only the admin mints tokens
    assert httpx.post(f"{base}/api/v1/upload-tokens", json={}).status_code == 401
    r = http.post(
        "/api/v1/upload-tokens", json={"collection": "inbound", "maxSize": 1000, "ttl": 600}
    )
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    assert r.json()["uploadUrl"].endswith("/files/")
    admin_upload = _upload(http, b"x" * 10, filename="a.bin")
    with httpx.Client(base_url=base, headers={**V, "Authorization": f"Bearer {token}"}) as user:
        r = user.post("/files/", headers={"Upload-Length": "1001"})
        assert r.status_code == 413  # the token's cap, below the server's
        r = user.post(
            "/files/", headers={"Upload-Length": "5", "Upload-Metadata": _meta(collection="work")}
        )
        assert r.status_code == 400 and "inbound" in r.text
        r = user.post("/files/", headers={"Upload-Length": "5"})
        assert r.status_code == 201
        mine = r.headers["Location"].rsplit("/", 1)[1]
        assert user.head(f"/files/{mine}").status_code == 200
        # someone else's upload does not exist for this token
        assert user.head(f"/files/{admin_upload}").status_code == 404
        assert user.get(f"/api/v1/uploads/{admin_upload}").status_code == 404
        assert user.get(f"/api/v1/uploads/{mine}").json()["state"] == "receiving"
        # and the token cannot list or read the catalog
        assert user.get("/api/v1/videos").status_code == 401


def test_concatenation_of_partials_makes_one_video(http: httpx.Client, sample_video: Path) -> None:
    data = sample_video.read_bytes()
    cut = len(data) // 3
    parts = [data[:cut], data[cut:]]
    urls = []
    for part in parts:
        r = http.post(
            "/files/", headers={"Upload-Length": str(len(part)), "Upload-Concat": "partial"}
        )
        assert r.status_code == 201, r.text
        url = r.headers["Location"]
        r = http.patch(url, content=part, headers={**OCTETS, "Upload-Offset": "0"})
        assert r.status_code == 204
        assert http.head(url).headers["Upload-Concat"] == "partial"
        urls.append(url)
    # an incomplete partial cannot be concatenated
    r = http.post("/files/", headers={"Upload-Length": "5", "Upload-Concat": "partial"})
    pending = r.headers["Location"]
    r = http.post("/files/", headers={"Upload-Concat": f"final;{urls[0]} {pending}"})
    assert r.status_code == 400
    r = http.post(
        "/files/", headers={"Upload-Concat": f"final;{urls[0]} {urls[1]}", "Upload-Length": "9"}
    )
    assert r.status_code == 400  # a final upload takes no length
    r = http.post(
        "/files/",
        headers={
            "Upload-Concat": f"final;{urls[0]} {urls[1]}",
            "Upload-Metadata": _meta(filename="joined.mp4"),
        },
    )
    assert r.status_code == 201, r.text
    final = r.headers["Location"]
    head = http.head(final)
    assert head.headers["Upload-Concat"] == f"final;{urls[0]} {urls[1]}"
    assert head.headers["Upload-Length"] == str(len(data))
    r = http.patch(final, content=b"x", headers={**OCTETS, "Upload-Offset": str(len(data))})
    assert r.status_code == 403
    outcome = _wait_outcome(http, final.rsplit("/", 1)[1])
    assert outcome["state"] == "ready", outcome
    video = http.get(f"/api/v1/videos/{outcome['videoId']}").json()
    spec = video["technicalSpec"] if "technicalSpec" in video else video["spec"]
    assert spec["sha256"] == hashlib.sha256(data).hexdigest()


def test_bad_metadata_is_refused_before_anything_exists(http: httpx.Client) -> None:
    for meta in (
        _meta(collection="Not A Slug!"),
        _meta(filename="a\x00b.mp4"),
        _meta(title="x" * 400),
        "filename !!!notbase64",
    ):
        r = http.post("/files/", headers={"Upload-Length": "5", "Upload-Metadata": meta})
        assert r.status_code == 400, (meta, r.text)


def test_cors_preflight_exposes_the_tus_headers(base: str) -> None:
    r = httpx.options(
        f"{base}/files/",
        headers={
            "Origin": "https://admin.example",
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "authorization,tus-resumable,upload-offset",
        },
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://admin.example"
    r = httpx.options(f"{base}/files/", headers={"Origin": "https://admin.example"})
    exposed = r.headers["access-control-expose-headers"].lower()
    for name in ("location", "upload-offset", "upload-expires", "stream-media-id"):
        assert name in exposed
    r = httpx.options(
        f"{base}/files/",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "PATCH"},
    )
    assert "access-control-allow-origin" not in r.headers


def test_expiry_header_and_metrics(http: httpx.Client, base: str) -> None:
    r = http.post("/files/", headers={"Upload-Length": "4"})
    assert "Upload-Expires" in r.headers
    url = r.headers["Location"]
    r = http.patch(url, content=b"ab", headers={**OCTETS, "Upload-Offset": "0"})
    assert r.status_code == 204 and "Upload-Expires" in r.headers
    r = http.patch(url, content=b"cd", headers={**OCTETS, "Upload-Offset": "1"})
    assert r.status_code == 409
    assert httpx.get(f"{base}/metrics").status_code == 401
    text = http.get("/metrics").text
    assert 'hybridvideo_tus_requests_total{method="PATCH"}' in text
    assert 'hybridvideo_tus_errors_total{status="409"' in text
    assert "hybridvideo_tus_uploads_created_total" in text


def test_expired_uploads_answer_410_then_404_after_the_sweep(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    settings = load_settings(
        data_dir=tmp_path / "data",
        engine=False,
        stream_api_url="http://127.0.0.1:9/client/v4",
        cloudflare_account_id="a" * 32,
        cloudflare_stream_token="t" * 40,
        upload_expiry_hours=0.0003,  # about a second
    )
    container = build_container(settings, serving=True)
    try:
        app = create_app(container, run_worker=False)
        headers = {**V, "Authorization": f"Bearer {container.admin_token}"}
        with TestClient(app, headers=headers) as tc:
            r = tc.post("/files/", headers={"Upload-Length": "4"})
            url = r.headers["Location"]
            r = tc.patch(url, content=b"ab", headers={**OCTETS, "Upload-Offset": "0"})
            assert r.status_code == 204
            time.sleep(1.3)
            assert tc.head(url).status_code == 410
            r = tc.patch(url, content=b"cd", headers={**OCTETS, "Upload-Offset": "2"})
            assert r.status_code == 410
            assert container.ingest.sweep()["removed"] == 1
            assert tc.head(url).status_code == 404
            assert tc.delete(url).status_code == 404
    finally:
        container.close()


def test_the_engine_alone_also_answers_cors_for_direct_uploads(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    settings = load_settings(data_dir=tmp_path / "data", cors_origins=["https://app.example"])
    container = build_container(settings, serving=True)
    try:
        app = create_app(container, run_worker=False, engine_only=True)
        assert container.engine is not None
        path = f"/client/v4/accounts/{container.engine.account_id}/stream"
        with TestClient(app) as tc:
            r = tc.options(
                path,
                headers={
                    "Origin": "https://app.example",
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "tus-resumable,upload-length",
                },
            )
            assert r.status_code == 200
            assert r.headers["access-control-allow-origin"] == "https://app.example"
            r = tc.get(path, headers={"Origin": "https://app.example"})
            assert "stream-media-id" in r.headers["access-control-expose-headers"].lower()
    finally:
        container.close()
