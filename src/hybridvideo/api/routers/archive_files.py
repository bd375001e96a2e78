"""Serve an archive's own signed and public URLs over HTTP (the local folder store).

S3 and R2 serve their presigned URLs themselves. A store whose
``capabilities.serves_signed_urls`` is set instead hands out URLs that point at this app;
this router is the other half of that promise, so it is built only for such a store:

- ``GET|HEAD /archive/signed/{key}?expires=…&signature=…``: the store checks the HMAC and
  the expiry (``Unauthorized`` otherwise), then the bytes are streamed.
- ``GET|HEAD /archive/public/{key}``: only for keys the store calls public (thumbnails);
  any other key is ``NotFound``, whether or not it exists, so the route reveals nothing.

Players seek with a single ``Range`` header (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``),
answered with 206; an unsatisfiable range raises ``RangeNotSatisfiable`` (416). A malformed
or multi-range header is ignored and the whole object is sent, as RFC 9110 allows.
Failures are domain errors; the app's central handler turns them into responses.
"""

from __future__ import annotations

from email.utils import format_datetime

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from hybridvideo.archive.base import ArchiveStore, SignedUrlServer
from hybridvideo.errors import ConfigurationError, NotFound, RangeNotSatisfiable, Unauthorized


def build_router(archive: ArchiveStore) -> APIRouter:
    """Routes serving ``archive``'s URLs; refuses a store that does not hand them out."""
    if not archive.capabilities.serves_signed_urls or not isinstance(archive, SignedUrlServer):
        raise ConfigurationError("this archive store does not serve its own signed URLs")
    store = archive
    # Out of the OpenAPI schema: these are URLs the API hands out, not operations to call
    # by name (and one GET+HEAD route would give two operations the same id).
    router = APIRouter(tags=["archive"], include_in_schema=False)

    @router.api_route("/archive/signed/{key:path}", methods=["GET", "HEAD"])
    def signed_file(
        key: str, request: Request, expires: str | None = None, signature: str | None = None
    ) -> Response:
        if not expires or not signature:
            raise Unauthorized("missing signature")
        store.verify_signed(key, expires=expires, signature=signature)
        return serve(store, key, request)

    @router.api_route("/archive/public/{key:path}", methods=["GET", "HEAD"])
    def public_file(key: str, request: Request) -> Response:
        if not store.is_public(key):
            raise NotFound("no such public file")
        return serve(store, key, request)

    return router


def serve(archive: ArchiveStore, key: str, request: Request) -> Response:
    """Answer GET or HEAD for ``key``, honouring one ``Range``."""
    info = archive.head(key)
    span = parse_range(request.headers.get("range"), info.size)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Type": info.content_type or "application/octet-stream",
    }
    if info.etag:
        headers["ETag"] = f'"{info.etag}"'
    if info.last_modified:
        headers["Last-Modified"] = format_datetime(info.last_modified, usegmt=True)
    if span is None:
        status, start, end, length = 200, 0, None, info.size
    else:
        status, (start, last) = 206, span
        end, length = last, last - start + 1
        headers["Content-Range"] = f"bytes {start}-{last}/{info.size}"
    headers["Content-Length"] = str(length)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    body = archive.open(key, start=start, end=end)
    return StreamingResponse(body, status_code=status, headers=headers)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive ``(first, last)`` byte span asked for, or None to send everything.

    Raises ``RangeNotSatisfiable`` when the span lies outside ``size``; returns None for
    anything malformed or for several ranges (serving the whole body is always allowed).
    """
    if header is None:
        return None
    unit, eq, spec = header.partition("=")
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if unit.strip().lower() != "bytes" or not eq or not dash or "," in spec:
        return None
    if not first:
        if not _digits(last):
            return None
        wanted = int(last)
        if wanted == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(0, size - wanted), size - 1
    if not _digits(first) or (last and not _digits(last)):
        return None
    start = int(first)
    stop = int(last) if last else size - 1
    if last and stop < start:
        return None
    if start >= size:
        raise _unsatisfiable(size)
    return start, min(stop, size - 1)


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _unsatisfiable(size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(f"byte range outside the object ({size} bytes)", size=size)
