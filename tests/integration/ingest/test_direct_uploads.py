"""``POST /api/v1/uploads`` (multipart) and the legacy base64 body, on the real app.

A real server on loopback (uvicorn), the local archive and the SQLite catalog; httpx and a
raw socket (to see answers given before a body is sent) as clients. Delivery points at a
closed port: the tests see the ``delivery.send`` job start for the video (its
``delivery_requested`` event), not Stream (tests/e2e covers that).
"""

from __future__ import annotations

import base64
import hashlib
import socket
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import NoMatchFound

from hybridvideo.api.app import create_app
from hybridvideo.api.routers import direct_uploads
from hybridvideo.config import load_settings
from hybridvideo.container import Container, build_container
from hybridvideo.domain.video import VideoFilter
from tests.services import free_port, serve_asgi

#: The server's direct upload cap in these tests (the sample clip is ~40 kB).
CAP = 200_000
BOUNDARY = "hv-test-boundary"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def _with_direct_uploads(app: FastAPI) -> FastAPI:
    """Include the router unless ``create_app`` already does (it is wired by the lead)."""
    try:
        app.url_path_for("upload_file")
    except NoMatchFound:
        app.include_router(direct_uploads.router)
    return app


@contextmanager
def _serve(data_dir: Path, *, worker: bool, **overrides: Any) -> Iterator[tuple[str, Container]]:
    port = free_port()
    settings = load_settings(
        data_dir=data_dir,
        public_url=f"http://127.0.0.1:{port}",
        engine=False,
        stream_api_url="http://127.0.0.1:9/client/v4",  # delivery is not under test here
        cloudflare_account_id="a" * 32,
        cloudflare_stream_token="t" * 40,
        direct_upload_max_size=CAP,
        **overrides,
    )
    container = build_container(settings, serving=True)
    try:
        app = _with_direct_uploads(create_app(container, run_worker=worker))
        with serve_asgi(app, port=port) as base:
            yield base, container
    finally:
        container.close()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[str, Container]]:
    """Legacy base64 off (the default); queued jobs stay queued."""
    with _serve(tmp_path / "data", worker=False) as served:
        yield served


@pytest.fixture
def worker_env(tmp_path: Path) -> Iterator[tuple[str, Container]]:
    """With the embedded worker running queued jobs (its teardown waits for them)."""
    with _serve(tmp_path / "data", worker=True) as served:
        yield served


@pytest.fixture
def legacy_env(tmp_path: Path) -> Iterator[tuple[str, Container]]:
    with _serve(tmp_path / "legacy", worker=False, legacy_base64_uploads=True) as served:
        yield served


def _client(base: str, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=base, headers=headers, timeout=30)


@pytest.fixture
def http(env: tuple[str, Container]) -> Iterator[httpx.Client]:
    base, container = env
    with _client(base, container.admin_token) as c:
        yield c


@pytest.fixture
def legacy(legacy_env: tuple[str, Container]) -> Iterator[httpx.Client]:
    base, container = legacy_env
    with _client(base, container.admin_token) as c:
        yield c


def _post_file(
    http: httpx.Client, data: bytes, filename: str = "clip.mp4", **fields: str
) -> httpx.Response:
    return http.post(
        "/api/v1/uploads", files={"file": (filename, data, "video/mp4")}, data=fields or None
    )


def _token(http: httpx.Client, **grant: Any) -> str:
    r = http.post("/api/v1/upload-tokens", json=grant)
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    return token


def _nothing_stored(container: Container) -> None:
    assert [o.key for o in container.archive.list("")] == []
    assert container.catalog.list_videos(VideoFilter()).total == 0
    _no_temp_files(container)


def _no_temp_files(container: Container) -> None:
    folder = container.settings.data_dir / direct_uploads.TEMP_FOLDER
    assert not folder.exists() or list(folder.iterdir()) == []


def _wait_event(container: Container, video_id: str, kind: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while kind not in [e.kind for e in container.catalog.events(video_id)]:
        assert time.monotonic() < deadline, container.catalog.events(video_id)
        time.sleep(0.1)


def _raw_exchange(base: str, head: str, body: bytes = b"") -> tuple[int, str]:
    """Send a request head and the start of a body, never the rest; read the answer.

    The answer must come without the rest of the body (else the read times out)."""
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode("latin-1") + body)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        header_block, _, rest = received.partition(b"\r\n\r\n")
        lines = header_block.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            assert chunk, rest
            rest += chunk
    return int(lines[0].split(" ", 2)[1]), rest.decode()


def _file_part_head(filename: str = "clip.mp4") -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{filename}"\r\nContent-Type: video/mp4\r\n\r\n'
    ).encode()


def _field_part(name: str, value: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
    ).encode()


def _closing() -> bytes:
    return f"\r\n--{BOUNDARY}--\r\n".encode()


