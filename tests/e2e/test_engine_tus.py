"""Cloudflare's tus upload endpoint on the built-in engine, over real HTTP.

A real ``serve`` (uvicorn on loopback, embedded worker) runs the engine; uploads go in with
the real ``tuspy`` client (Cloudflare's documented Python client), the official
``cloudflare`` SDK's tus creation call and raw ``httpx`` for the rules: the
``stream-media-id`` header, the upload URL, the video reaching ``ready`` and playing with a
signed token, Cloudflare's chunk rules, auth (and its absence on direct creator uploads),
and the CORS exposure of ``stream-media-id``.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import imageio_ffmpeg
import pytest
from cloudflare import Cloudflare
from tusclient import client as tus_client
from tusclient.uploader.uploader import Uploader

from hybridvideo.api.app import create_app
from hybridvideo.config import load_settings
from hybridvideo.container import Container, build_container
from hybridvideo.engine.uploads import CHUNK_MULTIPLE, MAX_CHUNK, MIN_CHUNK
from hybridvideo.ingest.tus.protocol import format_expires
from hybridvideo.media.testclip import make_test_clip
from tests.services import free_port, serve_asgi

pytestmark = pytest.mark.slow

HEX32 = re.compile(r"[0-9a-f]{32}")
APP_ORIGIN = "https://app.example.com"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("engine-tus")
    port = free_port()
    settings = load_settings(
        data_dir=root / "data",
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        cors_origins=[APP_ORIGIN],
    )
    container: Container = build_container(settings, serving=True)
    assert container.engine is not None
    for name in ("CLOUDFLARE_EMAIL", "CLOUDFLARE_API_KEY", "CLOUDFLARE_API_USER_SERVICE_KEY"):
        os.environ.pop(name, None)
    with serve_asgi(create_app(container, run_worker=True), port=port) as base:
        account, token = container.engine.account_id, container.engine.api_token
        sdk = Cloudflare(api_token=token, base_url=f"{base}/client/v4", max_retries=0)
        yield {
            "base": base,
            "account": account,
            "token": token,
            "auth": {"Authorization": f"Bearer {token}"},
            "collection": f"{base}/client/v4/accounts/{account}/stream",
            "sdk": sdk,
            "root": root,
        }
        sdk.close()
    container.close()


def create(world: dict[str, Any], length: int, metadata: str | None = None, **kw: Any) -> Any:
    headers = {"Tus-Resumable": "1.0.0", "Upload-Length": str(length), **world["auth"]}
    if metadata is not None:
        headers["Upload-Metadata"] = metadata
    headers.update(kw.pop("headers", {}))
    return httpx.post(world["collection"], headers=headers, **kw)


def patch(
    url: str, offset: int, body: bytes | Iterator[bytes], headers: dict[str, str] | None = None
) -> Any:
    return httpx.patch(
        url,
        content=body,
        headers={
            "Tus-Resumable": "1.0.0",
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
            **(headers or {}),
        },
        timeout=60,
    )


def video(world: dict[str, Any], uid: str) -> dict[str, Any]:
    answer = httpx.get(f"{world['collection']}/{uid}", headers=world["auth"])
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()["result"]
    return result


def wait_state(world: dict[str, Any], uid: str, *states: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = video(world, uid)
        if current["status"]["state"] in states:
            return current
        time.sleep(0.25)
    raise AssertionError(f"{uid} never reached {states}: {video(world, uid)}")


def plays(world: dict[str, Any], uid: str) -> None:
    """The master playlist and a variant answer through a token the engine signed."""
    made = world["sdk"].stream.token.create(uid, account_id=world["account"])
    master = httpx.get(f"{world['base']}/delivery/{made.token}/manifest/video.m3u8")
    assert master.status_code == 200, master.text
    assert "#EXT-X-STREAM-INF" in master.text
    variant = next(line for line in master.text.splitlines() if line and line[0] != "#")
    playlist = httpx.get(f"{world['base']}/delivery/{made.token}/manifest/{variant}")
    assert playlist.status_code == 200 and ".m4s" in playlist.text


def test_tuspy_uploads_like_cloudflares_docs_and_the_video_plays(
    world: dict[str, Any], sample_video: Path
) -> None:
    """``tus-upload --chunk-size 52428800 --header Authorization ... <file> <endpoint>``."""
    name = f"tuspy-{os.urandom(4).hex()}"
    client = tus_client.TusClient(world["collection"], headers=dict(world["auth"]))
    uploader = client.uploader(
        file_path=str(sample_video),
        chunk_size=52_428_800,
        metadata={"name": name, "requiresignedurls": ""},
    )
    uploader.upload()
    assert uploader.url is not None and uploader.url.startswith(world["base"] + "/")
    listed = world["sdk"].stream.list(account_id=world["account"], extra_query={"video_name": name})
    uids = [v.uid for v in listed]
    assert len(uids) == 1 and uids[0] is not None
    done = wait_state(world, uids[0], "ready", "error")
    assert done["status"]["state"] == "ready", done["status"]
    assert done["readyToStream"] and done["requireSignedURLs"] and done["meta"]["name"] == name
    assert done["size"] == sample_video.stat().st_size and done["uploaded"]
    plays(world, uids[0])
    # The bare uid is refused: the video needs signed URLs, as the metadata asked.
    bare = httpx.get(f"{world['base']}/delivery/{uids[0]}/manifest/video.m3u8")
    assert bare.status_code == 401
    # One-time URL: the finished upload is gone.
    assert (
        httpx.head(uploader.url, headers={**world["auth"], "Tus-Resumable": "1.0.0"}).status_code
        == 404
    )


def test_sdk_direct_user_upload_needs_no_token(world: dict[str, Any], sample_video: Path) -> None:
    """The backend creates with the SDK; the end user uploads with tuspy, no token."""
    size = sample_video.stat().st_size
    raw = world["sdk"].stream.with_raw_response.create(
        account_id=world["account"],
        tus_resumable="1.0.0",
        upload_length=size,
        direct_user=True,
        upload_creator="creator-42",
        upload_metadata=f"name {b64('direct clip')},maxDurationSeconds {b64('600')}",
    )
    assert raw.status_code == 201
    uid, location = raw.headers["stream-media-id"], raw.headers["location"]
    assert HEX32.fullmatch(uid) and location.startswith(world["base"] + "/")
    assert uid not in location  # opaque: the upload id is not the video id
    pending = video(world, uid)
    assert pending["status"]["state"] == "pendingupload" and pending["creator"] == "creator-42"
    assert pending["maxDurationSeconds"] == 600 and pending["uploadExpiry"]
    assert not pending["readyToStream"]
    uploader = Uploader(file_path=str(sample_video), url=location, chunk_size=MIN_CHUNK)
    assert uploader.offset == 0  # tuspy's HEAD worked without a token
    uploader.upload()
    done = wait_state(world, uid, "ready", "error")
    assert done["status"]["state"] == "ready", done["status"]
    assert done["meta"] == {"name": "direct clip"} and not done["requireSignedURLs"]
    assert httpx.get(f"{world['base']}/delivery/{uid}/manifest/video.m3u8").status_code == 200


def test_creation_answers_like_cloudflare(world: dict[str, Any]) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    deletion = (now + timedelta(days=60)).isoformat().replace("+00:00", "Z")
    expiry = (now + timedelta(days=2)).isoformat().replace("+00:00", "Z")
    metadata = ",".join(
        [
            f"name {b64('settings')}",
            "requiresignedurls",
            f"allowedorigins {b64('example.com, test.com')}",
            f"thumbnailtimestamppct {b64('0.25')}",
            f"scheduleddeletion {b64(deletion)}",
            f"expiry {b64(expiry)}",
            f"filetype {b64('video/mp4')}",  # unknown keys are ignored
        ]
    )
    created = create(world, 1000, metadata)
    assert created.status_code == 201, created.text
    uid = created.headers["stream-media-id"]
    assert HEX32.fullmatch(uid)
    assert created.headers["tus-resumable"] == "1.0.0" and "upload-expires" in created.headers
    location = created.headers["location"]
    assert urlsplit(location).path.startswith(f"/client/v4/accounts/{world['account']}/stream/tus/")
    head = httpx.head(location, headers={**world["auth"], "Tus-Resumable": "1.0.0"})
    assert head.status_code == 200
    assert (head.headers["upload-offset"], head.headers["upload-length"]) == ("0", "1000")
    pending = video(world, uid)
    assert pending["status"]["state"] == "pendingupload"
    assert pending["meta"] == {"name": "settings"} and pending["requireSignedURLs"]
    assert pending["allowedOrigins"] == ["example.com", "test.com"]
    assert pending["thumbnailTimestampPct"] == 0.25
    assert pending["uploadExpiry"].startswith(expiry[:-1])
    assert pending["scheduledDeletion"].startswith(deletion[:-1])
    assert created.headers["upload-expires"] == format_expires(now + timedelta(days=2))
    # A client DELETE cancels: the empty video goes with its upload.
    gone = httpx.delete(location, headers={**world["auth"], "Tus-Resumable": "1.0.0"})
    assert gone.status_code == 204
    answer = httpx.get(f"{world['collection']}/{uid}", headers=world["auth"])
    assert answer.status_code == 404


def raw_patch(url: str, content_length: int, token: str | None = None) -> tuple[int, bytes]:
    """Send a PATCH's headers announcing ``content_length`` bytes but no body: the server
    must answer on the headers alone (a 200 MiB body is not worth sending in a test)."""
    parts = urlsplit(url)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    request = (
        f"PATCH {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nTus-Resumable: 1.0.0\r\n"
        f"{auth}Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
        f"Content-Length: {content_length}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=10) as conn:
        conn.sendall(request.encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def test_cloudflare_chunk_rules(world: dict[str, Any]) -> None:
    size = MIN_CHUNK + 1024 * 1024 + 1000
    created = create(world, size)
    location, uid = created.headers["location"], created.headers["stream-media-id"]
    auth = world["auth"]
    small = patch(location, 0, b"\0" * (1024 * 1024), auth)
    assert small.status_code == 400 and "5,242,880" in small.text, small.text
    ragged = patch(location, 0, b"\0" * (MIN_CHUNK + 1000), auth)
    assert ragged.status_code == 400 and "262,144" in ragged.text, ragged.text
    chunked = patch(location, 0, iter([b"\0" * 1024]), auth)  # no Content-Length
    assert chunked.status_code == 400 and "Content-Length" in chunked.text
    head = httpx.head(location, headers={**auth, "Tus-Resumable": "1.0.0"})
    assert head.headers["upload-offset"] == "0"  # nothing was kept
    # A multiple of 256 KiB of at least 5 MiB passes; so does any final chunk.
    first = patch(location, 0, os.urandom(MIN_CHUNK + CHUNK_MULTIPLE), auth)
    assert first.status_code == 204 and first.headers["upload-offset"] == str(
        MIN_CHUNK + CHUNK_MULTIPLE
    )
    rest = size - MIN_CHUNK - CHUNK_MULTIPLE
    last = patch(location, MIN_CHUNK + CHUNK_MULTIPLE, os.urandom(rest), auth)
    assert last.status_code == 204 and last.headers["upload-offset"] == str(size)
    # Random bytes are no video: the upload is encoded like a copy and fails like one.
    failed = wait_state(world, uid, "ready", "error")
    assert failed["status"]["errorReasonCode"] == "ERR_NON_VIDEO"
    # The 200 MiB ceiling, on the announced length alone.
    big = create(world, 300 * 1024 * 1024).headers["location"]
    assert raw_patch(big, MAX_CHUNK + 1)[0] == 401  # the token is checked first
    status, answer = raw_patch(big, MAX_CHUNK + 1, world["token"])
    assert status == 400 and b"209,715,200" in answer, answer


def test_auth_on_creation_and_on_upload_urls(world: dict[str, Any]) -> None:
    headers = {"Tus-Resumable": "1.0.0", "Upload-Length": "10"}
    anonymous = httpx.post(world["collection"], headers=headers)
    assert anonymous.status_code == 401 and anonymous.json()["errors"][0]["code"] == 10000
    wrong = httpx.post(world["collection"], headers={**headers, "Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and wrong.json()["errors"][0]["code"] == 10000
    other = world["collection"].replace(world["account"], "0" * 32)
    assert httpx.post(other, headers={**headers, **world["auth"]}).status_code == 403
    form = httpx.post(world["collection"], headers=world["auth"], files={"file": b"x"})
    assert form.status_code == 400 and "tus" in form.json()["errors"][0]["message"]
    # An upload made with the token needs it on its URL too ...
    location = create(world, 10).headers["location"]
    tus = {"Tus-Resumable": "1.0.0"}
    bare = httpx.head(location, headers=tus)
    assert bare.status_code == 401 and bare.headers["www-authenticate"] == "Bearer"
    assert patch(location, 0, b"0123456789").status_code == 401
    assert httpx.head(location, headers={**tus, "Authorization": "Bearer x"}).status_code == 401
    assert httpx.head(location, headers={**tus, **world["auth"]}).status_code == 200
    # ... a direct_user one does not; an unknown upload id is just not found.
    direct = create(world, 10, params={"direct_user": "true"}).headers["location"]
    assert httpx.head(direct, headers=tus).status_code == 200
    unknown = location.rsplit("/", 1)[0] + "/" + "0" * 32
    assert httpx.head(unknown, headers=tus).status_code == 404
    assert httpx.options(direct).headers["tus-version"] == "1.0.0"


@pytest.mark.parametrize(
    ("metadata", "needle"),
    [
        (f"watermark {b64('abc')}", "watermark"),
        (f"thumbnailtimestamppct {b64('1.5')}", "thumbnailtimestamppct"),
        (f"maxDurationSeconds {b64('0')}", "maxDurationSeconds"),
        (f"expiry {b64('2001-01-01T00:00:00Z')}", "expiry"),
        (f"scheduleddeletion {b64('2001-01-01T00:00:00Z')}", "scheduledDeletion"),
    ],
)
def test_bad_metadata_is_refused_in_the_envelope(
    world: dict[str, Any], metadata: str, needle: str
) -> None:
    before = len(list(world["sdk"].stream.list(account_id=world["account"])))
    answer = create(world, 10, metadata)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["success"] is False and needle in body["errors"][0]["message"]
    assert len(list(world["sdk"].stream.list(account_id=world["account"]))) == before


def test_max_duration_is_enforced_before_encoding(world: dict[str, Any]) -> None:
    clip = make_test_clip(world["root"] / "three.mp4", seconds=3, size="160x90", fps=15)
    created = create(world, clip.stat().st_size, f"maxdurationseconds {b64('1')}")
    uid = created.headers["stream-media-id"]
    assert (
        patch(created.headers["location"], 0, clip.read_bytes(), world["auth"]).status_code == 204
    )
    failed = wait_state(world, uid, "ready", "error")
    assert failed["status"]["errorReasonCode"] == "ERR_DURATION_EXCEED_CONSTRAINT"


def test_multi_chunk_tuspy_upload_of_a_real_video(
    world: dict[str, Any], sample_video: Path
) -> None:
    """Two chunks (5 MiB, then the rest): an MPEG-TS clip padded with null packets."""
    ts = world["root"] / "padded.ts"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(sample_video)]
        + ["-c", "copy", "-f", "mpegts", str(ts)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    null_packet = b"\x47\x1f\xff\x10" + b"\xff" * 184
    with ts.open("ab") as fh:
        fh.write(null_packet * (MIN_CHUNK // 188 + 100))
    assert ts.stat().st_size > MIN_CHUNK
    raw = world["sdk"].stream.with_raw_response.create(
        account_id=world["account"], tus_resumable="1.0.0", upload_length=ts.stat().st_size
    )
    uid, location = raw.headers["stream-media-id"], raw.headers["location"]
    uploader = Uploader(
        file_path=str(ts),
        url=location,
        chunk_size=MIN_CHUNK,
        client=tus_client.TusClient(location, headers=dict(world["auth"])),
    )
    uploader.upload_chunk()  # type: ignore[no-untyped-call]
    assert uploader.offset == MIN_CHUNK
    assert video(world, uid)["status"]["state"] == "pendingupload"
    uploader.upload()
    done = wait_state(world, uid, "ready", "error")
    assert done["status"]["state"] == "ready", done["status"]


def test_cors_exposes_stream_media_id(world: dict[str, Any]) -> None:
    preflight = httpx.options(
        world["collection"],
        headers={
            "Origin": APP_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,tus-resumable,upload-length",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == APP_ORIGIN
    created = create(world, 10, headers={"Origin": APP_ORIGIN})
    assert created.headers["access-control-allow-origin"] == APP_ORIGIN
    exposed = {
        h.strip().lower() for h in created.headers["access-control-expose-headers"].split(",")
    }
    assert {"stream-media-id", "location", "upload-offset"} <= exposed
