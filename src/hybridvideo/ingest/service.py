"""What an upload becomes: validated metadata in, a catalog video (or a clear error) out.

The tus handler calls :class:`IngestService` as its :class:`UploadEvents`; the heavy part
runs as the ``ingest.finish`` job so the client's last PATCH is answered at once and a
crash between the last byte and the catalog row is repaired by re-running the job (the
sweep re-queues complete uploads that never got an outcome). Each step is safe to repeat:

1. ``store.finish`` makes the bytes the archive object ``incoming/<id>`` (idempotent);
2. the sha256 comes from the digest computed while the bytes streamed in, or — after a
   restart or when PATCHes hit several nodes — from re-reading the object once;
3. probe through a ranged reader (only the bytes FFmpeg asks for); a non-video is marked
   ``failed`` with the reason and its bytes stay at ``incoming/<id>`` for inspection
   until the upload expires and the sweep removes them;
4. the object moves to its content-addressed master key (``masters/<sha[:2]>/<sha><ext>``,
   the same layout ``videos add`` uses), a poster JPEG goes to
   ``thumbnails/<sha[:2]>/<sha>.jpg``, the catalog row is written, and delivery is queued
   (``delivery.send``: presigned URL → Stream copy, the path the migration uses too).

The outcome is kept in the upload's notes (``state``, ``video_id``, ``error_*``) so any
node can answer ``GET /api/v1/uploads/{id}`` and HEAD keeps working until expiry.
"""

from __future__ import annotations

import hashlib
import io
import logging
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Protocol, cast
from urllib.parse import quote

from hybridvideo.archive.base import ArchiveStore
from hybridvideo.catalog.base import Catalog
from hybridvideo.domain.video import (
    DEFAULT_COLLECTION,
    MediaInfo,
    NewVideo,
    VideoState,
    validate_collection,
    validate_owner_id,
    validate_title,
)
from hybridvideo.errors import BackendUnavailable, Conflict, InvalidInput, NotAVideo, NotFound
from hybridvideo.ingest.tus.handler import PRINCIPAL_NOTE, Locker, LockHandle, Principal
from hybridvideo.ingest.tus.protocol import TusError, TusErrorKind, UploadInfo
from hybridvideo.ingest.tus.store import UploadStore
from hybridvideo.queue.base import TaskQueue
from hybridvideo.videos.service import (
    CONTENT_TYPES,
    AddResult,
    VerifyingReader,
    master_key,
    thumbnail_key,
)

log = logging.getLogger("hybridvideo.ingest")

FINISH_JOB = "ingest.finish"
DELIVERY_JOB = "delivery.send"

# Upload states kept in the notes.
RECEIVING = "receiving"
PROCESSING = "processing"
READY = "ready"
FAILED = "failed"

MAX_FILENAME = 255
MAX_FILETYPE = 127
#: A complete upload still without an outcome this long after its last byte is re-queued.
STUCK_AFTER = timedelta(minutes=10)


class UploadHooks(Protocol):
    """Where upload events go (signed webhooks to the app, :mod:`hybridvideo.ingest.hooks`)."""

    def emit(self, event: str, payload: Mapping[str, Any]) -> None: ...


class NoHooks:
    def emit(self, event: str, payload: Mapping[str, Any]) -> None:
        return None


class _NoLock:
    lost = False

    def on_interrupt(self, callback: Callable[[], None]) -> None:
        return None

    def release(self) -> None:
        return None


Prober = Callable[..., MediaInfo]
Thumbnailer = Callable[..., bytes]
ReaderFactory = Callable[[ArchiveStore, str, int], Any]


@dataclass(frozen=True, slots=True)
class UploadStatus:
    """What became of an upload, as the uploader sees it."""

    id: str
    offset: int
    length: int | None
    state: str
    video_id: str | None
    error_code: str | None
    error_message: str | None
    expires_at: datetime | None
    metadata: Mapping[str, str | None]


