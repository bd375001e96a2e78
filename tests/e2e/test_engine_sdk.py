"""The official `cloudflare` SDK drives the built-in engine end to end, over real HTTP.

copy (from a local origin) → the embedded worker fetches and encodes → ready → a signing
key → a locally signed token → playlists and segments; then every way playback must be
refused, and the failures a bad source must end in. The same run checks the engine's
webhook against the verifier a receiver would use.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloudflare import Cloudflare
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from hybridvideo.api.app import create_app
from hybridvideo.config import load_settings
from hybridvideo.container import Container, build_container
from hybridvideo.media.testclip import make_test_clip
from hybridvideo.stream.cloudflare import CloudflareStream
from hybridvideo.stream.tokens import SigningKey, sign_token
from hybridvideo.stream.webhooks import MemoryReplayCache, WebhookVerifier
from tests.services import free_port, serve_asgi

pytestmark = pytest.mark.slow


class Origin:
    """The customer's bucket stand-in: serves files with HEAD and Range (FileResponse)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.hooks: list[tuple[bytes, str]] = []
        self.lock = threading.Lock()

    async def file(self, request: Request) -> Response:
        path = self.root / request.path_params["name"]
        return FileResponse(path) if path.is_file() else Response(status_code=404)

    async def hook(self, request: Request) -> Response:
        with self.lock:
            self.hooks.append((await request.body(), request.headers["webhook-signature"]))
        return Response(status_code=200)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("engine-e2e")
    (root / "files").mkdir()
    make_test_clip(root / "files" / "clip.mp4", seconds=3, size="320x180")
    (root / "files" / "notes.mp4").write_text("not a video\n" * 100)
    origin = Origin(root / "files")
    origin_app = Starlette(
        routes=[
            Route("/files/{name}", origin.file, methods=["GET", "HEAD"]),
            Route("/hook", origin.hook, methods=["POST"]),
        ]
    )
    port = free_port()
    settings = load_settings(
        data_dir=root / "data", port=port, public_url=f"http://127.0.0.1:{port}"
    )
    container: Container = build_container(settings, serving=True)
    assert container.engine is not None
    with (
        serve_asgi(origin_app) as origin_url,
        serve_asgi(create_app(container, run_worker=True), port=port) as base,
    ):
        stream = CloudflareStream(
            account_id=container.engine.account_id,
            api_token=container.engine.api_token,
            base_url=f"{base}/client/v4",
        )
        sdk = Cloudflare(
            api_token=container.engine.api_token, base_url=f"{base}/client/v4", max_retries=0
        )
        yield {
            "base": base,
            "origin": origin_url,
            "origin_app": origin,
            "stream": stream,
            "sdk": sdk,
            "account": container.engine.account_id,
            "container": container,
        }
    container.close()


