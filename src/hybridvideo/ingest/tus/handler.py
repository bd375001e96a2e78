"""FastAPI adapter for tus 1.0.0: moves bytes between HTTP and an :class:`UploadStore`.

Every protocol rule comes from :mod:`hybridvideo.ingest.tus.protocol`; this module only
reads headers, streams bodies, takes the per-upload lock and shapes responses. Each
extension is served only when enabled in :class:`Capabilities`, which is also what OPTIONS
advertises, so the two cannot drift.

The request body is streamed: a worker thread runs the (blocking) store write and pulls
each chunk from the event loop as it needs it, so neither the loop blocks on disk nor the
body is ever held whole. One request writes an upload at a time: the :class:`Locker`
(in-process, or Redis across nodes) answers a second writer with 423.

What an upload *means* — who may create it, what its metadata must say, what happens
once it is complete — belongs to the application and arrives through :class:`UploadEvents`
and an ``authorize`` callable; this module stays a protocol server.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

import anyio.from_thread
import anyio.to_thread
from fastapi import APIRouter, Request, Response
from starlette.requests import ClientDisconnect

from hybridvideo.errors import (
    BackendUnavailable,
    HybridVideoError,
    InvalidInput,
    NotFound,
    Unauthorized,
)
from hybridvideo.ingest.tus.digest import RunningDigests
from hybridvideo.ingest.tus.protocol import (
    TUS_VERSION,
    Capabilities,
    PatchPlan,
    TusError,
    TusErrorKind,
    UploadInfo,
    check_content_type,
    check_expired,
    check_patch,
    check_version,
    format_expires,
    head_headers,
    header,
    method_override,
    parse_checksum,
    parse_concat,
    parse_length,
    parse_upload_metadata,
)
from hybridvideo.ingest.tus.store import UploadStore, is_upload_id, new_upload_id

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Bytes of request body handed from the event loop to the writing thread at once.
BODY_BATCH = 1024 * 1024
#: ... or whatever arrived within this long, so slow clients' bytes are not held back.
BODY_BATCH_SECONDS = 0.25

#: The note naming who created an upload; only they (or an admin) may touch it.
PRINCIPAL_NOTE = "principal"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the admin, or the holder of an upload token.

    ``max_size`` narrows ``Tus-Max-Size`` for this caller; ``notes`` are recorded on the
    uploads they create (e.g. the owner or a collection fixed by the token).
    """

    id: str
    is_admin: bool = False
    max_size: int | None = None
    notes: Mapping[str, str] = field(default_factory=dict)


ANONYMOUS_ADMIN = Principal("admin", is_admin=True)

Authorizer = Callable[[Request], Awaitable[Principal]]


async def _allow_all(_request: Request) -> Principal:
    return ANONYMOUS_ADMIN


class UploadEvents(Protocol):
    """What the application does around an upload; every method blocks (runs in a thread).

    ``before_create`` validates the metadata (raise ``InvalidInput`` for 400) and returns
    notes to record. ``completed`` is called once the last byte of a whole (not partial)
    upload is stored, with the sha256 if it was computed in passing; it must be quick and
    durable (enqueue a job), because the client is waiting for its 204.
    """

    def before_create(self, info: UploadInfo, principal: Principal) -> Mapping[str, str]: ...

    def created(self, info: UploadInfo) -> None: ...

    def completed(self, info: UploadInfo, sha256: str | None) -> None: ...

    def terminated(self, info: UploadInfo) -> None: ...


class NoEvents:
    """Events that do nothing (a bare tus server, as in the protocol tests)."""

    def before_create(self, info: UploadInfo, principal: Principal) -> Mapping[str, str]:
        return {}

    def created(self, info: UploadInfo) -> None:
        return None

    def completed(self, info: UploadInfo, sha256: str | None) -> None:
        return None

    def terminated(self, info: UploadInfo) -> None:
        return None


