"""Small files in one request: ``POST /api/v1/uploads`` (multipart) and the legacy base64 body.

tus at ``/files/`` is the way to upload: resumable, any size. Some callers only have a file
in a form, though (the seed's admin pages behind ``NEXT_PUBLIC_USE_DIRECT_FILE_UPLOAD``),
so files up to ``HYBRIDVIDEO_DIRECT_UPLOAD_MAX_SIZE`` may come as ``multipart/form-data``
with a ``file`` part and optional ``title``, ``collection`` and ``ownerId`` fields:

- the body is parsed as it streams in (python-multipart's push parser, in a worker
  thread) and the file part goes straight to a temporary file under the data dir while it
  is hashed: nothing is held in memory. 413 is answered as soon as the file, or the whole
  body, passes the cap — a Content-Length over it is refused before reading, and a body
  without one (chunked) is cut off where it crosses the cap;
- the fields sent before the file part are checked (with the caller's token rules) as
  the file part begins, so a bad collection is refused before the bytes are sent;
- then :meth:`IngestService.add_local_file` does what a finished tus upload gets: probe,
  content-addressed master, thumbnail, catalog row, delivery job. A non-video is a 400 and
  leaves nothing behind; the temporary file is always removed.

``POST /api/v1/uploads/base64`` keeps the seed's old JSON body (``{"filename", "data"}``,
``data`` plain base64 or a ``data:`` URL) for clients not yet moved, only with
``HYBRIDVIDEO_LEGACY_BASE64_UPLOADS=true`` (410 Gone otherwise). Every answer from it, the
errors included, carries RFC 9745's ``Deprecation: @<unix time>`` (the day it was
deprecated) and ``Link: </files/>; rel="successor-version"``. Its body must be read whole
to parse the JSON, so it is refused from Content-Length when too long, cut off at the
same cap while read, and its decoded size checked before any decoding.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio.from_thread
import anyio.to_thread
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import Field, ValidationError
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send

from hybridvideo.api.deps import ContainerDep, UploaderDep
from hybridvideo.api.errors import error_response
from hybridvideo.api.schemas import VideoOut, _Wire
from hybridvideo.errors import InvalidInput
from hybridvideo.ingest.tus.handler import Principal
from hybridvideo.videos.service import AddResult

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

log = logging.getLogger("hybridvideo.api.uploads")

router = APIRouter(prefix="/api/v1", tags=["uploads"])

#: Room for the multipart framing (boundaries, part headers) and the small fields.
ENVELOPE = 64 * 1024
#: Largest text field (a title is at most 300 characters, 4 bytes each in UTF-8).
MAX_FIELD = 4 * 1024
#: Most parts in one form (the file and three fields, with room to spare).
MAX_PARTS = 8
#: Most header bytes in one part.
MAX_PART_HEADERS = 8 * 1024
#: Temporary files live here, under the data dir; a leftover of a killed server is
#: removed by the next direct upload once it is this old.
TEMP_FOLDER = "direct-uploads"
STALE_AFTER = 24 * 3600.0
#: Form field → the service's keyword.
FIELDS = {"title": "title", "collection": "collection", "ownerId": "owner_id"}
#: The base64 data decoded per write (a multiple of 3 bytes, so of 4 characters).
DECODE_BLOCK = 3 * 256 * 1024
_WHITESPACE = re.compile(r"\s+")

#: When the base64 body was deprecated (RFC 9745 wants a date; ``true`` is the pre-RFC
#: draft's form).
DEPRECATED_AT = datetime(2026, 11, 23, tzinfo=UTC)
DEPRECATION_HEADERS = {
    "Deprecation": f"@{int(DEPRECATED_AT.timestamp())}",
    "Link": '</files/>; rel="successor-version"',
}

GONE_MESSAGE = (
    "base64 uploads are switched off: upload with tus at /files/, or send small files as "
    "multipart/form-data to POST /api/v1/uploads"
)

_MULTIPART_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "title": {"type": "string", "maxLength": 300},
                    "collection": {"type": "string", "maxLength": 64},
                    "ownerId": {"type": "string", "maxLength": 200},
                },
            }
        }
    },
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Not a video, or a malformed form or field"},
    401: {"description": "Missing or invalid admin or upload token"},
    413: {"description": "Larger than the direct upload cap (use tus at /files/)"},
    415: {"description": "The body is not of the expected media type"},
}


def _too_large(limit: int) -> HTTPException:
    return HTTPException(
        413, f"the file is larger than {limit} bytes: upload it with tus at /files/ instead"
    )


def _limit(default: int, principal: Principal) -> int:
    """The cap for this caller: the server's, narrowed by an upload token's ``max_size``."""
    return min(default, principal.max_size) if principal.max_size is not None else default


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None or not value.isascii() or not value.isdigit():
        return None
    return int(value)


def _blocking_chunks(stream: AsyncIterator[bytes]) -> Iterator[bytes]:
    """The request body as a blocking iterator, for the worker thread that writes it."""

    async def next_chunk() -> bytes | None:
        try:
            return await stream.__anext__()
        except StopAsyncIteration:
            return None

    while (chunk := anyio.from_thread.run(next_chunk)) is not None:
        if chunk:
            yield chunk


def _temp_folder(data_dir: Path) -> Path:
    """``DATA_DIR/direct-uploads``, created private; old leftovers are removed on the way."""
    folder = data_dir / TEMP_FOLDER
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    cutoff = time.time() - STALE_AFTER
    for leftover in folder.glob("direct-*.part"):
        try:
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()
        except FileNotFoundError:
            pass  # another request removed it first
    return folder


class _Spool:
    """A temporary file that hashes what is written to it and is removed on exit."""

    def __init__(self, folder: Path) -> None:
        fd, name = tempfile.mkstemp(dir=folder, prefix="direct-", suffix=".part")
        self.path = Path(name)
        self.size = 0
        self._fh = os.fdopen(fd, "wb")
        self._digest = hashlib.sha256()

    def write(self, data: bytes | memoryview) -> None:
        self._fh.write(data)
        self._digest.update(data)
        self.size += len(data)

    def finish(self) -> str:
        """Close the file for reading by the service; the sha256 hex of its bytes."""
        self._fh.close()
        return self._digest.hexdigest()

    def __enter__(self) -> _Spool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._fh.close()
        self.path.unlink(missing_ok=True)


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{what} is not UTF-8") from None


@dataclass
class _Form:
    """What a multipart body held: the file's name and the text fields (file → spool)."""

    filename: str | None = None
    has_file: bool = False
    fields: dict[str, str] = field(default_factory=dict)