def wait_finished(stream: CloudflareStream, uid: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        video = stream.get(uid)
        if video.finished:
            return video
        time.sleep(0.25)
    raise AssertionError(f"{uid} did not finish: {stream.get(uid)}")


@pytest.fixture(scope="module")
def ready(world: dict[str, Any]) -> dict[str, Any]:
    """A signed video, copied, encoded and ready; a key; a webhook configured first."""
    stream: CloudflareStream = world["stream"]
    hook = stream.set_webhook(f"{world['origin']}/hook")
    made = stream.copy_from_url(
        f"{world['origin']}/files/clip.mp4",
        name="clip",
        require_signed_urls=True,
        allowed_origins=["app.example.com"],
        creator="e2e",
    )
    assert made.state in ("downloading", "queued", "inprogress")
    done = wait_finished(stream, made.uid)
    key_material = stream.create_signing_key()
    key = SigningKey.from_pem_b64(key_material.id, key_material.pem)
    return {"uid": made.uid, "video": done, "key": key, "hook_secret": hook.secret}


def delivery(world: dict[str, Any], ident: str, rest: str = "manifest/video.m3u8") -> str:
    return f"{world['base']}/delivery/{ident}/{rest}"


ALLOWED = {"Origin": "https://app.example.com"}


def test_copy_becomes_ready_with_the_cloudflare_shape(
    world: dict[str, Any], ready: dict[str, Any]
) -> None:
    video = ready["video"]
    assert video.state == "ready" and video.ready_to_stream and video.pct_complete == 100.0
    assert video.duration == pytest.approx(3.0, abs=0.2)
    assert (video.width, video.height) == (320, 180)
    assert video.size and video.size > 1000
    assert video.hls == delivery(world, video.uid)
    assert video.meta["downloaded-from"].endswith("/files/clip.mp4")
    listed = [v.uid for v in world["stream"].list(creator="e2e")]
    assert video.uid in listed


def test_token_opens_playlists_and_segments(world: dict[str, Any], ready: dict[str, Any]) -> None:
    token = sign_token(ready["key"], ready["uid"], expires_in=600)
    master = httpx.get(delivery(world, token), headers=ALLOWED)
    assert master.status_code == 200, master.text
    assert master.headers["content-type"].startswith("application/vnd.apple.mpegurl")
    text = master.text
    assert "#EXT-X-STREAM-INF" in text and "CODECS=" in text
    variant = next(line for line in text.splitlines() if line and not line.startswith("#"))
    playlist = httpx.get(delivery(world, token, f"manifest/{variant}"), headers=ALLOWED)
    assert playlist.status_code == 200
    folder = variant.rsplit("/", 1)[0]
    names = [line for line in playlist.text.splitlines() if line.endswith(".m4s")]
    init = next(
        line.split('URI="')[1].split('"')[0]
        for line in playlist.text.splitlines()
        if line.startswith("#EXT-X-MAP")
    )
    seg = httpx.get(delivery(world, token, f"manifest/{folder}/{names[0]}"), headers=ALLOWED)
    assert seg.status_code == 200 and len(seg.content) > 100
    assert "immutable" in seg.headers["cache-control"] and "private" in seg.headers["cache-control"]
    first = httpx.get(
        delivery(world, token, f"manifest/{folder}/{init}"),
        headers={**ALLOWED, "Range": "bytes=0-7"},
    )
    assert first.status_code == 206 and first.content[4:8] == b"ftyp"
    mpd = httpx.get(delivery(world, token, "manifest/video.mpd"), headers=ALLOWED)
    assert mpd.status_code == 200 and "<MPD" in mpd.text
    thumb = httpx.get(delivery(world, token, "thumbnails/thumbnail.jpg"), headers=ALLOWED)
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
    # The engine's own /token endpoint, through the raw SDK, mints a token that works too.
    made = world["sdk"].stream.token.create(ready["uid"], account_id=world["account"])
    assert httpx.get(delivery(world, made.token), headers=ALLOWED).status_code == 200


def denied(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert b"#EXTM3U" not in response.content and len(response.content) < 500


def test_every_denied_case_gets_no_media(world: dict[str, Any], ready: dict[str, Any]) -> None:
    uid, key = ready["uid"], ready["key"]
    now = int(time.time())
    denied(httpx.get(delivery(world, uid), headers=ALLOWED), 401)  # bare uid of a signed video
    denied(httpx.get(delivery(world, uid, "manifest/v0/index.m3u8"), headers=ALLOWED), 401)
    expired = sign_token(key, uid, exp=now - 60, now=now - 3600)
    denied(httpx.get(delivery(world, expired), headers=ALLOWED), 403)
    early = sign_token(key, uid, expires_in=1200, nbf=now + 600)
    denied(httpx.get(delivery(world, early), headers=ALLOWED), 403)
    other = sign_token(key, "f" * 32, expires_in=600)
    denied(httpx.get(delivery(world, other), headers=ALLOWED), 403)
    stranger = SigningKey.generate()
    denied(
        httpx.get(delivery(world, sign_token(stranger, uid, expires_in=600)), headers=ALLOWED), 403
    )
    good = sign_token(key, uid, expires_in=600)
    denied(httpx.get(delivery(world, good), headers={"Origin": "https://evil.example"}), 403)
    denied(httpx.get(delivery(world, good)), 403)  # neither Origin nor Referer
    for bad_origin in (
        "https://app.example.com:99999",
        "http://[::1",
        "https://app.example.com:8443",
    ):
        denied(httpx.get(delivery(world, good), headers={"Origin": bad_origin}), 403)
    by_referer = httpx.get(delivery(world, good), headers={"Referer": "https://app.example.com/p"})
    assert by_referer.status_code == 200 and "private" in by_referer.headers["cache-control"]
    for rest in ("manifest/encode.json", "manifest/../source", "manifest/v0/..%2F..%2Fsource"):
        denied(httpx.get(delivery(world, good, rest), headers=ALLOWED), 404)
    blocked = sign_token(
        key,
        uid,
        expires_in=600,
        access_rules=[
            {"type": "ip.geoip.country", "action": "block", "country": ["KP"]},
            {"type": "any", "action": "allow"},
        ],
    )
    denied(httpx.get(delivery(world, blocked), headers={**ALLOWED, "CF-IPCountry": "KP"}), 403)
    assert (
        httpx.get(delivery(world, blocked), headers={**ALLOWED, "CF-IPCountry": "KR"}).status_code
        == 200
    )
    # Revoking the key invalidates every token it signed.
    spare = world["stream"].create_signing_key()
    spare_key = SigningKey.from_pem_b64(spare.id, spare.pem)
    spare_token = sign_token(spare_key, uid, expires_in=600)
    assert httpx.get(delivery(world, spare_token), headers=ALLOWED).status_code == 200
    world["stream"].revoke_signing_key(spare.id)
    denied(httpx.get(delivery(world, spare_token), headers=ALLOWED), 403)


def test_bad_sources_end_in_error_with_reason_codes(world: dict[str, Any]) -> None:
    stream: CloudflareStream = world["stream"]
    not_video = stream.copy_from_url(f"{world['origin']}/files/notes.mp4")
    gone = stream.copy_from_url(f"http://127.0.0.1:{free_port()}/nothing.mp4")
    missing = stream.copy_from_url(f"{world['origin']}/files/absent.mp4")
    assert wait_finished(stream, not_video.uid).error_code == "ERR_NON_VIDEO"
    assert wait_finished(stream, gone.uid).error_code == "ERR_FETCH_ORIGIN_ERROR"
    assert wait_finished(stream, missing.uid).error_code == "ERR_FETCH_ORIGIN_ERROR"
    # ... and the worker is still alive for the next video.
    assert httpx.get(f"{world['base']}/readyz").json()["checks"]["worker"] == "ok"


def test_webhooks_arrive_signed(world: dict[str, Any], ready: dict[str, Any]) -> None:
    origin: Origin = world["origin_app"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(
        ready["uid"].encode() in b for b, _ in origin.hooks
    ):
        time.sleep(0.2)
    body, header = next((b, h) for b, h in origin.hooks if ready["uid"].encode() in b)
    WebhookVerifier(ready["hook_secret"], replay_cache=MemoryReplayCache()).verify(header, body)


def test_iframe_player_page(world: dict[str, Any], ready: dict[str, Any]) -> None:
    token = sign_token(ready["key"], ready["uid"], expires_in=600)
    page = httpx.get(
        delivery(world, token, "iframe") + "?autoplay=true&muted=true&hlsjs=https://evil.test/x.js",
        headers=ALLOWED,
    )
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "manifest/video.m3u8" in page.text and "autoplay muted" in page.text
    assert "evil.test" not in page.text  # the script URL is configuration, not input
    assert f'<base href="/delivery/{token}/">' in page.text
    denied(httpx.get(delivery(world, ready["uid"], "iframe"), headers=ALLOWED), 401)