class LockHandle(Protocol):
    @property
    def lost(self) -> bool:
        """True once another node may hold the lock (a Redis lock that expired)."""
        ...

    def on_interrupt(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once when the lock is lost or another request wants it."""
        ...

    def release(self) -> None: ...


class Locker(Protocol):
    """One writer per upload: ``acquire`` returns None when someone else holds it."""

    def acquire(self, upload_id: str, *, wait: float = 0.0) -> LockHandle | None: ...


class TusMetrics(Protocol):
    """Counters the handler reports (tusd's set); see :mod:`hybridvideo.ingest.metrics`."""

    def request(self, method: str) -> None: ...

    def error(self, status: int) -> None: ...

    def received(self, n: int) -> None: ...

    def created(self) -> None: ...

    def finished(self) -> None: ...

    def terminated(self) -> None: ...

    def connection(self) -> AbstractContextManager[None]: ...

    def patch_timer(self) -> AbstractContextManager[None]: ...


class _NoMetrics:
    def request(self, method: str) -> None:
        return None

    def error(self, status: int) -> None:
        return None

    def received(self, n: int) -> None:
        return None

    def created(self) -> None:
        return None

    def finished(self) -> None:
        return None

    def terminated(self) -> None:
        return None

    def connection(self) -> AbstractContextManager[None]:
        return nullcontext()

    def patch_timer(self) -> AbstractContextManager[None]:
        return nullcontext()


class _SetLocker:
    """The fallback when no locker is given: a guarded set, for a single process."""

    def __init__(self) -> None:
        self._held: set[str] = set()
        self._guard = threading.Lock()

    def acquire(self, upload_id: str, *, wait: float = 0.0) -> LockHandle | None:
        with self._guard:
            if upload_id in self._held:
                return None
            self._held.add(upload_id)
        return _SetHandle(self, upload_id)

    def _release(self, upload_id: str) -> None:
        with self._guard:
            self._held.discard(upload_id)


@dataclass
class _SetHandle:
    locker: _SetLocker
    upload_id: str
    lost: bool = False

    def on_interrupt(self, callback: Callable[[], None]) -> None:
        return None  # nobody can ask: a contender just gets 423

    def release(self) -> None:
        self.locker._release(self.upload_id)


@dataclass
class TusOptions:
    """Everything :func:`build_tus_router` needs besides the store and capabilities."""

    prefix: str = "/files"
    locker: Locker | None = None
    events: UploadEvents = field(default_factory=NoEvents)
    authorize: Authorizer = _allow_all
    expires_after: timedelta | None = None
    metrics: TusMetrics = field(default_factory=_NoMetrics)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    #: Extra per-request chunk rules (Cloudflare's: 5 MiB minimum, 256 KiB multiples),
    #: called as ``chunk_rule(info, offset, content_length)`` before any byte is read;
    #: raise :class:`TusError` or ``InvalidInput`` (400 with its message) to refuse.
    chunk_rule: Callable[[UploadInfo, int, int | None], None] | None = None
    #: Called (in a thread) before a DELETE is carried out: raise :class:`TusError` to
    #: refuse (e.g. 423 while the application is turning the upload into a video).
    can_terminate: Callable[[UploadInfo], None] | None = None
    #: Seconds a request waits for an upload's lock after asking the holder to let go.
    lock_wait: float = 3.0
    #: Extra headers for a 201 (Cloudflare's ``stream-media-id``), from the new upload's
    #: info after ``events.created``; must not block.
    creation_headers: Callable[[UploadInfo], Mapping[str, str]] | None = None


#: Statuses that map domain errors raised by events/authorize to tus answers.
_DOMAIN_STATUS: tuple[tuple[type[HybridVideoError], int], ...] = (
    (Unauthorized, 401),
    (InvalidInput, 400),
    (NotFound, 404),
    (BackendUnavailable, 503),
)


def _error_response(error: TusError, extra: Mapping[str, str] | None = None) -> Response:
    headers = {"Tus-Resumable": TUS_VERSION, **error.headers, **(extra or {})}
    return Response(error.message, status_code=error.status, headers=headers)


def _plain(status: int, text: str, **headers: str) -> Response:
    return Response(text, status_code=status, headers={"Tus-Resumable": TUS_VERSION, **headers})


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None or not value.isascii() or not value.isdigit():
        return None
    return int(value)


class _BodyReader:
    """The async body as a blocking iterator, for use in an anyio worker thread.

    Crossing from the worker thread to the event loop costs far more than copying bytes,
    so the body is handed over in batches of up to :data:`BODY_BATCH` bytes (ASGI servers
    deliver ~64 KiB at a time), and a batch is handed over early after
    :data:`BODY_BATCH_SECONDS` so a slow client's bytes still reach the disk steadily. An
    error from the body (the client went away) is raised only after the bytes received
    before it have been handed over: they count.

    :meth:`interrupt` (thread-safe) ends the body early, even while a read is waiting on
    a silent client: the write then keeps and records what arrived, and the request lets go
    of the upload. That is how a resumed client takes over from a connection that died
    without a FIN (a phone changing networks) instead of meeting 423 until a timeout.
    """

    def __init__(self, stream: AsyncIterator[bytes]) -> None:
        self._stream = stream
        self._loop = asyncio.get_running_loop()
        self._reading: asyncio.Future[bytes] | None = None
        self._error: BaseException | None = None
        self._ended = False
        self._ahead: asyncio.Future[list[bytes] | None] | None = None
        self.interrupted = False

    def interrupt(self) -> None:
        self._loop.call_soon_threadsafe(self._cancel)

    def _cancel(self) -> None:
        self.interrupted = True
        if self._reading is not None:
            self._reading.cancel()

    async def _next(self) -> list[bytes] | None:
        """The next batch (None at the end of the body or once interrupted); collecting
        the one after it starts at once, so the loop receives batch n+1 while the worker
        thread hashes and writes batch n (at most one batch read ahead)."""
        collecting = self._ahead or asyncio.ensure_future(self._collect())
        self._ahead = None
        batch = await collecting
        if batch is not None and not (self._ended or self.interrupted or self._error):
            self._ahead = asyncio.ensure_future(self._collect())
        return batch

    def close(self) -> None:
        """Cancel reads still pending once the write is over (a write stopped early)."""
        for pending in (self._ahead, self._reading):
            if pending is not None:
                pending.cancel()
        self._ahead = self._reading = None

    async def _collect(self) -> list[bytes] | None:
        """One batch, as a list of the chunks received (no copy of the bytes)."""
        if self._error is not None:
            raise self._error
        batch: list[bytes] = []
        size = 0
        deadline = 0.0
        while size < BODY_BATCH and not (self._ended or self.interrupted):
            if self._reading is None:
                self._reading = asyncio.ensure_future(self._stream.__anext__())
            if batch:
                # More only if it comes soon; a pending read carries over to the next batch.
                remaining = deadline - self._loop.time()
                if remaining <= 0:
                    break
                done, _ = await asyncio.wait({self._reading}, timeout=remaining)
                if not done:
                    break
            reading = self._reading
            try:
                chunk = await reading
            except StopAsyncIteration:
                self._ended = True
            except asyncio.CancelledError:
                if not self.interrupted:
                    raise
            except Exception as exc:
                if not batch:
                    raise
                self._error = exc  # hand over what arrived first; raise on the next call
                self._ended = True
            else:
                if chunk:
                    batch.append(chunk)
                    size += len(chunk)
                if len(batch) == 1:
                    deadline = self._loop.time() + BODY_BATCH_SECONDS
            finally:
                if reading.done():
                    self._reading = None
        return batch or None

    def __iter__(self) -> Iterator[bytes]:
        while True:
            batch = anyio.from_thread.run(self._next)
            if batch is None:
                return
            yield from batch


def _bounded(chunks: Iterator[bytes], limit: int | None, kind: TusErrorKind) -> Iterator[bytes]:
    """Stop with ``kind`` (413) as soon as the body would go beyond ``limit`` bytes."""
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        if limit is not None and seen > limit:
            raise TusError(kind, detail=f"body over {limit} bytes")
        yield chunk


def _while_held(chunks: Iterator[bytes], handle: LockHandle) -> Iterator[bytes]:
    """Stop writing the moment the lock is lost: another node may be writing now."""
    for chunk in chunks:
        if handle.lost:
            raise TusError(TusErrorKind.LOCKED, detail="upload lock lost mid-write")
        yield chunk


def _counted(chunks: Iterator[bytes], metrics: TusMetrics) -> Iterator[bytes]:
    for chunk in chunks:
        metrics.received(len(chunk))
        yield chunk


class _AfterCreation(Exception):
    """An error while writing the body of a creation request: the upload exists."""

    def __init__(
        self, error: TusError | ClientDisconnect | BackendUnavailable, location: str
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.location = location


class _MethodNotAllowedError(Exception):
    """The effective method is not served at this URL (or its extension is off)."""


def build_tus_router(
    store: UploadStore, capabilities: Capabilities, options: TusOptions | None = None
) -> APIRouter:
    """A router serving tus at ``options.prefix`` (creation) and ``prefix/{id}``."""
    opts = options or TusOptions()
    caps = capabilities
    prefix = opts.prefix.rstrip("/")
    locker: Locker = opts.locker or _SetLocker()
    events = opts.events
    metrics = opts.metrics
    digests = RunningDigests()
    router = APIRouter()

    def expires() -> datetime | None:
        if not caps.expiration or opts.expires_after is None:
            return None
        return opts.clock() + opts.expires_after

    def expiry_header(moment: datetime | None) -> dict[str, str]:
        return {"Upload-Expires": format_expires(moment)} if moment is not None else {}

    def location_of(upload_id: str) -> str:
        return f"{prefix}/{upload_id}"

    async def run(fn: Callable[..., _T], *args: object) -> _T:
        return await anyio.to_thread.run_sync(fn, *args)

    async def load(upload_id: str, principal: Principal) -> UploadInfo:
        """The upload if it exists and this caller may touch it (else 404: no hint)."""
        info = await run(store.get, upload_id)
        owner = info.notes.get(PRINCIPAL_NOTE)
        if not principal.is_admin and owner != principal.id:
            raise TusError(TusErrorKind.NOT_FOUND, detail=f"{upload_id} is not {principal.id}'s")
        return info

    async def locked(upload_id: str) -> LockHandle:
        # Ask a holder to let go (it stops reading and keeps what it stored) and wait a
        # little, as tusd does; only a holder that will not let go makes this a 423.
        handle = await run(functools.partial(locker.acquire, upload_id, wait=opts.lock_wait))
        if handle is None:
            raise TusError(TusErrorKind.LOCKED)
        return handle

    async def complete(info: UploadInfo) -> None:
        """Hand a whole upload to the application (never a partial one)."""
        if info.is_partial or not info.is_complete:
            return
        sha256 = digests.result(info.id, info.offset)
        await run(events.completed, info, sha256)
        metrics.finished()

    def max_size_for(principal: Principal) -> int | None:
        sizes = [s for s in (caps.max_size, principal.max_size) if s is not None]
        return min(sizes) if sizes else None

    async def write_body(
        request: Request, info: UploadInfo, offset_header: str | None, principal: Principal
    ) -> tuple[UploadInfo, datetime | None]:
        """Validate a PATCH (or a POST carrying data) and stream its body into the store."""

        def plan_for(upload: UploadInfo) -> PatchPlan:
            return check_patch(
                upload,
                offset_header,
                request.headers.get("content-type"),
                _content_length(request),
                max_size_for(principal),
                upload_length=request.headers.get("upload-length"),
                now=opts.clock(),
            )

        plan = plan_for(info)
        if opts.chunk_rule is not None:
            body_length = _content_length(request)
            opts.chunk_rule(replace(info, length=plan.length), info.offset, body_length)
        checksum: tuple[str, bytes] | None = None
        raw_checksum = request.headers.get("upload-checksum")
        if caps.checksum and raw_checksum is not None:
            checksum = parse_checksum(raw_checksum, caps.checksum_algorithms)
        handle = await locked(info.id)
        try:
            # Re-check under the lock: another request (or node) may have written or set
            # the length meanwhile; only now is the plan safe to carry out.
            current = await run(store.get, info.id)
            plan = plan_for(current)
            if current.is_complete:
                # Nothing to store (a retried last PATCH): leave the upload and its
                # recorded outcome exactly as they are.
                return current, None
            if current.length is None and plan.length is not None:
                current = await run(store.declare_length, info.id, plan.length)
            kind = (
                TusErrorKind.SIZE_EXCEEDED
                if plan.length is not None
                else TusErrorKind.MAX_SIZE_EXCEEDED
            )
            pending = digests.begin(info.id, current.offset)
            body = _BodyReader(request.stream().__aiter__())
            handle.on_interrupt(body.interrupt)
            chunks = pending.feed(
                _counted(_while_held(_bounded(iter(body), plan.limit, kind), handle), metrics)
            )
            until = expires()

            def write() -> int:
                return store.write(
                    info.id, current.offset, chunks, plan.limit, checksum=checksum, expires_at=until
                )

            try:
                try:
                    offset = await run(write)
                finally:
                    body.close()
            except BaseException:
                try:
                    kept = (await run(store.get, info.id)).offset
                except Exception:  # the digest is only a cache: drop it
                    digests.forget(info.id)
                else:
                    digests.commit(pending, kept)
                raise
            digests.commit(pending, offset)
            length = plan.length if plan.length is not None else current.length
            return replace(current, offset=offset, length=length, expires_at=until), until
        finally:
            await run(handle.release)

    async def on_options(_request: Request, _upload_id: str | None, _p: Principal) -> Response:
        return Response(status_code=204, headers=caps.options_headers())

    def partial_id(url: str) -> str:
        """The upload id a concat URL names: ``<prefix>/<id>``, relative or absolute."""
        path = urlsplit(url).path.rstrip("/")
        parent, _, upload_id = path.rpartition("/")
        if parent != prefix or not is_upload_id(upload_id):
            raise TusError(TusErrorKind.INVALID_CONCAT, detail=f"not an upload URL: {url!r}")
        return upload_id

    async def create_final(
        request: Request, concat_urls: tuple[str, ...], principal: Principal
    ) -> Response:
        if header(request.headers, "Upload-Length") is not None:
            raise TusError(TusErrorKind.INVALID_CONCAT, detail="final uploads take no length")
        ids = tuple(partial_id(url) for url in concat_urls)
        total = 0
        for upload_id in dict.fromkeys(ids):
            part = await load(upload_id, principal)
            check_expired(part, opts.clock())
            if not part.is_partial or not part.is_complete:
                raise TusError(TusErrorKind.INVALID_CONCAT, detail=f"{upload_id} not a done part")
        for upload_id in ids:
            total += (await run(store.get, upload_id)).offset
        limit = max_size_for(principal)
        if limit is not None and total > limit:
            raise TusError(TusErrorKind.MAX_SIZE_EXCEEDED, detail=f"{total} > {limit}")
        info = await new_info(request, principal, length=total)
        info = replace(info, is_final=True, partial_ids=ids)
        info = await run(store.concatenate, info)
        await run(events.created, info)
        metrics.created()
        await complete(info)
        headers = {"Location": location_of(info.id), **expiry_header(info.expires_at)}
        headers.update(opts.creation_headers(info) if opts.creation_headers else {})
        return _plain(201, "", **headers)

    async def new_info(request: Request, principal: Principal, *, length: int | None) -> UploadInfo:
        metadata_raw = request.headers.get("upload-metadata")
        metadata = parse_upload_metadata(metadata_raw)
        info = UploadInfo(
            id=new_upload_id(),
            offset=0,
            length=length,
            created_at=opts.clock(),
            metadata_raw=metadata_raw,
            metadata=metadata,
            expires_at=expires(),
        )
        notes = dict(await run(events.before_create, info, principal))
        notes.update(principal.notes)
        notes[PRINCIPAL_NOTE] = principal.id
        return replace(info, notes=notes)

    async def create(request: Request, _upload_id: str | None, principal: Principal) -> Response:
        if not caps.creation:
            raise _MethodNotAllowedError
        concat_header = header(request.headers, "Upload-Concat")
        is_partial = False
        if concat_header is not None:
            if not caps.concatenation:
                raise TusError(TusErrorKind.INVALID_CONCAT, detail="concatenation is not enabled")
            concat = parse_concat(concat_header)
            if concat.kind == "final":
                return await create_final(request, concat.urls, principal)
            is_partial = True
        length = parse_length(
            request.headers.get("upload-length"),
            request.headers.get("upload-defer-length"),
            allow_defer=caps.creation_defer_length,
            max_size=max_size_for(principal),
        )
        with_upload = caps.creation_with_upload and "content-type" in request.headers
        if with_upload:
            check_content_type(request.headers.get("content-type"))
        info = replace(await new_info(request, principal, length=length), is_partial=is_partial)
        info = await run(store.create, info)
        await run(events.created, info)
        metrics.created()
        location = location_of(info.id)
        headers = {"Location": location, **expiry_header(info.expires_at)}
        headers.update(opts.creation_headers(info) if opts.creation_headers else {})
        if with_upload:
            try:
                info, until = await write_body(request, info, "0", principal)
            except (TusError, ClientDisconnect, BackendUnavailable) as exc:
                raise _AfterCreation(exc, location) from exc
            headers["Upload-Offset"] = str(info.offset)
            headers.update(expiry_header(until))
            await complete(info)
        elif info.is_complete:
            await complete(info)  # Upload-Length: 0
        return _plain(201, "", **headers)

    async def head(_request: Request, upload_id: str | None, principal: Principal) -> Response:
        info = await load(str(upload_id), principal)
        headers = head_headers(info, opts.clock(), url_for=location_of)
        return Response(status_code=200, headers=headers)

    async def patch(request: Request, upload_id: str | None, principal: Principal) -> Response:
        info = await load(str(upload_id), principal)
        offset = request.headers.get("upload-offset")
        was_complete = info.is_complete
        with metrics.patch_timer():
            info, until = await write_body(request, info, offset, principal)
        if not was_complete:
            await complete(info)  # only the request that stored the last byte hands it on
        return _plain(204, "", **{"Upload-Offset": str(info.offset), **expiry_header(until)})

    async def delete(_request: Request, upload_id: str | None, principal: Principal) -> Response:
        if not caps.termination:
            raise _MethodNotAllowedError
        info = await load(str(upload_id), principal)
        handle = await locked(info.id)
        try:
            if opts.can_terminate is not None:
                await run(opts.can_terminate, await run(store.get, info.id))
            await run(store.terminate, info.id)
        finally:
            await run(handle.release)
        digests.forget(info.id)
        await run(events.terminated, info)
        metrics.terminated()
        return _plain(204, "")

    _Handler = Callable[[Request, str | None, Principal], Awaitable[Response]]
    collection: dict[str, _Handler] = {"OPTIONS": on_options, "POST": create}
    resource: dict[str, _Handler] = {
        "OPTIONS": on_options,
        "HEAD": head,
        "PATCH": patch,
        "DELETE": delete,
    }

    async def dispatch(
        request: Request, upload_id: str | None, handlers: dict[str, _Handler]
    ) -> Response:
        extra: dict[str, str] = {}
        method = request.method
        with metrics.connection():
            try:
                method = method_override(request.method, request.headers)
                metrics.request(method)
                check_version(request.headers, method=method)
                handler = handlers.get(method)
                if handler is None:
                    raise _MethodNotAllowedError
                principal = (
                    ANONYMOUS_ADMIN if method == "OPTIONS" else await opts.authorize(request)
                )
                response = await handler(request, upload_id, principal)
            except _AfterCreation as exc:
                extra = {"Location": exc.location}
                if isinstance(exc.error, ClientDisconnect):
                    log.info("tus client went away while creating %s", exc.location)
                    metrics.error(400)
                    return _plain(400, "client disconnected", **extra)
                if isinstance(exc.error, BackendUnavailable):
                    log.warning("storage failed while creating %s: %r", exc.location, exc.error)
                    metrics.error(503)
                    return _plain(503, exc.error.message, **extra)
                response = _tus_error(exc.error, request, upload_id, extra, metrics)
            except TusError as exc:
                response = _tus_error(exc, request, upload_id, extra, metrics)
            except _MethodNotAllowedError:
                metrics.error(405)
                allow = ", ".join(handlers)
                return _plain(405, "method not allowed", Allow=allow)
            except ClientDisconnect:
                log.info("tus client went away while writing %r", upload_id)
                metrics.error(400)
                return _plain(400, "client disconnected")
            except HybridVideoError as exc:
                status = next((s for cls, s in _DOMAIN_STATUS if isinstance(exc, cls)), None)
                if status is None:
                    raise  # the app's error handlers answer (503, 500) with the usual body
                metrics.error(status)
                if status == 503:
                    log.warning("tus %s %r: %r", request.method, upload_id, exc)
                headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
                return _plain(status, exc.message, **headers)
        response.headers["Tus-Resumable"] = TUS_VERSION
        return response

    methods = ["OPTIONS", "HEAD", "GET", "POST", "PATCH", "PUT", "DELETE"]

    @router.api_route(prefix, methods=methods, include_in_schema=False)
    @router.api_route(prefix + "/", methods=methods, include_in_schema=False)
    async def tus_collection(request: Request) -> Response:
        return await dispatch(request, None, collection)

    @router.api_route(prefix + "/{upload_id}", methods=methods, include_in_schema=False)
    async def tus_upload(request: Request, upload_id: str) -> Response:
        return await dispatch(request, upload_id, resource)

    return router


def _tus_error(
    exc: TusError,
    request: Request,
    upload_id: str | None,
    extra: Mapping[str, str],
    metrics: TusMetrics,
) -> Response:
    if exc.status >= 500 or exc.detail:
        log.info("tus %s %r: %s (%r)", request.method, upload_id, exc.code, exc.detail)
    metrics.error(exc.status)
    return _error_response(exc, extra)


__all__ = [
    "ANONYMOUS_ADMIN",
    "PRINCIPAL_NOTE",
    "Authorizer",
    "LockHandle",
    "Locker",
    "NoEvents",
    "Principal",
    "TusMetrics",
    "TusOptions",
    "UploadEvents",
    "build_tus_router",
]