class _FormReader:
    """Feed a multipart body in any pieces; the file part is written to ``spool``.

    ``on_file`` sees the file name and the fields received so far as the file part begins
    (to refuse bad metadata before the bytes come). Raises ``InvalidInput`` for a form we
    do not accept and a 413 ``HTTPException`` once the file passes ``limit`` bytes.
    """

    def __init__(
        self,
        boundary: bytes,
        spool: _Spool,
        limit: int,
        on_file: Callable[[str | None, Mapping[str, str]], None],
    ) -> None:
        self.form = _Form()
        self._spool = spool
        self._limit = limit
        self._on_file = on_file
        self._parts = 0
        self._ended = False
        self._headers: dict[bytes, bytes] = {}
        self._header_bytes = 0
        self._name = bytearray()
        self._value = bytearray()
        self._current: str | None = None  # "file" or a field name
        self._field = bytearray()
        callbacks: MultipartCallbacks = {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }
        self._parser = MultipartParser(boundary, callbacks)

    def feed(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except MultipartParseError:
            raise InvalidInput("the multipart/form-data body is malformed") from None

    def close(self) -> _Form:
        self._parser.finalize()
        if not self._ended:
            raise InvalidInput("the multipart/form-data body ended before its last boundary")
        if not self.form.has_file:
            raise InvalidInput("the form has no 'file' part: send the video as the field 'file'")
        return self.form

    # -- parser callbacks -------------------------------------------------------------

    def _part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise InvalidInput(f"the form has more than {MAX_PARTS} parts")
        self._headers = {}
        self._header_bytes = 0
        self._current = None
        self._field = bytearray()

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_PART_HEADERS:
            raise InvalidInput("a form part has too many header bytes")

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[bytes(self._name).lower()] = bytes(self._value)
        self._name = bytearray()
        self._value = bytearray()

    def _headers_finished(self) -> None:
        kind, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        raw_name = params.get(b"name")
        if kind != b"form-data" or raw_name is None:
            raise InvalidInput("a form part has no 'Content-Disposition: form-data; name=...'")
        name = _text(raw_name, "a form field's name")
        if name == "file":
            if self.form.has_file:
                raise InvalidInput("the form has more than one 'file' part")
            raw_filename = params.get(b"filename")
            filename = _text(raw_filename, "the file name") if raw_filename else ""
            # Old browsers send the client's full path: keep the last component.
            filename = filename.replace("\\", "/").rsplit("/", 1)[-1]
            self.form.filename = filename or None
            self.form.has_file = True
            self._on_file(self.form.filename, self.form.fields)
        elif name in FIELDS:
            if name in self.form.fields:
                raise InvalidInput(f"the form has more than one {name!r} field")
        else:
            allowed = ", ".join(["file", *FIELDS])
            raise InvalidInput(f"unknown form field {name!r} (expected {allowed})")
        self._current = name

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current == "file":
            if self._spool.size + (end - start) > self._limit:
                raise _too_large(self._limit)
            self._spool.write(memoryview(data)[start:end])
        elif self._current is not None:
            self._field += data[start:end]
            if len(self._field) > MAX_FIELD:
                raise InvalidInput(f"the form field {self._current!r} is too long")

    def _part_end(self) -> None:
        if self._current is not None and self._current != "file":
            self.form.fields[self._current] = _text(bytes(self._field), self._current)
        self._current = None

    def _end(self) -> None:
        self._ended = True


def _service_fields(fields: Mapping[str, str]) -> dict[str, str | None]:
    """Form fields as the service's keywords; an empty field (a blank input) is absent."""
    return {kw: fields.get(name) or None for name, kw in FIELDS.items()}


def _multipart_boundary(content_type: str | None) -> bytes:
    kind, params = parse_options_header(content_type or "")
    if kind != b"multipart/form-data":
        raise HTTPException(
            415,
            "send the file as multipart/form-data (field 'file'); large files go to tus at /files/",
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidInput("the multipart/form-data Content-Type has no boundary")
    return boundary


def _answer(result: AddResult) -> JSONResponse:
    """201 + Location for a new video; 200 (and where it lives) for one already cataloged."""
    body = VideoOut.of(result.video).model_dump(mode="json", by_alias=True)
    where = f"/api/v1/videos/{result.video.id}"
    if result.created:
        return JSONResponse(body, status_code=201, headers={"Location": where})
    return JSONResponse(body, status_code=200, headers={"Content-Location": where})


def _disconnected(request: Request) -> Response:
    log.info("client left during a direct upload", extra={"path": request.url.path})
    return Response(status_code=400)  # nobody reads it


@router.post(
    "/uploads",
    status_code=201,
    response_model=VideoOut,
    response_model_by_alias=True,
    responses={200: {"description": "Already cataloged: the existing video"}, **_ERRORS},
    openapi_extra={"requestBody": _MULTIPART_BODY},
)
async def upload_file(
    request: Request, container: ContainerDep, principal: UploaderDep
) -> Response:
    """A small file as ``multipart/form-data``: 201 with the new video, 200 with a known one."""
    settings = container.settings
    ingest = container.ingest
    limit = _limit(settings.direct_upload_max_size, principal)
    boundary = _multipart_boundary(request.headers.get("content-type"))
    cap = limit + ENVELOPE
    declared = _declared_length(request)
    if declared is not None and declared > cap:
        raise _too_large(limit)
    chunks = _blocking_chunks(request.stream().__aiter__())

    def check(filename: str | None, fields: Mapping[str, str]) -> None:
        ingest.direct_upload_notes(principal, filename=filename, **_service_fields(fields))

    def receive_and_add() -> AddResult:
        with _Spool(_temp_folder(settings.data_dir)) as spool:
            reader = _FormReader(boundary, spool, limit, check)
            received = 0
            for chunk in chunks:
                received += len(chunk)
                if received > cap:
                    raise _too_large(limit)
                reader.feed(chunk)
            form = reader.close()
            sha256 = spool.finish()
            return ingest.add_local_file(
                spool.path,
                filename=form.filename,
                principal=principal,
                sha256=sha256,
                **_service_fields(form.fields),
            )

    try:
        result = await anyio.to_thread.run_sync(receive_and_add)
    except ClientDisconnect:
        return _disconnected(request)
    return _answer(result)


# -- the legacy base64 JSON body ----------------------------------------------------------


class _DeprecatedRoute(APIRoute):
    """Adds :data:`DEPRECATION_HEADERS` to every answer of the route, errors included."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in DEPRECATION_HEADERS.items():
                    headers[name] = value
            await send(message)

        await super().handle(scope, receive, send_marked)


class Base64Upload(_Wire):
    filename: str = Field(min_length=1, max_length=255)
    data: str = Field(description="The file in base64, or as a data: URL")
    title: str | None = Field(None, max_length=300)
    collection: str | None = Field(None, max_length=64)
    owner_id: str | None = Field(None, max_length=200)


def _base64_body_cap(limit: int) -> int:
    """Longest JSON body for ``limit`` decoded bytes: the base64 text, 1/16 more for line
    breaks (escaped in JSON), and the envelope."""
    encoded = 4 * -(-limit // 3)
    return encoded + encoded // 16 + ENVELOPE


async def _read_capped(request: Request, cap: int, limit: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            raise _too_large(limit)
    return bytes(body)


def _base64_text(data: str) -> str:
    """The bare base64 of ``data`` (a ``data:...;base64,`` prefix and whitespace removed)."""
    if data.startswith("data:"):
        head, sep, rest = data.partition(",")
        if not sep or not head.endswith(";base64"):
            raise InvalidInput("data is a data: URL without ';base64,'")
        data = rest
    if _WHITESPACE.search(data):  # MIME-style line breaks
        data = _WHITESPACE.sub("", data)
    if len(data) % 4:
        raise InvalidInput("data is not valid base64 (its length is not a multiple of 4)")
    return data


def _decoded_size(text: str) -> int:
    return len(text) // 4 * 3 - text[-2:].count("=")


def _decode_into(text: str, spool: _Spool) -> None:
    step = DECODE_BLOCK // 3 * 4
    for at in range(0, len(text), step):
        try:
            spool.write(base64.b64decode(text[at : at + step], validate=True))
        except ValueError:  # binascii.Error, or non-ASCII text
            raise InvalidInput("data is not valid base64") from None


async def upload_base64(
    request: Request, container: ContainerDep, principal: UploaderDep
) -> Response:
    """Deprecated: the file as base64 in JSON. Use tus (``/files/``) or ``POST /api/v1/uploads``."""
    settings = container.settings
    if not settings.legacy_base64_uploads:
        return error_response(request, 410, "GONE", GONE_MESSAGE)
    kind, _ = parse_options_header(request.headers.get("content-type") or "")
    if kind != b"application/json":
        raise HTTPException(415, "send a JSON body (Content-Type: application/json)")
    ingest = container.ingest
    limit = _limit(settings.direct_upload_max_size, principal)
    cap = _base64_body_cap(limit)
    declared = _declared_length(request)
    if declared is not None and declared > cap:
        raise _too_large(limit)
    try:
        raw = await _read_capped(request, cap, limit)
    except ClientDisconnect:
        return _disconnected(request)

    def decode_and_add() -> AddResult:
        # In a worker thread: parsing and decoding a body this size would stall the loop.
        try:
            upload = Base64Upload.model_validate_json(raw)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False)
            raise RequestValidationError(errors) from None
        text = _base64_text(upload.data)
        if _decoded_size(text) > limit:
            raise _too_large(limit)
        fields = {
            "title": upload.title or None,
            "collection": upload.collection or None,
            "owner_id": upload.owner_id or None,
        }
        ingest.direct_upload_notes(principal, filename=upload.filename, **fields)
        with _Spool(_temp_folder(settings.data_dir)) as spool:
            _decode_into(text, spool)
            sha256 = spool.finish()
            return ingest.add_local_file(
                spool.path,
                filename=upload.filename,
                principal=principal,
                sha256=sha256,
                **fields,
            )

    return _answer(await anyio.to_thread.run_sync(decode_and_add))


router.add_api_route(
    "/uploads/base64",
    upload_base64,
    methods=["POST"],
    status_code=201,
    response_model=VideoOut,
    response_model_by_alias=True,
    responses={
        200: {"description": "Already cataloged: the existing video"},
        410: {"description": "Base64 uploads are switched off"},
        **_ERRORS,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": Base64Upload.model_json_schema()}},
        }
    },
    deprecated=True,
    route_class_override=_DeprecatedRoute,
)

__all__ = ["DEPRECATION_HEADERS", "router"]