def _clean_text(value: str | None, what: str, limit: int) -> str | None:
    if value is None:
        return None
    if len(value) > limit:
        raise InvalidInput(f"{what} is longer than {limit} characters")
    if any(unicodedata.category(ch).startswith("C") for ch in value):
        raise InvalidInput(f"{what} contains control characters")
    return value


def _suffix(filename: str | None) -> str:
    if not filename:
        return ""
    suffix = PurePosixPath(filename.replace("\\", "/")).suffix
    return suffix if len(suffix) <= 8 and suffix[1:].isalnum() else ""


class IngestService:
    """The application side of tus uploads (also the :class:`UploadEvents` the router calls)."""

    def __init__(
        self,
        *,
        store: UploadStore,
        archive: ArchiveStore,
        catalog: Catalog,
        queue: TaskQueue,
        prober: Prober,
        thumbnailer: Thumbnailer,
        reader: ReaderFactory,
        hooks: UploadHooks | None = None,
        locker: Locker | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._archive = archive
        self._catalog = catalog
        self._queue = queue
        self._probe = prober
        self._thumbnail = thumbnailer
        self._reader = reader
        self._hooks: UploadHooks = hooks or NoHooks()
        #: The tus handler's per-upload lock: finishing, terminating, writing and sweeping
        #: one upload never overlap (across nodes with the Redis locker).
        self._locker = locker
        self._clock = clock

    @property
    def store(self) -> UploadStore:
        return self._store

    # -- UploadEvents -----------------------------------------------------------------

    def before_create(self, info: UploadInfo, principal: Principal) -> Mapping[str, str]:
        """Validate the metadata that will become the video; 400 before anything exists."""
        meta = info.metadata
        filename = _clean_text(meta.get("filename") or meta.get("name"), "filename", MAX_FILENAME)
        _clean_text(meta.get("filetype") or meta.get("type"), "filetype", MAX_FILETYPE)
        title = meta.get("title")
        if title is not None:
            validate_title(title)
        collection = meta.get("collection") or DEFAULT_COLLECTION
        validate_collection(collection)
        fixed = principal.notes.get("collection")
        if fixed is not None and collection not in (fixed, DEFAULT_COLLECTION):
            raise InvalidInput(f"this upload token only allows collection {fixed!r}")
        notes = {"state": RECEIVING, "collection": fixed or collection}
        owner = principal.notes.get("owner_id") or meta.get("owner_id")
        if owner:
            validate_owner_id(owner)
            notes["owner_id"] = owner
        if filename:
            notes["filename"] = filename
        return notes

    def created(self, info: UploadInfo) -> None:
        self._hooks.emit("upload.created", self._hook_payload(info))

    def completed(self, info: UploadInfo, sha256: str | None) -> None:
        """The last byte is stored: mark it and queue the hand-off (quick and durable)."""
        done_at = self._clock().isoformat()
        self._store.update(info.id, notes={"state": PROCESSING, "completed_at": done_at})
        payload: dict[str, Any] = {"upload_id": info.id}
        if sha256 is not None:
            payload["sha256"] = sha256
        self._queue.enqueue(FINISH_JOB, payload)

    def terminated(self, info: UploadInfo) -> None:
        self._hooks.emit("upload.terminated", self._hook_payload(info))

    # -- the finish job ---------------------------------------------------------------

    def finish_upload(self, upload_id: str, sha256: str | None = None) -> UploadStatus:
        """Turn a complete upload into a catalog video; safe to run again."""
        handle = self._lock(upload_id)
        if handle is None:
            # A DELETE, a late PATCH or another finish holds it: the queue retries later.
            raise BackendUnavailable("the upload is busy", detail=upload_id)
        try:
            return self._finish_locked(upload_id, sha256)
        finally:
            handle.release()

    def _lock(self, upload_id: str) -> LockHandle | None:
        if self._locker is None:
            return _NoLock()
        return self._locker.acquire(upload_id)

    def check_terminate(self, info: UploadInfo) -> None:
        """Refuse (423) to terminate an upload while it is becoming a video."""
        if info.notes.get("state") == PROCESSING:
            raise TusError(TusErrorKind.LOCKED, detail="being processed")

    def _finish_locked(self, upload_id: str, sha256: str | None) -> UploadStatus:
        try:
            info = self._store.get(upload_id)
        except TusError as exc:
            if exc.kind is not TusErrorKind.NOT_FOUND:
                raise
            log.info("upload %s was terminated before it was finished", upload_id)
            return UploadStatus(upload_id, 0, None, FAILED, None, "GONE", "terminated", None, {})
        state = info.notes.get("state")
        if state in (READY, FAILED):
            return self.status(upload_id)
        if info.is_partial or not info.is_complete:
            raise InvalidInput("the upload is not complete")
        key = self._store.finish(upload_id)
        try:
            video = self._make_video(info, key, sha256)
        except NotAVideo as exc:
            log.info("upload %s is not a video: %s", upload_id, exc.message)
            return self._fail(info, exc.code, exc.message)
        except (BackendUnavailable, TusError):
            raise  # retried by the queue; the sweep re-queues if the retries run out
        except Exception:
            log.exception("finishing upload %s failed", upload_id)
            return self._fail(info, "INTERNAL", "the upload could not be processed")
        notes = {"state": READY, "video_id": video.id}
        info = self._store.update(upload_id, notes=notes)
        self._hooks.emit("upload.finished", self._hook_payload(info))
        return self.status(upload_id)

    def _fail(self, info: UploadInfo, code: str, message: str) -> UploadStatus:
        notes = {"state": FAILED, "error_code": code, "error_message": message}
        info = self._store.update(info.id, notes=notes)
        self._hooks.emit("upload.failed", self._hook_payload(info))
        return self.status(info.id)

    def _make_video(self, info: UploadInfo, key: str, sha256: str | None) -> VideoState:
        size = info.offset
        notes = info.notes
        sha256 = sha256 or notes.get("sha256")
        source = key
        moved_to = notes.get("master_key")
        if moved_to and not self._archive.exists(key) and self._archive.exists(moved_to):
            source = moved_to  # a retry after the move: carry on from the master
        if sha256 is None:
            digest = hashlib.sha256()
            for chunk in self._archive.open(source):
                digest.update(chunk)
            sha256 = digest.hexdigest()
        filename = notes.get("filename") or f"upload-{info.id}"
        suffix = _suffix(filename)
        with self._reader(self._archive, source, size) as reader:
            media = self._probe(reader, name=filename, suffix=suffix, size=size, sha256=sha256)
        existing = self._catalog.find_by_sha256(sha256)
        if existing is not None:
            # The same master is already cataloged: point the uploader at it. The upload's
            # copy is not an original, so it goes with the upload at expiry.
            return existing
        target = master_key(sha256, suffix or f".{media.format}")
        thumb = thumbnail_key(sha256)
        jpeg: bytes | None = None
        if not self._archive.exists(thumb):
            # Before the move: a master whose frames cannot be decoded must not reach
            # masters/ (it would stay there with no catalog row).
            with self._reader(self._archive, source, size) as reader:
                jpeg = self._thumbnail(reader, duration=media.duration)
        # Remember where the bytes go before moving them, so a retry finds them.
        self._store.update(info.id, notes={"sha256": sha256, "master_key": target})
        if source != target and not self._archive.exists(target):
            content_type = CONTENT_TYPES.get(media.format, "application/octet-stream")
            try:
                self._archive.move(source, target, content_type=content_type)
            except Conflict:
                if not self._archive.exists(target):
                    raise  # same bytes filed meanwhile by a twin upload: fine; else not
        if jpeg is not None:
            self._archive.put(thumb, io.BytesIO(jpeg), content_type="image/jpeg")
        title = info.metadata.get("title")
        event = {"upload_id": info.id, "size": size}
        video, _ = self._catalog_and_deliver(title, filename, notes, target, media, thumb, event)
        return video

    def _catalog_and_deliver(
        self,
        title: str | None,
        filename: str,
        notes: Mapping[str, str],
        key: str,
        media: MediaInfo,
        thumb: str,
        event: Mapping[str, Any],
    ) -> tuple[VideoState, bool]:
        """Record the filed master as a video and queue its delivery; if another process
        cataloged the same master first, that video (``created`` False, nothing queued)."""
        new = NewVideo(
            title=validate_title(title or PurePosixPath(filename).stem or filename),
            collection=notes.get("collection", DEFAULT_COLLECTION),
            archive_bucket=self._archive.bucket,
            archive_key=key,
            media=media,
            owner_id=notes.get("owner_id"),
            thumbnail_url=self._archive.public_url(thumb),
        )
        try:
            video = self._catalog.add_video(new)
        except Conflict:
            raced = self._catalog.find_by_sha256(media.sha256)
            if raced is None:
                raise
            return raced, False
        self._catalog.record_event(video.id, "uploaded", dict(event))
        self._queue.enqueue(DELIVERY_JOB, {"video_id": video.id})
        return video, True

    # -- status and sweeping ----------------------------------------------------------

    def status(self, upload_id: str, principal: Principal | None = None) -> UploadStatus:
        try:
            info = self._store.get(upload_id)
        except TusError as exc:
            if exc.kind is TusErrorKind.NOT_FOUND:
                raise NotFound("no such upload") from None
            raise
        owner = info.notes.get(PRINCIPAL_NOTE)
        if principal is not None and not principal.is_admin and owner != principal.id:
            raise NotFound("no such upload")
        notes = info.notes
        return UploadStatus(
            id=info.id,
            offset=info.offset,
            length=info.length,
            state=notes.get("state", RECEIVING),
            video_id=notes.get("video_id"),
            error_code=notes.get("error_code"),
            error_message=notes.get("error_message"),
            expires_at=info.expires_at,
            metadata=info.metadata,
        )

    def sweep(self) -> dict[str, int]:
        """Remove expired uploads, re-queue stuck ones, clear crash leftovers."""
        now = self._clock()
        removed = requeued = 0
        for info in list(self._store.list_uploads()):
            state = info.notes.get("state", RECEIVING)
            handed_over = info.is_complete and not info.is_partial
            waiting = handed_over and state in (RECEIVING, PROCESSING)
            if info.expires_at is not None and now >= info.expires_at and not waiting:
                # Never remove an upload the client was told is stored and that has no
                # outcome yet (an outage longer than the expiry): it is re-queued below.
                handle = self._lock(info.id)
                if handle is None:
                    continue  # a request is writing it right now: not abandoned
                try:
                    self._store.terminate(info.id)
                    removed += 1
                except TusError:
                    pass  # removed meanwhile by another node or the client
                finally:
                    handle.release()
                continue
            if (
                not info.is_partial
                and info.is_complete
                and state in (RECEIVING, PROCESSING)
                and now - _last_activity(info) > STUCK_AFTER
            ):
                self._queue.enqueue(FINISH_JOB, {"upload_id": info.id})
                requeued += 1
        orphans = self._store.purge_orphans(now - timedelta(days=1))
        return {"removed": removed, "requeued": requeued, "orphans": orphans}

    def _hook_payload(self, info: UploadInfo) -> dict[str, Any]:
        notes = info.notes
        return {
            "id": info.id,
            "offset": info.offset,
            "length": info.length,
            "metadata": dict(info.metadata),
            "state": notes.get("state", RECEIVING),
            "video_id": notes.get("video_id"),
            "error": (
                {"code": notes["error_code"], "message": notes.get("error_message")}
                if "error_code" in notes
                else None
            ),
        }

    # -- direct uploads: POST /api/v1/uploads (multipart) and the legacy base64 body ----

    def direct_upload_notes(
        self,
        principal: Principal,
        *,
        filename: str | None,
        title: str | None = None,
        collection: str | None = None,
        owner_id: str | None = None,
    ) -> Mapping[str, str]:
        """Check a direct upload's fields under the caller's rules; ``InvalidInput`` if bad.

        The rules are :meth:`before_create`'s, run on the same metadata a tus client would
        send, so a token's fixed collection and owner apply exactly as they do to tus. The
        router calls this as soon as the file part starts, before its bytes are received.
        """
        given = {
            "filename": filename,
            "title": title,
            "collection": collection,
            "owner_id": owner_id,
        }
        meta = {k: v for k, v in given.items() if v is not None}
        info = UploadInfo(
            id="direct", offset=0, length=None, created_at=self._clock(), metadata=meta
        )
        return self.before_create(info, principal)

    def add_local_file(
        self,
        path: Path,
        *,
        filename: str | None = None,
        title: str | None = None,
        collection: str | None = None,
        owner_id: str | None = None,
        principal: Principal | None = None,
        sha256: str | None = None,
    ) -> AddResult:
        """What a finished tus upload becomes, for a file on this machine's disk.

        Used by the direct (multipart) and legacy base64 uploads, which receive small files
        whole into a temporary file: there is no upload store, so nothing is kept unless
        the file is a video. Probe first (``NotAVideo`` before any byte is stored), then
        the content-addressed master and its thumbnail, the catalog row and the delivery
        job. An already cataloged master answers with its video and ``created=False``.
        ``sha256`` is the digest the caller computed while writing ``path``; the bytes are
        hashed again as they go to the archive, so the master always matches its key.
        """
        who = principal or Principal("admin", is_admin=True)
        notes = self.direct_upload_notes(
            who, filename=filename, title=title, collection=collection, owner_id=owner_id
        )
        name = notes.get("filename") or "upload"
        suffix = _suffix(name)
        size = path.stat().st_size
        if who.max_size is not None and size > who.max_size:
            raise InvalidInput(
                f"the file is larger than this upload token allows ({who.max_size} bytes)"
            )
        if sha256 is None:
            digest = hashlib.sha256()
            with path.open("rb") as fh:
                while chunk := fh.read(1024 * 1024):
                    digest.update(chunk)
            sha256 = digest.hexdigest()
        media = self._probe(str(path), name=name, suffix=suffix, size=size, sha256=sha256)
        existing = self._catalog.find_by_sha256(sha256)
        if existing is not None:
            return AddResult(existing, created=False)
        target = master_key(sha256, suffix or f".{media.format}")
        thumb = thumbnail_key(sha256)
        # The poster is made before anything is stored: a file with no decodable frame
        # leaves nothing behind.
        jpeg = None
        if not self._archive.exists(thumb):
            jpeg = self._thumbnail(str(path), duration=media.duration)
        if not self._archive.exists(target):
            content_type = CONTENT_TYPES.get(media.format, "application/octet-stream")
            with path.open("rb") as fh:
                verified = VerifyingReader(fh, size=size, sha256=sha256, name=name)
                self._archive.put(
                    target,
                    cast(BinaryIO, verified),
                    content_type=content_type,
                    metadata={"sha256": sha256, "filename": quote(name)},
                )
        if jpeg is not None:
            self._archive.put(thumb, io.BytesIO(jpeg), content_type="image/jpeg")
        event = {"via": "direct", "size": size}
        video, created = self._catalog_and_deliver(title, name, notes, target, media, thumb, event)
        return AddResult(video, created=created)


def _last_activity(info: UploadInfo) -> datetime:
    """When the last byte arrived (recorded by ``completed``), else the creation time."""
    raw = info.notes.get("completed_at")
    if raw:
        try:
            return datetime.fromisoformat(raw)
        except ValueError:
            pass
    return info.created_at


__all__ = [
    "DELIVERY_JOB",
    "FAILED",
    "FINISH_JOB",
    "PROCESSING",
    "READY",
    "RECEIVING",
    "IngestService",
    "NoHooks",
    "UploadHooks",
    "UploadStatus",
    "thumbnail_key",
]
