"""The API rate-limit middleware's arithmetic, with clocks the test controls.

The middleware is called as ASGI over a tiny app (the integration tests run it in the
real server); here time stands still or jumps, so the headers can be checked exactly.
"""

from __future__ import annotations

import asyncio
import json
from email.utils import parsedate_to_datetime
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from hybridvideo.engine.limits import ApiRateLimit
from hybridvideo.stream.ratelimit import RateLimiter

WALL = 1_800_000_000.25  # a wall-clock instant with a fraction, to see the rounding
API = "/client/v4/accounts/023e105f4ecef8ad9ca31a8372d0c353/stream"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def ok_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-app", b"1")]})
    await send({"type": "http.response.body", "body": b"{}"})


def call(mw: ApiRateLimit, path: str = API) -> tuple[int, dict[str, str], Any]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "headers": []}
    asyncio.run(mw(scope, receive, send))
    start = sent[0]
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], headers, json.loads(body)


def middleware(limit: int, per: float, clock: Clock) -> ApiRateLimit:
    return ApiRateLimit(
        ok_app, limiter=RateLimiter(limit, per, clock=clock), wall_clock=lambda: WALL
    )


def test_headers_count_down_and_the_429_says_when_to_come_back() -> None:
    clock = Clock()
    mw = middleware(2, 10.0, clock)
    status, headers, _ = call(mw)
    assert status == 200 and headers["x-app"] == "1"  # the app's own headers are kept
    assert headers["x-ratelimit-limit"] == "2" and headers["x-ratelimit-remaining"] == "1"
    assert headers["ratelimit"] == '"default";r=1;t=10'
    assert headers["ratelimit-policy"] == '"default";q=2;w=10'
    clock.now = 103.5
    assert call(mw)[1]["x-ratelimit-remaining"] == "0"
    clock.now = 104.2
    status, headers, body = call(mw)
    # The t=100 request leaves the window at t=110: 5.8 s away, announced as 6.
    assert status == 429 and headers["retry-after"] == "6"
    assert body["errors"][0]["code"] == 971 and body["success"] is False
    reset = parsedate_to_datetime(headers["x-ratelimit-reset"]).timestamp()
    assert reset == 1_800_000_007  # WALL + 5.8 s = ...06.05, rounded up to whole seconds
    clock.now = 110.0
    assert call(mw)[0] == 200  # the refusal was not counted


def test_a_tiny_wait_is_still_a_whole_second() -> None:
    clock = Clock()
    mw = middleware(1, 0.5, clock)
    call(mw)
    clock.now += 0.4999
    status, headers, _ = call(mw)
    assert status == 429 and headers["retry-after"] == "1"


def test_other_paths_pass_untouched_and_uncounted() -> None:
    clock = Clock()
    mw = middleware(1, 60.0, clock)
    for path in ("/healthz", f"/delivery/{'a' * 32}/manifest/video.m3u8", f"{API}/tus/{'b' * 32}"):
        for _ in range(3):
            status, headers, _ = call(mw, path)
            assert status == 200 and "x-ratelimit-limit" not in headers
    assert call(mw)[0] == 200 and call(mw)[0] == 429
