"""The client's own behaviour against Cloudflare's documented wire shapes.

Cloudflare itself cannot run here, so these cases (429 with Retry-After, bad credentials,
odd envelopes) are served by an httpx MockTransport speaking the documented envelope; the
full API is exercised against the engine in tests/integration/engine.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest

from hybridvideo.errors import BackendUnavailable, InvalidInput, NotFound
from hybridvideo.stream.base import RateLimited, StreamAuthError, StreamProvider
from hybridvideo.stream.cloudflare import CloudflareStream

ACCOUNT = "0123456789abcdef0123456789abcdef"
UID = "6b9e68b07dfee8cc2d116e4c51d6a957"


def envelope(
    result: object, *, success: bool = True, errors: list[dict[str, object]] | None = None
) -> dict[str, object]:
    return {"result": result, "success": success, "errors": errors or [], "messages": []}


def video(**over: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "uid": UID,
        "readyToStream": False,
        "status": {"state": "downloading", "pctComplete": "0.000000"},
        "meta": {"name": "intro", "downloaded-from": "https://example.test/intro.mp4"},
        "created": "2026-11-23T10:00:00.000000Z",
        "modified": "2026-11-23T10:00:00.000000Z",
        "size": -1,
        "duration": -1,
        "input": {"width": -1, "height": -1},
        "requireSignedURLs": True,
        "playback": {
            "hls": f"https://d.test/{UID}/manifest/video.m3u8",
            "dash": f"https://d.test/{UID}/manifest/video.mpd",
        },
    }
    doc.update(over)
    return doc


def client(handler: Callable[[httpx.Request], httpx.Response], **kw: object) -> CloudflareStream:
    transport = httpx.MockTransport(handler)
    return CloudflareStream(
        account_id=ACCOUNT,
        api_token="token-for-tests",
        base_url="https://api.test/client/v4",
        http_client=httpx.Client(transport=transport),
        **kw,  # type: ignore[arg-type]
    )


def test_is_a_stream_provider() -> None:
    assert isinstance(client(lambda r: httpx.Response(200)), StreamProvider)


def test_copy_sends_cloudflare_fields_and_maps_the_video() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=envelope(video()))

    made = client(handler).copy_from_url(
        "https://archive.test/masters/a.mp4?sig=1",
        name="intro",
        require_signed_urls=True,
        creator="ops",
        thumbnail_timestamp_pct=0.5,
    )
    request = seen[0]
    assert request.url.path == f"/client/v4/accounts/{ACCOUNT}/stream/copy"
    assert request.headers["authorization"] == "Bearer token-for-tests"
    assert request.headers["upload-creator"] == "ops"
    body = json.loads(request.content)
    assert body == {
        "url": "https://archive.test/masters/a.mp4?sig=1",
        "requireSignedURLs": True,
        "meta": {"name": "intro"},
        "thumbnailTimestampPct": 0.5,
        "creator": "ops",
    }
    assert made.uid == UID and made.state == "downloading" and made.pct_complete == 0.0
    assert made.duration is None and made.width is None and made.size is None  # -1 = unknown
    assert made.require_signed_urls and made.hls and made.hls.endswith("video.m3u8")


def test_429_is_retried_honouring_retry_after() -> None:
    calls: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(time.monotonic())
        if len(calls) < 3:
            return httpx.Response(
                429,
                headers={"retry-after": "1"},
                json=envelope(
                    None, success=False, errors=[{"code": 971, "message": "rate limited"}]
                ),
            )
        return httpx.Response(
            200, json=envelope(video(status={"state": "ready", "pctComplete": "100.000000"}))
        )

    got = client(handler).get(UID)
    assert got.state == "ready" and got.pct_complete == 100.0
    assert len(calls) == 3
    assert all(b - a >= 0.9 for a, b in zip(calls, calls[1:], strict=False))


def test_rate_limit_that_outlasts_the_retries() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"retry-after": "0"}, json=envelope(None, success=False))

    with pytest.raises(RateLimited) as info:
        client(handler, max_retries=1).get(UID)
    assert info.value.retry_after == 0.0


@pytest.mark.parametrize("status", [401, 403])
def test_bad_credentials_say_which_setting(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status,
            json=envelope(
                None, success=False, errors=[{"code": 10000, "message": "Authentication error"}]
            ),
        )

    with pytest.raises(StreamAuthError) as info:
        client(handler).get(UID)
    assert "CLOUDFLARE_STREAM_TOKEN" in info.value.message


def test_not_found_and_refused_requests() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(
                404,
                json=envelope(
                    None, success=False, errors=[{"code": 10003, "message": "Not Found"}]
                ),
            )
        return httpx.Response(
            400,
            json=envelope(None, success=False, errors=[{"code": 10005, "message": "Invalid URL"}]),
        )

    c = client(handler)
    with pytest.raises(NotFound):
        c.get(UID)
    with pytest.raises(InvalidInput, match="Invalid URL"):
        c.copy_from_url("ftp://nope")


def test_unreachable_service() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(BackendUnavailable, match="cannot reach"):
        client(handler, max_retries=0).get(UID)


def test_list_pages_with_the_after_cursor() -> None:
    pages: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        pages.append(dict(request.url.params))
        n = len(pages)
        items = [
            video(uid=f"{n:02d}{i:030d}", created=f"2026-11-23T10:0{n}:{i:02d}Z") for i in range(2)
        ]
        return httpx.Response(200, json=envelope(items if n < 3 else items[:1]))

    got = [v.uid for v in client(handler).list(limit=2)]
    assert len(got) == 5
    assert pages[0].get("asc") == "true" and "after" not in pages[0]
    assert pages[1]["after"].startswith("2026-11-23T10:01:01")


def test_unknown_edit_fields_are_refused_locally() -> None:
    with pytest.raises(InvalidInput, match="cannot edit"):
        client(lambda r: httpx.Response(500)).edit(UID, status="ready")
