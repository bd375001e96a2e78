"""FastAPI adapter for tus 1.0.0: moves bytes between HTTP and an :class:`UploadStore`.

Every protocol rule comes from :mod:`hybridvideo.ingest.tus.protocol`; this module only
reads headers, streams bodies and shapes responses. Supported: core, creation,
creation-with-upload, creation-defer-length, checksum and termination, each only when
enabled in :class:`Capabilities`. Expiration and concatenation are not implemented, so
enabling them is a configuration error rather than a silent lie in ``Tus-Extension``.

The request body is streamed: a worker thread runs the (blocking) store write and pulls
each chunk from the event loop as it needs it, so neither the loop blocks on disk nor the
body is ever held whole. One request writes an upload at a time within the process; a
second concurrent PATCH on the same upload gets 423.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime

import anyio.from_thread
import anyio.to_thread
from fastapi import APIRouter, Request, Response
from starlette.requests import ClientDisconnect

from hybridvideo.errors import ConfigurationError
from hybridvideo.ingest.tus.protocol import (
    TUS_VERSION,
    Capabilities,
    TusError,
    TusErrorKind,
    UploadInfo,
    check_content_type,
    check_patch,
    check_version,
    head_headers,
    header,
    method_override,
    parse_checksum,
    parse_length,
    parse_upload_metadata,
)
from hybridvideo.ingest.tus.store import UploadStore, new_upload_id

log = logging.getLogger(__name__)

_Handler = Callable[[Request, str | None], Awaitable[Response]]


def _error_response(error: TusError) -> Response:
    headers = {"Tus-Resumable": TUS_VERSION, **error.headers}
    return Response(error.message, status_code=error.status, headers=headers)


def _plain(status: int, text: str, **headers: str) -> Response:
    return Response(text, status_code=status, headers={"Tus-Resumable": TUS_VERSION, **headers})


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None or not value.isascii() or not value.isdigit():
        return None
    return int(value)


def _sync_chunks(stream: AsyncIterator[bytes]) -> Iterator[bytes]:
    """The async body as a blocking iterator, for use in an anyio worker thread."""

    async def next_chunk() -> bytes | None:
        try:
            return await stream.__anext__()
        except StopAsyncIteration:
            return None

    while True:
        chunk = anyio.from_thread.run(next_chunk)
        if chunk is None:
            return
        if chunk:
            yield chunk


def _bounded(chunks: Iterator[bytes], limit: int | None, kind: TusErrorKind) -> Iterator[bytes]:
    """Stop with ``kind`` (413) as soon as the body would go beyond ``limit`` bytes."""
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        if limit is not None and seen > limit:
            raise TusError(kind, detail=f"body over {limit} bytes")
        yield chunk


def build_tus_router(
    store: UploadStore, capabilities: Capabilities, *, prefix: str = "/files"
) -> APIRouter:
    """A router serving tus at ``prefix`` (creation) and ``prefix/{id}`` (uploads)."""
    if capabilities.expiration or capabilities.concatenation:
        raise ConfigurationError("the tus handler implements neither expiration nor concat")
    caps = capabilities
    active: set[str] = set()  # upload ids being written; touched only on the event loop
    router = APIRouter()

    async def write_body(request: Request, info: UploadInfo, offset_header: str | None) -> int:
        """Validate a PATCH (or a POST carrying data) and stream its body into the store."""
        plan = check_patch(
            info,
            offset_header,
            request.headers.get("content-type"),
            _content_length(request),
            caps.max_size,
            upload_length=request.headers.get("upload-length"),
        )
        checksum: tuple[str, bytes] | None = None
        raw_checksum = request.headers.get("upload-checksum")
        if caps.checksum and raw_checksum is not None:
            checksum = parse_checksum(raw_checksum, caps.checksum_algorithms)
        if info.id in active:
            raise TusError(TusErrorKind.LOCKED)
        active.add(info.id)
        try:
            if info.length is None and plan.length is not None:
                await anyio.to_thread.run_sync(store.declare_length, info.id, plan.length)
            kind = (
                TusErrorKind.SIZE_EXCEEDED
                if plan.length is not None
                else TusErrorKind.MAX_SIZE_EXCEEDED
            )
            chunks = _bounded(_sync_chunks(request.stream().__aiter__()), plan.limit, kind)

            def write() -> int:
                return store.write(info.id, info.offset, chunks, plan.limit, checksum=checksum)

            return await anyio.to_thread.run_sync(write)
        finally:
            active.discard(info.id)

    async def options(_request: Request, _upload_id: str | None) -> Response:
        return Response(status_code=204, headers=caps.options_headers())

    async def create(request: Request, _upload_id: str | None) -> Response:
        if not caps.creation:
            raise _MethodNotAllowedError
        if header(request.headers, "Upload-Concat") is not None:
            raise TusError(TusErrorKind.INVALID_CONCAT, detail="concatenation is not enabled")
        length = parse_length(
            request.headers.get("upload-length"),
            request.headers.get("upload-defer-length"),
            allow_defer=caps.creation_defer_length,
            max_size=caps.max_size,
        )
        metadata_raw = request.headers.get("upload-metadata")
        metadata = parse_upload_metadata(metadata_raw)
        with_upload = caps.creation_with_upload and "content-type" in request.headers
        if with_upload:
            check_content_type(request.headers.get("content-type"))
        info = UploadInfo(
            id=new_upload_id(),
            offset=0,
            length=length,
            created_at=datetime.now(UTC),
            metadata_raw=metadata_raw,
            metadata=metadata,
        )
        info = await anyio.to_thread.run_sync(store.create, info)
        location = request.url.path.rstrip("/") + "/" + info.id
        headers = {"Location": location}
        if with_upload:
            offset = await write_body(request, info, "0")
            headers["Upload-Offset"] = str(offset)
        return _plain(201, "", **headers)

    async def head(_request: Request, upload_id: str | None) -> Response:
        info = await anyio.to_thread.run_sync(store.get, str(upload_id))
        return Response(status_code=200, headers=head_headers(info, datetime.now(UTC)))

    async def patch(request: Request, upload_id: str | None) -> Response:
        info = await anyio.to_thread.run_sync(store.get, str(upload_id))
        offset = await write_body(request, info, request.headers.get("upload-offset"))
        return _plain(204, "", **{"Upload-Offset": str(offset)})

    async def delete(_request: Request, upload_id: str | None) -> Response:
        if not caps.termination:
            raise _MethodNotAllowedError
        uid = str(upload_id)
        if uid in active:
            raise TusError(TusErrorKind.LOCKED)
        await anyio.to_thread.run_sync(store.terminate, uid)
        return _plain(204, "")

    collection: dict[str, _Handler] = {"OPTIONS": options, "POST": create}
    resource: dict[str, _Handler] = {
        "OPTIONS": options,
        "HEAD": head,
        "PATCH": patch,
        "DELETE": delete,
    }

    async def dispatch(
        request: Request, upload_id: str | None, handlers: dict[str, _Handler]
    ) -> Response:
        try:
            method = method_override(request.method, request.headers)
            check_version(request.headers, method=method)
            handler = handlers.get(method)
            if handler is None:
                raise _MethodNotAllowedError
            response = await handler(request, upload_id)
        except TusError as exc:
            if exc.status >= 500 or exc.detail:
                log.info("tus %s %r: %s (%r)", request.method, upload_id, exc.code, exc.detail)
            return _error_response(exc)
        except _MethodNotAllowedError:
            allow = ", ".join(handlers)
            return _plain(405, "method not allowed", Allow=allow)
        except ClientDisconnect:
            log.info("tus client went away while writing %r", upload_id)
            return _plain(400, "client disconnected")
        response.headers["Tus-Resumable"] = TUS_VERSION
        return response

    methods = ["OPTIONS", "HEAD", "GET", "POST", "PATCH", "PUT", "DELETE"]

    @router.api_route(prefix, methods=methods, include_in_schema=False)
    async def tus_collection(request: Request) -> Response:
        return await dispatch(request, None, collection)

    @router.api_route(prefix + "/{upload_id}", methods=methods, include_in_schema=False)
    async def tus_upload(request: Request, upload_id: str) -> Response:
        return await dispatch(request, upload_id, resource)

    return router


class _MethodNotAllowedError(Exception):
    """The effective method is not served at this URL (or its extension is off)."""


__all__ = ["build_tus_router"]