# -- multipart ----------------------------------------------------------------------------


def test_a_clip_becomes_a_cataloged_video_with_master_thumbnail_and_delivery(
    worker_env: tuple[str, Container], sample_video: Path
) -> None:
    base, container = worker_env
    data = sample_video.read_bytes()
    with _client(base, container.admin_token) as http:
        _check_new_video(http, container, data)


def _check_new_video(http: httpx.Client, container: Container, data: bytes) -> None:
    r = _post_file(http, data, "lecture 1.mp4", title="Lecture 1", collection="work")
    assert r.status_code == 201, r.text
    video = r.json()
    assert r.headers["Location"] == f"/api/v1/videos/{video['id']}"
    assert video == http.get(r.headers["Location"]).json()
    sha = hashlib.sha256(data).hexdigest()
    spec = video["spec"]
    assert spec["sha256"] == sha and spec["fileSize"] == len(data)
    assert spec["format"] == "mp4" and spec["width"] == 160 and spec["height"] == 90
    assert video["title"] == "Lecture 1" and video["collection"] == "work"
    assert spec["archiveKey"] == f"masters/{sha[:2]}/{sha}.mp4"
    stored = b"".join(container.archive.open(spec["archiveKey"]))
    assert hashlib.sha256(stored).hexdigest() == sha
    thumb = f"thumbnails/{sha[:2]}/{sha}.jpg"
    assert b"".join(container.archive.open(thumb))[:3] == b"\xff\xd8\xff"
    assert spec["thumbnailUrl"] and spec["thumbnailUrl"].endswith(thumb)
    kinds = [e.kind for e in container.catalog.events(video["id"])]
    assert "uploaded" in kinds
    _wait_event(container, video["id"], "delivery_requested")  # the delivery job ran
    _no_temp_files(container)


def test_the_same_file_again_answers_200_with_the_same_video(
    http: httpx.Client, env: tuple[str, Container], sample_video: Path
) -> None:
    _, container = env
    first = _post_file(http, sample_video.read_bytes())
    assert first.status_code == 201, first.text
    again = _post_file(http, sample_video.read_bytes(), "other name.mp4", title="Other")
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["title"] == "clip"  # the existing video, untouched
    assert again.headers["Content-Location"] == f"/api/v1/videos/{first.json()['id']}"
    assert "Location" not in again.headers
    assert container.catalog.list_videos(VideoFilter()).total == 1


def test_a_title_defaults_to_the_file_name_even_from_a_full_client_path(
    http: httpx.Client, sample_video: Path
) -> None:
    r = _post_file(http, sample_video.read_bytes(), "C:\\fakepath\\talk.mov", title="")
    assert r.status_code == 201, r.text
    video = r.json()
    assert video["title"] == "talk" and video["collection"] == "default"
    assert video["spec"]["archiveKey"].endswith(".mov")


def test_a_non_video_is_400_and_nothing_is_kept(
    http: httpx.Client, env: tuple[str, Container]
) -> None:
    _, container = env
    r = _post_file(http, b"these are lecture notes, not a video\n" * 200, "notes.mp4")
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "NOT_A_VIDEO" and "notes.mp4" in error["message"]
    assert error["request_id"]
    r = _post_file(http, b"", "empty.mp4")
    assert r.status_code == 400 and r.json()["error"]["code"] == "NOT_A_VIDEO"
    _nothing_stored(container)


