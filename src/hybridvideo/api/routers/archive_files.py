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
Numbers too long for ``int()`` are never parsed: any number past :data:`MAX_RANGE_DIGITS`
digits is larger than every object, so it is read as "past the end" and the answer is the
one an exact parse would give (416 for a first byte, to-the-end for a last byte or suffix).

The bytes are served from the API's own origin, so they must never act as a page of it:
every answer carries ``X-Content-Type-Options: nosniff`` and a sandboxing
``Content-Security-Policy``; only media types (see :func:`media_headers`) are served
inline under their own type, anything else (HTML, SVG, JSON, unknown) goes out as
``application/octet-stream`` with ``Content-Disposition: attachment``.
Failures are domain errors; the app's central handler turns them into responses.
"""

from __future__ import annotations

import re
from email.utils import format_datetime
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from hybridvideo.archive.base import ArchiveStore, SignedUrlServer
from hybridvideo.errors import ConfigurationError, NotFound, RangeNotSatisfiable, Unauthorized

#: Longer numbers in a Range header exceed any object (sizes fit in 19 digits).
MAX_RANGE_DIGITS = 20
_PAST_THE_END = 10**MAX_RANGE_DIGITS

#: Served inline under their own type: what players and <img>/<video> need, nothing that a
#: browser renders as a document with scripts (SVG is an image that runs script).
INLINE_PREFIXES = ("video/", "audio/", "image/")
INLINE_TYPES = frozenset({"application/vnd.apple.mpegurl", "application/dash+xml"})
NEVER_INLINE = frozenset({"image/svg+xml"})
#: RFC 9110 token characters, for a type/subtype safe to echo back in a header.
_MEDIA_TYPE = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+/[a-z0-9!#$%&'*+.^_`|~-]+")
#: RFC 8187 attr-char beyond what ``quote`` always keeps (letters, digits, "_.-~").
_ATTR_CHARS = "!#$&+^`|"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}


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
    headers = {"Accept-Ranges": "bytes", **media_headers(key, info.content_type)}
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
        wanted = _number(last)
        if wanted is None:
            return None
        if wanted == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(0, size - wanted), size - 1
    start = _number(first)
    stop = _number(last) if last else size - 1
    if start is None or stop is None:
        return None
    if last and stop < start:
        return None
    if start >= size:
        raise _unsatisfiable(size)
    return start, min(stop, size - 1)


def _number(text: str) -> int | None:
    """A Range number, or None if ``text`` is not one (RFC 9110: ``1*DIGIT``).

    Numbers with more than :data:`MAX_RANGE_DIGITS` significant digits are not parsed
    (``int()`` refuses over 4,300 digits, and would be slow long before): they all stand
    for :data:`_PAST_THE_END`, which is larger than any object, so the outcome is the same.
    """
    if not (text.isascii() and text.isdigit()):
        return None
    significant = text.lstrip("0")
    return _PAST_THE_END if len(significant) > MAX_RANGE_DIGITS else int(significant or "0")


def media_headers(key: str, content_type: str | None) -> dict[str, str]:
    """Content type, disposition and the security headers for serving ``key``.

    Only ``video/*``, ``audio/*``, ``image/*`` (not SVG) and the HLS/DASH manifests go out
    inline under their stored type (without parameters); everything else is an
    ``application/octet-stream`` attachment, so no stored object can render as a page.
    """
    essence = (content_type or "").partition(";")[0].strip(" \t").lower()
    inline = (
        _MEDIA_TYPE.fullmatch(essence) is not None
        and essence not in NEVER_INLINE
        and (essence.startswith(INLINE_PREFIXES) or essence in INLINE_TYPES)
    )
    disposition = "inline" if inline else "attachment"
    return {
        "Content-Type": essence if inline else "application/octet-stream",
        "Content-Disposition": f"{disposition}; {content_disposition_filename(key)}",
        **SECURITY_HEADERS,
    }


def content_disposition_filename(key: str) -> str:
    """RFC 6266 filename parameters for ``key``'s basename: an ASCII fallback and UTF-8."""
    name = key.rpartition("/")[2]
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in name)
    encoded = quote(name, safe=_ATTR_CHARS, encoding="utf-8")
    return f"filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def _unsatisfiable(size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(f"byte range outside the object ({size} bytes)", size=size)
