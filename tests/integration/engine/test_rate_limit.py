"""The engine's Cloudflare-style API rate limit, on a real server over loopback.

Small windows (a few requests per second or per half minute) keep the tests fast; the
arithmetic is the same as Cloudflare's 1,200 per 300 s.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import pytest

from hybridvideo.stream.base import RateLimited
from tests.integration.engine.modes import engine_server


def test_a_burst_gets_the_limit_through_and_cloudflares_429_after(tmp_path: Path) -> None:
    with (
        engine_server(
            tmp_path, engine_only=True, engine_api_rate_limit=5, engine_api_rate_window=30
        ) as server,
        httpx.Client(headers=server.auth, timeout=10) as http,
    ):
        start = threading.Barrier(12)

        def call(_: int) -> httpx.Response:
            start.wait()
            return http.get(server.api)

        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(call, range(12)))
        passed = [a for a in answers if a.status_code == 200]
        refused = [a for a in answers if a.status_code == 429]
        assert len(passed) == 5 and len(refused) == 7
        assert sorted(int(a.headers["x-ratelimit-remaining"]) for a in passed) == [0, 1, 2, 3, 4]
        for answer in refused:
            body = answer.json()
            assert body["success"] is False and body["result"] is None
            assert body["errors"] == [
                {"code": 971, "message": "Please wait and consider throttling your request speed"}
            ]
            retry_after = answer.headers["retry-after"]
            assert retry_after.isdigit() and 1 <= int(retry_after) <= 30
            assert answer.headers["x-ratelimit-limit"] == "5"
            assert answer.headers["x-ratelimit-remaining"] == "0"
            reset = parsedate_to_datetime(answer.headers["x-ratelimit-reset"])
            assert 0 < reset.timestamp() - time.time() <= 31
            assert answer.headers["ratelimit-policy"] == '"default";q=5;w=30'
            assert answer.headers["ratelimit"].startswith('"default";r=0;t=')
        # Our client sees it as the domain's rate-limit error, with the server's wait.
        with pytest.raises(RateLimited) as caught:
            server.stream(timeout=5).get("0" * 32)
        assert caught.value.retry_after is not None and 1 <= caught.value.retry_after <= 30


def test_the_window_slides_and_never_holds_more_than_the_limit(tmp_path: Path) -> None:
    limit, window = 5, 0.5
    with (
        engine_server(
            tmp_path, engine_api_rate_limit=limit, engine_api_rate_window=window
        ) as server,
        httpx.Client(headers=server.auth, timeout=10) as http,
    ):
        passed: list[tuple[float, float]] = []  # (sent, answered) of each request let through
        waits: set[str] = set()
        deadline = time.monotonic() + 3 * window + 0.1
        while time.monotonic() < deadline:
            sent = time.monotonic()
            answer = http.get(server.api)
            answered = time.monotonic()
            if answer.status_code == 200:
                passed.append((sent, answered))
            else:
                assert answer.status_code == 429
                waits.add(answer.headers["retry-after"])
                time.sleep(0.01)
    # One client, one request at a time: the server let request i+limit through at least
    # `window` after request i, so its answer came at least that long after i was sent.
    for i in range(len(passed) - limit):
        assert passed[i + limit][1] - passed[i][0] >= window, i
    assert len(passed) >= 3 * limit  # a sliding window, not a lock-out
    assert waits == {"1"}  # under a second to wait: rounded up to whole seconds


def test_only_control_api_calls_are_counted(tmp_path: Path) -> None:
    with (
        engine_server(tmp_path, engine_api_rate_limit=3, engine_api_rate_window=60) as server,
        httpx.Client(timeout=10) as http,
    ):
        created = http.post(  # tus creation on the collection: an API call (1)
            server.api,
            headers={**server.auth, "Tus-Resumable": "1.0.0", "Upload-Length": "100"},
        )
        assert created.status_code == 201 and created.headers["x-ratelimit-remaining"] == "2"
        upload_url = created.headers["location"]
        uid = created.headers["stream-media-id"]
        for _ in range(5):  # upload URLs, playback, preflights and our own API: free
            head = http.head(upload_url, headers={**server.auth, "Tus-Resumable": "1.0.0"})
            assert head.status_code == 200 and "x-ratelimit-limit" not in head.headers
            assert http.get(f"{server.base}/delivery/{uid}/manifest/video.m3u8").status_code == 404
            assert http.options(server.api).status_code in (200, 204, 405)
            assert http.get(f"{server.base}/healthz").status_code == 200
        listed = http.get(server.api, headers=server.auth)  # (2)
        assert listed.status_code == 200 and listed.headers["x-ratelimit-remaining"] == "1"
        unauthenticated = http.get(server.api)  # counted too, as at Cloudflare's edge (3)
        assert unauthenticated.status_code == 401
        assert http.get(server.api, headers=server.auth).status_code == 429


def test_off_by_default(tmp_path: Path) -> None:
    with engine_server(tmp_path) as server, httpx.Client(headers=server.auth) as http:
        answers = [http.get(server.api) for _ in range(30)]
    assert {a.status_code for a in answers} == {200}
    assert not any("x-ratelimit-limit" in a.headers for a in answers)