def test_over_the_cap_is_413_with_or_without_content_length(
    http: httpx.Client, env: tuple[str, Container]
) -> None:
    base, container = env
    # a declared length over the cap
    r = _post_file(http, b"\0" * (CAP + direct_uploads.ENVELOPE))
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert "/files/" in r.json()["error"]["message"]
    # a file one byte over the cap, within the envelope allowance: cut off while read
    r = _post_file(http, b"\0" * (CAP + 1))
    assert r.status_code == 413

    # chunked: no Content-Length at all
    def chunked() -> Iterator[bytes]:
        yield _file_part_head()
        for _ in range(3 * CAP // 8192):
            yield b"\0" * 8192
        yield _closing()

    r = http.post("/api/v1/uploads", content=chunked(), headers=MULTIPART)
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in r.request.headers
    assert r.status_code == 413

    # bytes after the closing boundary (ignored by multipart) count against the cap too
    def epilogue() -> Iterator[bytes]:
        yield _file_part_head() + b"\0" * 10 + _closing()
        for _ in range(2 * CAP // 8192):
            yield b"\0" * 8192

    r = http.post("/api/v1/uploads", content=epilogue(), headers=MULTIPART)
    assert r.status_code == 413
    _nothing_stored(container)

    # a huge Content-Length is refused before a byte of the body is sent
    admin = container.admin_token
    head = (
        "POST /api/v1/uploads HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {admin}\r\nContent-Type: {MULTIPART['Content-Type']}\r\n"
        f"Content-Length: {10**9}\r\n\r\n"
    )
    status, body = _raw_exchange(base, head)
    assert status == 413, body


def test_an_upload_token_cap_applies(
    http: httpx.Client, env: tuple[str, Container], sample_video: Path
) -> None:
    base, container = env
    token = _token(http, maxSize=1000)
    with _client(base, token) as user:
        r = _post_file(user, sample_video.read_bytes())
        assert r.status_code == 413, r.text
        assert "1000 bytes" in r.json()["error"]["message"]
    _nothing_stored(container)


def test_credentials_are_required(env: tuple[str, Container], sample_video: Path) -> None:
    base, container = env
    forged = "hvu1.eyJpZCI6IngiLCJleHAiOjk5OTk5OTk5OTl9.AAAA"
    for token in (None, "nope", forged):
        with _client(base, token) as anon:
            r = _post_file(anon, sample_video.read_bytes())
            assert r.status_code == 401, (token, r.text)
            assert r.headers["WWW-Authenticate"] == "Bearer"
            assert r.json()["error"]["code"] == "UNAUTHORIZED"
    _nothing_stored(container)


def test_an_upload_token_fixes_collection_and_owner(
    http: httpx.Client, env: tuple[str, Container], sample_video: Path
) -> None:
    base, container = env
    token = _token(http, collection="inbound", ownerId="user-7")
    with _client(base, token) as user:
        r = _post_file(user, sample_video.read_bytes(), collection="work")
        assert r.status_code == 400 and "inbound" in r.json()["error"]["message"]
        assert container.catalog.list_videos(VideoFilter()).total == 0
        r = _post_file(user, sample_video.read_bytes(), ownerId="someone-else")
        assert r.status_code == 201, r.text
        video = r.json()
        assert video["collection"] == "inbound" and video["ownerId"] == "user-7"
        # a token cannot read the catalog it uploads into
        assert user.get(r.headers["Location"]).status_code == 401
    # the admin may choose
    other = sample_video.read_bytes() + b"\0"  # a different master (MP4 ignores the tail)
    r = _post_file(http, other, collection="work", ownerId="user-9")
    assert r.status_code == 201, r.text
    assert r.json()["collection"] == "work" and r.json()["ownerId"] == "user-9"


def test_bad_metadata_is_refused_before_the_file_is_sent(
    http: httpx.Client, env: tuple[str, Container]
) -> None:
    base, container = env
    token = _token(http, collection="inbound")
    head = (
        "POST /api/v1/uploads HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: {MULTIPART['Content-Type']}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    start = _field_part("collection", "work") + _file_part_head() + b"\0" * 100
    status, body = _raw_exchange(base, head, f"{len(start):x}\r\n".encode() + start + b"\r\n")
    assert status == 400 and "inbound" in body
    for bad in ({"collection": "Not A Slug!"}, {"title": "x" * 400}, {"ownerId": "a\x01"}):
        r = _post_file(http, b"\0" * 10, **bad)
        assert r.status_code == 400, (bad, r.text)
    _nothing_stored(container)


def test_malformed_requests(http: httpx.Client, env: tuple[str, Container]) -> None:
    _, container = env
    r = http.post("/api/v1/uploads", json={"file": "x"})
    assert r.status_code == 415 and r.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    r = http.post("/api/v1/uploads", content=b"x", headers={"Content-Type": "video/mp4"})
    assert r.status_code == 415
    r = http.post("/api/v1/uploads", files={"title": (None, "only a title")})
    assert r.status_code == 400 and "'file'" in r.json()["error"]["message"]
    r = http.post("/api/v1/uploads", files={"file": ("a.mp4", b"x"), "colection": (None, "x")})
    assert r.status_code == 400 and "colection" in r.json()["error"]["message"]
    r = http.post(
        "/api/v1/uploads",
        content=_file_part_head() + _file_part_head() + _closing(),
        headers=MULTIPART,
    )
    assert r.status_code == 400
    r = http.post("/api/v1/uploads", content=_file_part_head() + b"abc", headers=MULTIPART)
    assert r.status_code == 400 and "ended" in r.json()["error"]["message"]
    r = http.post("/api/v1/uploads", content=b"x", headers={"Content-Type": "multipart/form-data"})
    assert r.status_code == 400 and "boundary" in r.json()["error"]["message"]
    big_title = _field_part("title", "t" * (direct_uploads.MAX_FIELD + 1))
    r = http.post("/api/v1/uploads", content=big_title + _closing(), headers=MULTIPART)
    assert r.status_code == 400
    _nothing_stored(container)


# -- the legacy base64 body ---------------------------------------------------------------


def test_legacy_base64_is_gone_unless_switched_on(http: httpx.Client, sample_video: Path) -> None:
    data = base64.b64encode(sample_video.read_bytes()).decode()
    r = http.post("/api/v1/uploads/base64", json={"filename": "a.mp4", "data": data})
    assert r.status_code == 410 and r.json()["error"]["code"] == "GONE"
    message = r.json()["error"]["message"]
    assert "/files/" in message and "POST /api/v1/uploads" in message
    assert r.headers["Deprecation"].startswith("@")
    assert r.headers["Link"] == '</files/>; rel="successor-version"'


def test_legacy_base64_upload_answers_with_deprecation(
    legacy: httpx.Client, legacy_env: tuple[str, Container], sample_video: Path
) -> None:
    base, container = legacy_env
    raw = sample_video.read_bytes()
    encoded = base64.b64encode(raw).decode()
    r = legacy.post(
        "/api/v1/uploads/base64",
        json={"filename": "old way.mp4", "data": encoded, "title": "Old", "collection": "work"},
    )
    assert r.status_code == 201, r.text
    deprecated_at = int(direct_uploads.DEPRECATED_AT.timestamp())
    assert r.headers["Deprecation"] == f"@{deprecated_at}"
    assert r.headers["Link"] == '</files/>; rel="successor-version"'
    video = r.json()
    assert r.headers["Location"] == f"/api/v1/videos/{video['id']}"
    sha = hashlib.sha256(raw).hexdigest()
    assert video["spec"]["sha256"] == sha and video["title"] == "Old"
    assert video["collection"] == "work"
    assert container.archive.exists(f"masters/{sha[:2]}/{sha}.mp4")
    assert container.archive.exists(f"thumbnails/{sha[:2]}/{sha}.jpg")
    assert container.queue.pending() == 1  # delivery.send (no worker in this app)
    # a data: URL with MIME line breaks decodes to the same bytes: the same video
    wrapped = "data:video/mp4;base64," + "\r\n".join(textwrap.wrap(encoded, 76))
    r = legacy.post("/api/v1/uploads/base64", json={"filename": "b.mp4", "data": wrapped})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == video["id"]
    assert "Deprecation" in r.headers
    # an upload token's collection applies here too
    token = _token(legacy, collection="inbound")
    with _client(base, token) as user:
        other = base64.b64encode(raw + b"\0").decode()
        r = user.post("/api/v1/uploads/base64", json={"filename": "c.mp4", "data": other})
        assert r.status_code == 201, r.text
        assert r.json()["collection"] == "inbound"
    assert legacy.get("/openapi.json").json()["paths"]["/api/v1/uploads/base64"]["post"][
        "deprecated"
    ]


def test_legacy_base64_refusals(legacy: httpx.Client, legacy_env: tuple[str, Container]) -> None:
    _, container = legacy_env
    post = legacy.post
    r = post("/api/v1/uploads/base64", json={"filename": "a.mp4", "data": "!!!notbase64"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_INPUT"
    assert "Deprecation" in r.headers  # errors say it too
    r = post("/api/v1/uploads/base64", json={"filename": "a.mp4", "data": "QUJD=QUJD"})
    assert r.status_code == 400
    r = post("/api/v1/uploads/base64", json={"filename": "a.mp4", "data": "data:x,QUJD"})
    assert r.status_code == 400
    notes = base64.b64encode(b"not a video\n" * 100).decode()
    r = post("/api/v1/uploads/base64", json={"filename": "n.mp4", "data": notes})
    assert r.status_code == 400 and r.json()["error"]["code"] == "NOT_A_VIDEO"
    r = post("/api/v1/uploads/base64", json={"data": notes})
    assert r.status_code == 422 and "filename" in r.json()["error"]["message"]
    r = post("/api/v1/uploads/base64", content=b"{", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    r = post("/api/v1/uploads/base64", files={"file": ("a.mp4", b"x")})
    assert r.status_code == 415
    # decoded one byte over the cap: refused from the text's length, before decoding
    over = base64.b64encode(b"\0" * (CAP + 1)).decode()
    r = post("/api/v1/uploads/base64", json={"filename": "a.mp4", "data": over})
    assert r.status_code == 413 and r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    # a body far over the cap: refused from Content-Length, and while read without one
    huge = base64.b64encode(b"\0" * (3 * CAP)).decode()
    r = post("/api/v1/uploads/base64", json={"filename": "a.mp4", "data": huge})
    assert r.status_code == 413

    def chunked() -> Iterator[bytes]:
        yield b'{"filename": "a.mp4", "data": "'
        for _ in range(3 * CAP // 8192):
            yield b"A" * 8192
        yield b'"}'

    r = post(
        "/api/v1/uploads/base64",
        content=chunked(),
        headers={"Content-Type": "application/json"},
    )
    assert "Content-Length" not in r.request.headers
    assert r.status_code == 413
    assert "Deprecation" in r.headers
    _nothing_stored(container)
