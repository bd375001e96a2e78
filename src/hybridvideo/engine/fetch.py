"""Fetch an upload-via-link source the way Cloudflare Stream does: HEAD, then ranged GETs.

The size comes from the HEAD answer (``Content-Length``, or the total in ``Content-Range``)
or, when HEAD is refused, from a ``Range: bytes=0-0`` probe. The body is then read in
ranges, each retried on its own, so a flaky origin or a dropped connection costs one chunk,
not the download. A server that ignores ranges is read in one stream. The file appears
under its final name only when complete; anything else raises :class:`FetchError`, which
the ingest job reports as Cloudflare's ``ERR_FETCH_ORIGIN_ERROR``.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import httpx

from hybridvideo.errors import HybridVideoError

CHUNK = 8 * 1024 * 1024
#: Cloudflare Stream's documented upload limit.
MAX_SIZE = 30 * 1000**3
_CONTENT_RANGE = re.compile(r"^bytes (\d{1,20})-(\d{1,20})/(\d{1,20}|\*)$")


class FetchError(HybridVideoError):
    code = "ERR_FETCH_ORIGIN_ERROR"


def _total_from(response: httpx.Response) -> int | None:
    match = _CONTENT_RANGE.match(response.headers.get("content-range", "").strip())
    if match and match.group(3) != "*":
        return int(match.group(3))
    length = response.headers.get("content-length", "")
    if response.status_code == 200 and length.isdigit() and len(length) <= 20:
        return int(length)
    return None


def probe_size(client: httpx.Client, url: str) -> int | None:
    """The source's size in bytes, or None when the origin will not say."""
    try:
        head = client.head(url)
        if head.status_code < 400:
            size = _total_from(head)
            if size is not None:
                return size
        with client.stream("GET", url, headers={"Range": "bytes=0-0"}) as first:
            if first.status_code >= 400:
                raise FetchError(f"the origin answered {first.status_code}")
            return _total_from(first) if first.status_code == 206 else None
    except _CLIENT_ERRORS as exc:
        raise FetchError("the origin could not be reached", detail=repr(exc)) from None


def fetch(
    url: str,
    dest: Path,
    *,
    client: httpx.Client | None = None,
    chunk: int = CHUNK,
    max_size: int = MAX_SIZE,
    attempts: int = 3,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> int:
    """Download ``url`` to ``dest`` (atomically); return the byte count."""
    if not url.lower().startswith(("http://", "https://")):
        raise FetchError("the source URL must be http:// or https://")
    own = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=True)
    part = dest.with_name(dest.name + ".part")
    try:
        size = probe_size(http, url)
        if size is not None and size > max_size:
            raise FetchError(f"the source is larger than {max_size} bytes")
        with part.open("wb") as out:
            if size is None:
                done = _stream_whole(http, url, out, max_size, on_progress)
            else:
                done = _ranged(http, url, out, size, chunk, attempts, on_progress)
            out.flush()
            os.fsync(out.fileno())
        if done == 0:
            raise FetchError("the origin sent an empty file")
        part.replace(dest)
        return done
    except BaseException:
        with contextlib.suppress(OSError):
            part.unlink()
        raise
    finally:
        if own:
            http.close()


def _ranged(
    http: httpx.Client,
    url: str,
    out: BinaryIO,
    size: int,
    chunk: int,
    attempts: int,
    on_progress: Callable[[int, int | None], None] | None,
) -> int:
    write = out.write
    offset = 0
    while offset < size:
        end = min(offset + chunk, size) - 1
        data = _range_with_retries(http, url, offset, end, attempts)
        if data is None:  # the origin ignores Range: read it whole, once, from the start
            if offset:
                raise FetchError("the origin stopped honouring byte ranges mid-download")
            return _stream_whole(http, url, out, size, on_progress, expected=size)
        write(data)
        offset += len(data)
        if on_progress:
            on_progress(offset, size)
    return offset


#: httpx raises more than HTTPError for URLs it cannot use (bad IDNA hosts, ``a..b``).
_CLIENT_ERRORS = (httpx.HTTPError, httpx.InvalidURL, UnicodeError, ValueError)


def _bounded(response: httpx.Response, limit: int) -> Iterator[bytes]:
    """The body, but never more than ``limit`` bytes (a lying origin cannot flood memory)."""
    got = 0
    for data in response.iter_bytes(1024 * 1024):
        got += len(data)
        if got > limit:
            raise FetchError("the origin sent more bytes than the range asked for")
        yield data


def _range_with_retries(
    http: httpx.Client, url: str, start: int, end: int, attempts: int
) -> bytes | None:
    last: str = ""
    for attempt in range(attempts):
        try:
            want = end - start + 1
            with http.stream("GET", url, headers={"Range": f"bytes={start}-{end}"}) as response:
                # Decide before reading: an origin ignoring Range would send the whole file.
                if response.status_code == 200 and start == 0:
                    return None
                if response.status_code == 206:
                    data = b"".join(_bounded(response, want))
                    if len(data) == want:
                        return data
                    last = f"short range: {len(data)} of {want} bytes"
                elif response.status_code < 500 and response.status_code != 429:
                    raise FetchError(f"the origin answered {response.status_code} for a range")
                else:
                    last = f"HTTP {response.status_code}"
        except _CLIENT_ERRORS as exc:
            last = repr(exc)
        time.sleep(min(2.0, 0.2 * 2**attempt))
    raise FetchError("the origin kept failing a byte range", detail=last)


def _stream_whole(
    http: httpx.Client,
    url: str,
    out: BinaryIO,
    max_size: int,
    on_progress: Callable[[int, int | None], None] | None,
    *,
    expected: int | None = None,
) -> int:
    write = out.write
    done = 0
    try:
        with http.stream("GET", url) as response:
            if response.status_code != 200:
                raise FetchError(f"the origin answered {response.status_code}")
            for data in response.iter_bytes(1024 * 1024):
                done += len(data)
                if done > max_size:
                    raise FetchError(f"the source is larger than {max_size} bytes")
                write(data)
                if on_progress:
                    on_progress(done, expected)
    except _CLIENT_ERRORS as exc:
        raise FetchError("the download from the origin broke off", detail=repr(exc)) from None
    if expected is not None and done != expected:
        raise FetchError(f"the origin sent {done} of {expected} bytes")
    return done
