"""The reference player (``/watch/{id}``) in real Chromium against the real engine.

A tiny testsrc clip is delivered through the embedded engine (fetch, ffmpeg encode, signed
webhook, READY); the page asks for its playback answer, plays the signed HLS URL with
hls.js and sends QoE beacons to the real telemetry endpoint.

The app's own playback endpoint answers the page (viewer JWTs signed with an HS256 shared
secret, policy ``signed_in``). Bad media tokens (expired, another video's, a revoked key's,
none) are put into its real answer by Playwright's request interception, so the refusals
below are the engine's own; answers hard to stage here (403, 404, 409, 202) are served to
the page the same way, to check what the page shows.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest

from hybridvideo.api.app import create_app
from hybridvideo.api.routers.player_pages import STATIC_DIR
from hybridvideo.config import load_settings
from hybridvideo.container import Container, build_container, build_stream
from hybridvideo.delivery.webhook_secrets import subscribe_embedded_engine
from hybridvideo.domain.video import StreamStatus, VideoState
from hybridvideo.media.thumbnail import make_thumbnail
from hybridvideo.stream.base import StreamProvider
from hybridvideo.stream.tokens import SigningKey, sign_token
from hybridvideo.videos.service import thumbnail_key
from tests.conftest import make_clip
from tests.e2e.conftest import unavailable
from tests.services import free_port, serve_asgi

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.slow

VIEWER_SECRET = "test-viewer-secret-for-the-player-e2e-0123456789"
SEGMENT_SUFFIXES = (".m4s",)
PLAY_TIMEOUT_MS = 30_000


def viewer_jwt(sub: str = "viewer-1", *, expires_in: int = 600) -> str:
    now = int(time.time())
    claims = {"sub": sub, "iat": now, "exp": now + expires_in, "role": "authenticated"}
    return jwt.encode(claims, VIEWER_SECRET, algorithm="HS256")


@dataclass
class Player:
    base: str
    container: Container
    stream: StreamProvider
    key: SigningKey
    videos: list[VideoState]
    framer_port: int

    def url(self, video_id: str, viewer: str | None = None, query: str = "") -> str:
        fragment = f"#viewer={viewer}" if viewer else ""
        return f"{self.base}/watch/{video_id}{query}{fragment}"


def is_segment(url: str) -> bool:
    path = url.split("?", 1)[0]
    return "/manifest/" in path and (path.endswith(SEGMENT_SUFFIXES) or "/init_" in path)


def bad_media(page: Page, make: Callable[[str], str]) -> None:
    """Swap the media token of every playback answer for ``make(stream uid)``."""

    def rewrite(route: Any) -> None:
        response = route.fetch()
        body = response.json()
        bad = make(body["streamUid"])
        for name in ("hls", "dash", "iframe"):
            body[name] = body[name].replace(body["token"], bad)
        body["token"] = bad
        route.fulfill(response=response, body=json.dumps(body))

    page.route("**/api/v1/videos/*/playback", rewrite)


def wait_ready(container: Container, video_id: str, timeout: float = 120) -> VideoState:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        video = container.catalog.get_video(video_id)
        if video.spec.stream_status in (StreamStatus.READY, StreamStatus.ERROR):
            assert video.spec.stream_status is StreamStatus.READY, video.spec.stream_error
            return video
        time.sleep(0.2)
    raise AssertionError(f"{video_id} was not delivered in time")


@pytest.fixture(scope="module")
def player_bundle() -> Path:
    bundle = STATIC_DIR / "player.js"
    if not bundle.is_file():
        unavailable("the player bundle is not built", "run `npm ci && npm run build` in web/")
    return bundle


@pytest.fixture(scope="module")
def player(tmp_path_factory: pytest.TempPathFactory, player_bundle: Path) -> Iterator[Player]:
    root = tmp_path_factory.mktemp("player-e2e")
    port = free_port()
    framer_port = free_port()  # a page that frames /embed: allowed as 127.0.0.1 only
    settings = load_settings(
        data_dir=root / "data",
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        playback_jwt_secret=VIEWER_SECRET,
        playback_policy="signed_in",
        player_embed_origins=[f"http://127.0.0.1:{framer_port}"],
    )
    container = build_container(settings, serving=True)
    subscribe_embedded_engine(container)
    stream = build_stream(settings, max_retries=0)
    app = create_app(container, run_worker=True)
    try:
        with serve_asgi(app, port=port) as base, serve_asgi(framer, port=framer_port):
            videos = []
            for n, seconds in enumerate((3.0, 2.0)):
                clip = make_clip(root / f"clip{n}.mp4", seconds=seconds, size="320x180")
                added = container.videos.add_file(clip).video
                thumb = make_thumbnail(str(clip), duration=seconds)
                container.archive.put(
                    thumbnail_key(added.spec.sha256 or ""), _bytes(thumb), content_type="image/jpeg"
                )
                container.delivery.deliver(added.id)
                videos.append(added)
            videos = [wait_ready(container, v.id) for v in videos]
            material = stream.create_signing_key()
            key = SigningKey.from_pem_b64(material.id, material.pem)
            yield Player(base, container, stream, key, videos, framer_port)
    finally:
        container.close()


def _bytes(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


def wait_playing(page: Page) -> None:
    try:
        page.wait_for_function(
            "() => { const v = document.getElementById('video');"
            " return v.currentTime > 0.5 && v.getVideoPlaybackQuality().totalVideoFrames > 5; }",
            timeout=PLAY_TIMEOUT_MS,
        )
    except Exception:
        raise AssertionError(f"not playing: {page_state(page)}") from None


def page_state(page: Page) -> dict[str, Any]:
    state: dict[str, Any] = page.evaluate(
        "() => { const v = document.getElementById('video'); const s = window.hybridvideoPlayer;"
        " return {phase: s.phase, error: s.error, sessionId: s.sessionId, startupMs: s.startupMs,"
        " native: s.native, currentTime: v.currentTime, poster: v.poster,"
        " frames: v.getVideoPlaybackQuality().totalVideoFrames,"
        " message: document.getElementById('message').textContent,"
        " messageHidden: document.getElementById('message').hidden, href: location.href}; }"
    )
    return state


def beacons_of(player: Player, session_id: str, kind: str, timeout: float = 15) -> list[Any]:
    assert player.container.beacons is not None
    deadline = time.monotonic() + timeout
    while True:
        found = [b for b in player.container.beacons.session_beacons(session_id) if b.kind == kind]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_a_signed_in_viewer_plays_the_video_with_the_archive_poster_and_beacons_arrive(
    player: Player, page: Page
) -> None:
    video = player.videos[0]
    media: list[tuple[str, int]] = []
    page.on(
        "response", lambda r: media.append((r.url, r.status)) if "/delivery/" in r.url else None
    )
    page.goto(player.url(video.id, viewer_jwt()))
    wait_playing(page)
    first = page_state(page)
    page.wait_for_timeout(500)
    later = page_state(page)
    assert later["currentTime"] > first["currentTime"]  # the playhead advances
    assert later["frames"] > first["frames"] > 0  # frames are decoded
    assert later["native"] is False and later["phase"] == "playing" and later["error"] is None
    # the poster is the archive's thumbnail URL, and the token left the address bar
    poster = urlsplit(later["poster"])
    assert poster.path.startswith("/archive/")
    assert poster.path.endswith(thumbnail_key(video.spec.sha256 or ""))
    assert "viewer=" not in later["href"]
    assert any(is_segment(url) and status == 200 for url, status in media)
    # the startup beacon reached the catalog with a plausible time
    startup = beacons_of(player, later["sessionId"], "startup")
    assert len(startup) == 1
    assert 0 < startup[0].data["ms"] < 15_000
    assert startup[0].data["ms"] == pytest.approx(later["startupMs"], abs=1)
    assert startup[0].video_id == video.id
    assert startup[0].cohort["cohort"] == "default"
    # leaving the page sends the watch time with sendBeacon
    page.goto("about:blank")
    deadline = time.monotonic() + 15
    final: list[Any] = []
    while not final and time.monotonic() < deadline:
        watch = beacons_of(player, later["sessionId"], "watch")
        final = [b for b in watch if b.data["final"]]  # "hidden" may send a non-final one first
        time.sleep(0.1)
    assert final and final[-1].data["seconds"] > 0.3


def refused_token(player: Player, how: str) -> Callable[[str], str]:
    key = player.key
    if how == "expired":
        now = int(time.time())
        return lambda uid: sign_token(key, uid, exp=now - 60, now=now - 600)
    if how == "revoked_key":
        material = player.stream.create_signing_key()
        revoked = SigningKey.from_pem_b64(material.id, material.pem)
        player.stream.revoke_signing_key(material.id)
        return lambda uid: sign_token(revoked, uid, expires_in=600)
    assert how == "no_token"  # the bare uid of a video that needs signed URLs
    return lambda uid: uid


@pytest.mark.parametrize("how", ["no_token", "expired", "revoked_key"])
def test_refused_media_requests_show_a_clear_error(player: Player, page: Page, how: str) -> None:
    video = player.videos[0]
    bad_media(page, refused_token(player, how))
    delivery: list[tuple[str, int]] = []
    page.on(
        "response", lambda r: delivery.append((r.url, r.status)) if "/delivery/" in r.url else None
    )
    page.goto(player.url(video.id, viewer_jwt()))
    page.wait_for_function(
        "() => window.hybridvideoPlayer && window.hybridvideoPlayer.phase === 'error'",
        timeout=PLAY_TIMEOUT_MS,
    )
    state = page_state(page)
    assert delivery and all(status in (401, 403) for _, status in delivery), delivery
    assert not any(is_segment(url) for url, _ in delivery)
    assert state["error"]["code"] in ("media-401", "media-403")
    assert "refused the stream" in state["message"] and not state["messageHidden"]
    assert state["frames"] == 0
    errors = beacons_of(player, state["sessionId"], "error")
    assert errors and errors[0].data["fatal"] is True and errors[0].data["status"] in (401, 403)


@pytest.mark.parametrize("how", ["real_other_video", "unknown_video"])
def test_an_answer_with_another_videos_token_loads_no_media(
    player: Player, page: Page, how: str
) -> None:
    """The page checks the token's ``sub`` against the answer's stream uid: a token for
    another video (a real one of this account, which the engine would play, or one it
    does not hold) is refused before any media request."""
    video, other = player.videos
    if how == "real_other_video":
        other_answer = httpx.get(
            f"{player.base}/api/v1/videos/{other.id}/playback",
            headers={"Authorization": f"Bearer {viewer_jwt()}"},
            timeout=10,
        ).json()
        assert other_answer["streamUid"] != video.spec.stream_uid
        bad_media(page, lambda uid: str(other_answer["token"]))
    else:
        bad_media(page, lambda uid: sign_token(player.key, "f" * 32, expires_in=600))
    delivery: list[str] = []
    page.on("request", lambda r: delivery.append(r.url) if "/delivery/" in r.url else None)
    page.goto(player.url(video.id, viewer_jwt()))
    page.wait_for_function(
        "() => window.hybridvideoPlayer && window.hybridvideoPlayer.phase === 'error'",
        timeout=PLAY_TIMEOUT_MS,
    )
    page.wait_for_timeout(300)  # a late media request would show up here
    state = page_state(page)
    assert delivery == []
    assert state["error"]["code"] == "answer-mismatch"
    assert "for another video" in state["message"] and not state["messageHidden"]
    assert state["frames"] == 0
    errors = beacons_of(player, state["sessionId"], "error")
    assert errors and errors[0].data["type"] == "answerMismatch"


def test_without_a_viewer_token_the_page_asks_to_sign_in(player: Player, page: Page) -> None:
    delivery: list[str] = []
    page.on("request", lambda r: delivery.append(r.url) if "/delivery/" in r.url else None)
    page.goto(player.url(player.videos[0].id))
    page.wait_for_function("() => window.hybridvideoPlayer.phase === 'error'")
    state = page_state(page)
    assert state["error"]["code"] == "api-401" and "Sign in" in state["message"]
    assert delivery == []  # no media was even asked for


@pytest.mark.parametrize(
    ("status", "code", "words"),
    [
        (403, "api-403", "not allowed"),
        (404, "api-404", "does not exist"),
        (409, "api-409", "not ready to play yet: the video is processing"),
    ],
)
def test_playback_answers_that_refuse_show_a_clear_error(
    player: Player, page: Page, status: int, code: str, words: str
) -> None:
    body = {"error": {"code": "X", "message": "the video is processing", "request_id": "r"}}
    page.route(
        "**/api/v1/videos/*/playback",
        lambda route: route.fulfill(
            status=status, content_type="application/json", body=json.dumps(body)
        ),
    )
    page.goto(player.url(player.videos[0].id, viewer_jwt()))
    page.wait_for_function("() => window.hybridvideoPlayer.phase === 'error'")
    state = page_state(page)
    assert state["error"]["code"] == code and words in state["message"]


def test_an_evicted_video_is_retried_after_retry_after_then_plays(
    player: Player, page: Page
) -> None:
    calls: list[int] = []

    def answer(route: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            body = {"error": {"code": "REIMPORT", "message": "restoring", "request_id": "r"}}
            route.fulfill(
                status=202,
                content_type="application/json",
                headers={"Retry-After": "1"},
                body=json.dumps(body),
            )
        else:
            route.continue_()

    page.route("**/api/v1/videos/*/playback", answer)
    page.goto(player.url(player.videos[0].id, viewer_jwt()))
    page.wait_for_function("() => window.hybridvideoPlayer.phase === 'waiting-import'")
    assert "being restored" in page_state(page)["message"]
    wait_playing(page)
    assert len(calls) == 2 and page_state(page)["messageHidden"] is True


def test_a_second_play_is_served_from_the_segment_cache(player: Player, page: Page) -> None:
    video = player.videos[1]
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/delivery/" in r.url else None)
    page.goto(player.url(video.id, viewer_jwt()))
    wait_playing(page)
    page.wait_for_function("() => document.getElementById('video').ended", timeout=PLAY_TIMEOUT_MS)
    fetched = sorted({url.split("/manifest/", 1)[1] for url in requests if is_segment(url)})
    assert fetched, requests
    # every fetched segment is in the cache before the page goes away
    page.wait_for_function(
        "async (n) => (await (await caches.open('hybridvideo-segments-v1')).keys()).length >= n",
        arg=len(fetched),
    )
    requests.clear()
    page.goto(player.url(video.id))  # the viewer token stays in sessionStorage
    wait_playing(page)
    page.wait_for_function("() => document.getElementById('video').ended", timeout=PLAY_TIMEOUT_MS)
    assert requests, "the playlists still come from the server"
    assert [url for url in requests if is_segment(url)] == []
    assert all(url.endswith(".m3u8") for url in requests)
    startup = beacons_of(player, page_state(page)["sessionId"], "startup")
    assert startup and startup[0].data["ms"] < 15_000


def test_the_next_videos_first_segments_are_preloaded_then_played_from_the_cache(
    player: Player, page: Page
) -> None:
    first, following = player.videos
    next_tokens: list[str] = []

    def answer(response: Any) -> None:
        if response.url.endswith(f"/videos/{following.id}/playback") and response.ok:
            next_tokens.append(response.json()["token"])

    page.on("response", answer)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/delivery/" in r.url else None)
    page.goto(player.url(first.id, viewer_jwt(), query=f"?next={following.id}"))
    wait_playing(page)
    page.wait_for_function(
        "() => Number(document.getElementById('player').dataset.preloaded) > 0",
        timeout=PLAY_TIMEOUT_MS,
    )
    assert next_tokens, "the page never asked for the next video's playback answer"
    preloaded = {
        url.split("/manifest/", 1)[1]
        for url in requests
        if is_segment(url) and any(f"/{token}/" in url for token in next_tokens)
    }
    assert preloaded, requests  # fetched while the first video plays, before its own play
    requests.clear()
    page.goto(player.url(following.id))
    wait_playing(page)
    refetched = {url.split("/manifest/", 1)[1] for url in requests if is_segment(url)}
    assert not refetched & preloaded, (refetched, preloaded)


async def framer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI page that frames ``?src=``: another site embedding the player."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    src = html.escape(parse_qs(scope["query_string"].decode()).get("src", [""])[0])
    body = f'<!doctype html><iframe id="f" src="{src}" width="480" height="270"></iframe>'
    headers = [(b"content-type", b"text/html; charset=utf-8")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body.encode()})


def framing_page(page: Page, origin: str, embed_url: str) -> None:
    """``origin`` (the framer app, by the name that makes it that origin) frames the embed."""
    page.goto(f"{origin}/?{urlencode({'src': embed_url})}")


def embedded_frame(page: Page, player: Player) -> Any:
    for frame in page.frames:
        if frame.url.startswith(f"{player.base}/embed/"):
            return frame
    return None


def test_an_allowed_origin_frames_the_embed_and_it_plays(player: Player, page: Page) -> None:
    video = player.videos[0]
    embed_url = f"{player.base}/embed/{video.id}#viewer={viewer_jwt()}"
    framing_page(page, f"http://127.0.0.1:{player.framer_port}", embed_url)
    page.wait_for_function(
        "() => document.getElementById('f').contentWindow && window.frames.length === 1"
    )
    deadline = time.monotonic() + PLAY_TIMEOUT_MS / 1000
    frame = embedded_frame(page, player)
    while frame is None and time.monotonic() < deadline:
        page.wait_for_timeout(100)
        frame = embedded_frame(page, player)
    assert frame is not None, [f.url for f in page.frames]
    frame.wait_for_function(
        "() => { const v = document.getElementById('video');"
        " return v && v.currentTime > 0.5 && v.getVideoPlaybackQuality().totalVideoFrames > 5; }",
        timeout=PLAY_TIMEOUT_MS,
    )


def test_another_origin_may_not_frame_the_embed(player: Player, page: Page) -> None:
    video = player.videos[0]
    refusals: list[str] = []
    page.on("console", lambda m: refusals.append(m.text) if "frame-ancestors" in m.text else None)
    delivery: list[str] = []
    page.on("request", lambda r: delivery.append(r.url) if "/delivery/" in r.url else None)
    other = f"http://localhost:{player.framer_port}"  # same server, another origin
    framing_page(page, other, f"{player.base}/embed/{video.id}#viewer={viewer_jwt()}")
    page.wait_for_timeout(1500)
    assert refusals, "Chromium did not report a frame-ancestors refusal"
    frame = page.frame_locator("#f")
    assert frame.locator("#video").count() == 0  # the player never rendered in the frame
    assert delivery == []
