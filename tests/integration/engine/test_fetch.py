"""Fetching a source over real HTTP from origins that behave well and badly."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hybridvideo.engine.fetch import FetchError, fetch
from tests.services import free_port, serve_asgi

BODY = os.urandom(300_000)
state = {"flaky": 0}


def _range(request: Request) -> tuple[int, int] | None:
    header = request.headers.get("range", "")
    if not header.startswith("bytes="):
        return None
    first, _, last = header[6:].partition("-")
    return int(first), min(int(last), len(BODY) - 1)


async def good(request: Request) -> Response:
    if request.method == "HEAD":
        return Response(headers={"content-length": str(len(BODY)), "accept-ranges": "bytes"})
    r = _range(request)
    if r is None:
        return Response(BODY)
    a, b = r
    return Response(
        BODY[a : b + 1], status_code=206, headers={"content-range": f"bytes {a}-{b}/{len(BODY)}"}
    )


async def no_ranges(request: Request) -> Response:
    if request.method == "HEAD":
        return Response(status_code=405)
    return Response(BODY)


async def flaky(request: Request) -> Response:
    if request.method == "GET" and _range(request):
        state["flaky"] += 1
        if state["flaky"] % 2:
            return Response(status_code=503)
    return await good(request)


async def missing(request: Request) -> Response:
    return Response(status_code=404)


async def liar(request: Request) -> Response:
    if request.method == "HEAD":
        return Response(headers={"content-length": str(len(BODY) + 10)})
    r = _range(request)
    assert r is not None
    a, b = r
    return Response(
        BODY[a : b + 1],
        status_code=206,
        headers={"content-range": f"bytes {a}-{b}/{len(BODY) + 10}"},
    )


app = Starlette(
    routes=[
        Route("/good.mp4", good, methods=["GET", "HEAD"]),
        Route("/no-ranges.mp4", no_ranges, methods=["GET", "HEAD"]),
        Route("/flaky.mp4", flaky, methods=["GET", "HEAD"]),
        Route("/missing.mp4", missing, methods=["GET", "HEAD"]),
        Route("/liar.mp4", liar, methods=["GET", "HEAD"]),
    ]
)


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    with serve_asgi(app) as url:
        yield url


@pytest.mark.parametrize("path", ["good.mp4", "no-ranges.mp4", "flaky.mp4"])
def test_fetches_whole_files(origin: str, tmp_path: Path, path: str) -> None:
    dest = tmp_path / "source"
    progress: list[int] = []
    size = fetch(
        f"{origin}/{path}", dest, chunk=64 * 1024, on_progress=lambda n, _t: progress.append(n)
    )
    assert size == len(BODY)
    assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(BODY).digest()
    assert progress[-1] == len(BODY) and progress == sorted(progress)
    assert not (tmp_path / "source.part").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("{origin}/missing.mp4", "404"),
        ("{origin}/liar.mp4", "range"),
        ("http://127.0.0.1:{closed}/x.mp4", "could not be reached"),
        ("ftp://example.test/x.mp4", "http"),
    ],
)
def test_failures_leave_nothing(origin: str, tmp_path: Path, url: str, message: str) -> None:
    dest = tmp_path / "source"
    with pytest.raises(FetchError, match=message) as info:
        fetch(url.format(origin=origin, closed=free_port()), dest, chunk=64 * 1024, attempts=2)
    assert info.value.code == "ERR_FETCH_ORIGIN_ERROR"
    assert list(tmp_path.iterdir()) == []


def test_size_limit(origin: str, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="larger than"):
        fetch(f"{origin}/good.mp4", tmp_path / "s", max_size=1000)
    with pytest.raises(FetchError, match="larger than"):
        fetch(f"{origin}/no-ranges.mp4", tmp_path / "s", max_size=1000)
    assert list(tmp_path.iterdir()) == []


async def ignores_range(request: Request) -> Response:
    if request.method == "HEAD":
        return Response(headers={"content-length": str(len(BODY))})
    state["ignored"] = state.get("ignored", 0) + 1
    return Response(BODY)


app.router.routes.append(Route("/ignores-range.mp4", ignores_range, methods=["GET", "HEAD"]))


def test_origin_that_ignores_ranges_is_read_once_streaming(origin: str, tmp_path: Path) -> None:
    state["ignored"] = 0
    assert fetch(f"{origin}/ignores-range.mp4", tmp_path / "s", chunk=64 * 1024) == len(BODY)
    assert (tmp_path / "s").read_bytes() == BODY
    assert state["ignored"] == 2  # the refused range probe (not read) and one full read


@pytest.mark.parametrize("url", ["HTTP://{origin}/good.mp4", "Http://{origin}/good.mp4"])
def test_scheme_is_case_insensitive(origin: str, tmp_path: Path, url: str) -> None:
    target = url.format(origin=origin.removeprefix("http://"))
    assert fetch(target, tmp_path / "s", chunk=64 * 1024) == len(BODY)


@pytest.mark.parametrize("url", ["http://a..b/x.mp4", "http://xn--a.xn--/x.mp4"])
def test_unusable_hosts_are_fetch_errors(tmp_path: Path, url: str) -> None:
    with pytest.raises(FetchError):
        fetch(url, tmp_path / "s", attempts=1)
