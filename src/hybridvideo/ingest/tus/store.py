"""Where tus uploads live while they are being written: the contract and a local store.

The contract follows tusd's data store in spirit. The offset a store reports is the
truth and never runs ahead of stored bytes: :class:`LocalUploadStore` makes bytes durable
(``fsync``) *before* it records the new offset, so a crash can leave unrecorded bytes at
the end of the data file but never a recorded offset without its bytes (such a tail is cut
off before the next write); the S3 store (``s3_store.py``) derives the offset from what
the bucket holds.

A write can be made conditional on a checksum of the bytes it receives: the bytes are
appended, and the offset only moves once the digest matches; otherwise the file is cut
back and 460 is raised, so the chunk is discarded and the offset is unchanged.

A complete upload is handed to the archive by :meth:`UploadStore.finish` as the object
``incoming/<id>``; the local store renames its data file into a local archive (no copy)
and streams it through ``ArchiveStore.put`` into any other archive.
"""

from __future__ import annotations

import contextlib
import ctypes
import hmac
import json
import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast, runtime_checkable

from hybridvideo.archive.base import ArchiveStore, ObjectInfo
from hybridvideo.errors import BackendUnavailable, ConfigurationError, NotFound
from hybridvideo.ingest.tus.protocol import TusError, TusErrorKind, UploadInfo, new_hasher

_ID = re.compile(r"[0-9a-f]{32}")
#: Where finished uploads land in the archive; the application takes them from there.
INCOMING_PREFIX = "incoming/"
#: ``type/subtype`` without parameters, RFC 9110 token characters, bounded.
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][!#$&^_.+\-A-Za-z0-9]{0,63}/[A-Za-z0-9][!#$&^_.+\-A-Za-z0-9]{0,126}"
)
#: Metadata keys clients use for the file's media type (tus-js-client and Uppy: filetype).
CONTENT_TYPE_KEYS = ("filetype", "type", "contentType")
_COPY_CHUNK = 1024 * 1024


def new_upload_id() -> str:
    """A random 32-hex upload id (128 bits: not guessable, safe in paths and URLs)."""
    return secrets.token_hex(16)


def is_upload_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None


def incoming_key(upload_id: str) -> str:
    """The archive key a finished upload becomes: ``incoming/<id>``."""
    if not is_upload_id(upload_id):
        raise TusError(TusErrorKind.NOT_FOUND, detail="malformed upload id")
    return INCOMING_PREFIX + upload_id


def content_type_of(metadata: Mapping[str, str | None]) -> str | None:
    """The media type the client declared in its metadata, if it is a plain ``type/sub``.

    The value ends up in an HTTP header of the archive (S3 ``Content-Type``), so anything
    but a bare, bounded media type (parameters, spaces, control characters) is dropped
    rather than passed on.
    """
    for name in CONTENT_TYPE_KEYS:
        value = metadata.get(name)
        if value and _MEDIA_TYPE.fullmatch(value):
            return value.lower()
    return None


def check_new_length(info: UploadInfo, length: int) -> None:
    """400 unless ``length`` may become the length of ``info`` (set once, not below the
    offset)."""
    if info.length is not None and info.length != length:
        raise TusError(TusErrorKind.INVALID_LENGTH, detail="length is already set")
    if length < info.offset:
        raise TusError(TusErrorKind.INVALID_LENGTH, detail="length below the offset")


def effective_limit(info: UploadInfo, limit: int | None) -> int | None:
    """The most bytes a write at ``info.offset`` may add: the caller's limit, and never
    beyond a known length (a store keeps that rule even if a caller forgets it)."""
    room = None if info.length is None else max(info.length - info.offset, 0)
    if limit is None:
        return room
    return limit if room is None else min(limit, room)


def refuse_more(chunks: Iterator[bytes]) -> None:
    """Drain ``chunks`` of a write to a complete upload: 413 as soon as a byte arrives."""
    for chunk in chunks:
        if chunk:
            raise TusError(TusErrorKind.SIZE_EXCEEDED, detail="the upload is complete")


def check_finishable(info: UploadInfo) -> None:
    """400 unless ``info`` may become an archive object (complete, and not a partial)."""
    if info.is_partial:
        raise TusError(TusErrorKind.INVALID_CONCAT, detail="a partial upload is never finished")
    if not info.is_complete:
        raise TusError(
            TusErrorKind.INVALID_LENGTH,
            detail=f"upload is incomplete ({info.offset} of {info.length})",
        )


def check_partials(final: UploadInfo, partials: Mapping[str, UploadInfo]) -> int:
    """400 unless every partial of ``final`` is a complete partial upload; their total."""
    if not final.is_final or not final.partial_ids:
        raise ValueError("concatenate needs a final upload listing its partials")
    total = 0
    for partial_id in final.partial_ids:
        partial = partials[partial_id]
        if not partial.is_partial:
            raise TusError(TusErrorKind.INVALID_CONCAT, detail=f"{partial_id} is not partial")
        if not partial.is_complete or partial.length is None:
            raise TusError(TusErrorKind.INVALID_CONCAT, detail=f"{partial_id} is incomplete")
        total += partial.length
    return total


class UploadStore(Protocol):
    """The storage an upload handler needs; every method is blocking (call it off-loop).

    Every store keeps its state where any process sharing the storage can find it (a
    local folder, or the S3 bucket itself), so a restarted or second server continues an
    upload. The recorded offset never runs ahead of stored bytes.

    Errors are :class:`TusError` (404 unknown/malformed id, 409 offset, 413, 460, 400)
    or a domain ``BackendUnavailable`` when the storage cannot be reached.
    """

    def create(self, info: UploadInfo) -> UploadInfo:
        """Record a new upload (``info.offset`` is 0); its id comes from :func:`new_upload_id`.

        ``is_partial``, ``expires_at`` and ``notes`` are recorded as given. Final
        (concatenated) uploads are made with :meth:`concatenate`, not here.
        """
        ...

    def get(self, upload_id: str) -> UploadInfo:
        """The upload's info; :class:`TusError` 404 if unknown or the id is malformed."""
        ...

    def declare_length(self, upload_id: str, length: int) -> UploadInfo:
        """Set the length of a deferred-length upload (once)."""
        ...

    def write(
        self,
        upload_id: str,
        offset: int,
        chunks: Iterator[bytes],
        limit: int | None,
        *,
        checksum: tuple[str, bytes] | None = None,
        expires_at: datetime | None = None,
    ) -> int:
        """Append ``chunks`` at ``offset`` (which must be the current one); the new offset.

        At most ``limit`` bytes are stored (more is 413). If ``chunks`` raises, what was
        received so far is kept and recorded, then the error propagates, unless a
        ``checksum`` ``(algorithm, digest)`` was given: then nothing is kept unless every
        byte arrived and the digest matches (460 otherwise). ``expires_at``, when given,
        is recorded with the new offset (sliding expiry) in the same save.
        """
        ...

    def update(
        self,
        upload_id: str,
        *,
        notes: Mapping[str, str] | None = None,
        expires_at: datetime | None = None,
    ) -> UploadInfo:
        """Merge ``notes`` into the recorded ones and/or set ``expires_at``; the new info."""
        ...

    def concatenate(self, info: UploadInfo) -> UploadInfo:
        """Record the final upload ``info`` (``is_final``, ``partial_ids`` in order) and
        build its data from the partials' bytes; return it complete (offset == length ==
        the partials' total). A partial listed twice is used twice; partials stay.

        404 if a partial is unknown; 400 (``INVALID_CONCAT``) if one is not a partial or
        not complete. Nothing is recorded when it fails.
        """
        ...

    def finish(self, upload_id: str) -> str:
        """Make a complete upload's bytes the archive object ``incoming/<id>``; its key.

        Safe to repeat (a second call returns the same key). The upload's info stays
        (HEAD keeps answering with offset == length) until :meth:`terminate`. Partial
        uploads are never finished (their bytes feed a final upload). 400 if incomplete.
        """
        ...

    def terminate(self, upload_id: str) -> None:
        """Delete the upload: its info, its data, an unfinished multipart upload and the
        ``incoming/<id>`` object if the application left it there; 404 if unknown."""
        ...

    def list_uploads(self) -> Iterator[UploadInfo]:
        """Every recorded upload (for the expiry sweep); order unspecified."""
        ...

    def purge_orphans(self, older_than: datetime) -> int:
        """Remove storage left without an info by a crash (a multipart upload, a folder)
        started before ``older_than``; how many were removed."""
        ...


@runtime_checkable
class FileAdopter(Protocol):
    """An archive that can take a finished file from the same machine without a copy."""

    def adopt(
        self,
        path: Path,
        key: str,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo: ...


def info_to_json(info: UploadInfo) -> dict[str, Any]:
    """The info as JSON-ready values (the local sidecar, the S3 ``.info`` object)."""
    return {
        "id": info.id,
        "offset": info.offset,
        "length": info.length,
        "created_at": info.created_at.isoformat(),
        "metadata_raw": info.metadata_raw,
        "metadata": dict(info.metadata),
        "is_partial": info.is_partial,
        "is_final": info.is_final,
        "partial_ids": list(info.partial_ids),
        "expires_at": None if info.expires_at is None else info.expires_at.isoformat(),
        "notes": dict(info.notes),
    }


def info_from_json(data: Mapping[str, Any]) -> UploadInfo:
    """Inverse of :func:`info_to_json`; sidecars written before a field existed still load."""
    expires = data.get("expires_at")
    return UploadInfo(
        id=str(data["id"]),
        offset=int(data.get("offset", 0)),
        length=None if data["length"] is None else int(data["length"]),
        created_at=datetime.fromisoformat(str(data["created_at"])),
        metadata_raw=data.get("metadata_raw"),
        metadata=dict(data.get("metadata") or {}),
        is_partial=bool(data.get("is_partial", False)),
        is_final=bool(data.get("is_final", False)),
        partial_ids=tuple(str(p) for p in data.get("partial_ids") or ()),
        expires_at=None if expires is None else datetime.fromisoformat(str(expires)),
        notes={str(k): str(v) for k, v in (data.get("notes") or {}).items()},
    )


#: Start writing received bytes to disk every this many bytes (see :func:`start_writeback`).
WRITEBACK_EVERY = 8 * 1024 * 1024


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return cast("Callable[[int, int, int, int], int]", function)


_SYNC_FILE_RANGE = _load_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing this range to disk now, without waiting (Linux
    ``sync_file_range(SYNC_FILE_RANGE_WRITE)``; a no-op elsewhere or when it fails).

    Why: the kernel starts background writeback only past ``dirty_background_ratio`` of
    RAM (2.4 GB on a 24 GiB machine), so without this a 1 GB PATCH reaches its fsync with
    all of it still in the page cache, and the client waits for the whole flush after the
    last byte. Durability still rests on the fsync in ``_commit``; this only moves the
    disk work under the transfer.
    """
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_exactly(source: BinaryIO, target: BinaryIO, size: int) -> None:
    """Copy the first ``size`` bytes of ``source``; a shorter file means lost data."""
    remaining = size
    while remaining:
        chunk = source.read(min(_COPY_CHUNK, remaining))
        if not chunk:
            raise BackendUnavailable(
                "an upload's data is shorter than recorded", detail=f"{remaining} bytes missing"
            )
        target.write(chunk)
        remaining -= len(chunk)


class LocalUploadStore:
    """Uploads on a local disk: ``<root>/<id>/<id>.bin`` and an ``<id>.json`` sidecar.

    The sidecar is replaced atomically (write a temporary file, fsync, rename). Only
    32-hex ids are accepted, so an id can never escape ``root``. ``archive`` receives
    finished uploads; put ``root`` on the same filesystem as a local archive so that
    finishing is a rename. Without an archive, everything but :meth:`finish` works.
    """

    def __init__(self, root: Path, archive: ArchiveStore | None = None) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._archive = archive

    def _folder(self, upload_id: str) -> Path:
        if not is_upload_id(upload_id):
            raise TusError(TusErrorKind.NOT_FOUND, detail="malformed upload id")
        return self.root / upload_id

    def data_path(self, upload_id: str) -> Path:
        return self._folder(upload_id) / f"{upload_id}.bin"

    def _info_path(self, upload_id: str) -> Path:
        return self._folder(upload_id) / f"{upload_id}.json"

    def _save(self, info: UploadInfo) -> None:
        path = self._info_path(info.id)
        tmp = path.with_suffix(".json.tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(info_to_json(info), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    def create(self, info: UploadInfo) -> UploadInfo:
        if info.is_final:
            raise ValueError("final uploads are made with concatenate()")
        folder = self._folder(info.id)
        folder.mkdir(parents=False, exist_ok=False)
        self.data_path(info.id).touch()
        info = replace(info, offset=0)
        self._save(info)
        _fsync_dir(self.root)
        return info

    def get(self, upload_id: str) -> UploadInfo:
        try:
            text = self._info_path(upload_id).read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise TusError(TusErrorKind.NOT_FOUND, detail=upload_id) from exc
        return info_from_json(json.loads(text))

    def declare_length(self, upload_id: str, length: int) -> UploadInfo:
        info = self.get(upload_id)
        check_new_length(info, length)
        info = replace(info, length=length)
        self._save(info)
        return info

    def write(
        self,
        upload_id: str,
        offset: int,
        chunks: Iterator[bytes],
        limit: int | None,
        *,
        checksum: tuple[str, bytes] | None = None,
        expires_at: datetime | None = None,
    ) -> int:
        info = self.get(upload_id)
        if offset != info.offset:
            raise TusError(TusErrorKind.OFFSET_MISMATCH, detail=f"{offset} != {info.offset}")
        if info.is_complete:  # the data file may already be in the archive (finish)
            refuse_more(chunks)
            if expires_at is not None:
                self._save(replace(info, expires_at=expires_at))
            return info.offset
        limit = effective_limit(info, limit)
        hasher = new_hasher(checksum[0]) if checksum is not None else None
        written = 0
        with self.data_path(upload_id).open("r+b") as fh:
            stored = os.fstat(fh.fileno()).st_size
            if stored < offset:
                # Bytes the info counts are missing (a disk that lost them): never fill the
                # gap; record what is really there and let the client resume from it.
                self._save(replace(info, offset=stored))
                raise TusError(TusErrorKind.OFFSET_MISMATCH, detail=f"stored bytes end at {stored}")
            fh.truncate(offset)  # drop an unrecorded tail left by a crash or a failed chunk
            fh.seek(offset)
            try:
                flushing = 0  # bytes of this write whose writeback has been started
                for chunk in chunks:
                    if limit is not None and written + len(chunk) > limit:
                        raise TusError(TusErrorKind.SIZE_EXCEEDED, detail=f"over {limit}")
                    fh.write(chunk)
                    written += len(chunk)
                    if written - flushing >= WRITEBACK_EVERY:
                        fh.flush()
                        start_writeback(fh.fileno(), offset + flushing, written - flushing)
                        flushing = written
                    if hasher is not None:
                        hasher.update(chunk)
                if (
                    checksum is not None
                    and hasher is not None
                    and not hmac.compare_digest(checksum[1], hasher.digest())
                ):
                    raise TusError(TusErrorKind.CHECKSUM_MISMATCH)
            except BaseException:
                if checksum is not None:
                    fh.truncate(offset)
                    written = 0
                else:
                    fh.truncate(offset + written)  # the offending chunk was not written
                self._commit(fh, info, written, expires_at if written else None)
                raise
            return self._commit(fh, info, written, expires_at)

    def _commit(
        self, fh: BinaryIO, info: UploadInfo, written: int, expires_at: datetime | None
    ) -> int:
        fh.flush()  # out of Python's buffer ...
        os.fsync(fh.fileno())  # ... durable on disk ...
        if written or expires_at is not None:  # ... and only then recorded
            current = self.get(info.id)  # notes may have changed during a long write
            expires = current.expires_at if expires_at is None else expires_at
            self._save(replace(current, offset=info.offset + written, expires_at=expires))
        return info.offset + written

    def update(
        self,
        upload_id: str,
        *,
        notes: Mapping[str, str] | None = None,
        expires_at: datetime | None = None,
    ) -> UploadInfo:
        info = self.get(upload_id)
        if notes:
            info = replace(info, notes={**info.notes, **notes})
        if expires_at is not None:
            info = replace(info, expires_at=expires_at)
        self._save(info)
        return info

    def concatenate(self, info: UploadInfo) -> UploadInfo:
        """Copy the partials' bytes into the final upload's own data file, then record it.

        The final upload owns a copy (not references): partials can be terminated or
        expire independently once the final one exists. Nothing is recorded until the copy
        is durable; a crash leaves a folder without a sidecar for :meth:`purge_orphans`.
        """
        partials = {pid: self.get(pid) for pid in dict.fromkeys(info.partial_ids)}
        total = check_partials(info, partials)
        folder = self._folder(info.id)
        folder.mkdir(parents=False, exist_ok=False)
        try:
            with self.data_path(info.id).open("wb") as out:
                for partial_id in info.partial_ids:
                    try:
                        source = self.data_path(partial_id).open("rb")
                    except FileNotFoundError as exc:  # terminated meanwhile
                        raise TusError(TusErrorKind.NOT_FOUND, detail=partial_id) from exc
                    with source:
                        _copy_exactly(source, out, partials[partial_id].offset)
                out.flush()
                os.fsync(out.fileno())
            final = replace(info, offset=total, length=total, is_partial=False)
            self._save(final)
            _fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return final

    def finish(self, upload_id: str) -> str:
        """Hand the data file to the archive as ``incoming/<id>``: renamed into a local
        archive (same disk), streamed into any other.

        The data file leaves the upload folder only once the object exists, so a missing
        data file means "finished" (the application may have moved the object on since)
        and a repeat returns the key. A data file left beside an existing object (a crash
        after a copy, before the unlink) is removed then."""
        info = self.get(upload_id)
        check_finishable(info)
        archive = self._require_archive()
        key = incoming_key(upload_id)
        data = self.data_path(upload_id)
        try:
            fh = data.open("r+b")
        except FileNotFoundError:
            return key
        with fh:
            handed_over = archive.exists(key)
            if not handed_over:
                fh.truncate(info.offset)  # an unrecorded tail must not reach the archive
                os.fsync(fh.fileno())
        if handed_over:
            data.unlink()
            return key
        content_type = content_type_of(info.metadata)
        if isinstance(archive, FileAdopter):
            archive.adopt(data, key, content_type=content_type)
        else:
            with data.open("rb") as source:
                archive.put(key, source, content_type=content_type)
            data.unlink()
        return key

    def _require_archive(self) -> ArchiveStore:
        if self._archive is None:
            raise ConfigurationError("this upload store has no archive to finish uploads into")
        return self._archive

    def terminate(self, upload_id: str) -> None:
        folder = self._folder(upload_id)
        if not self._info_path(upload_id).exists():
            raise TusError(TusErrorKind.NOT_FOUND, detail=upload_id)
        if self._archive is not None:
            with contextlib.suppress(NotFound):
                self._archive.delete(incoming_key(upload_id))
        self._info_path(upload_id).unlink()  # gone for readers before the data goes
        shutil.rmtree(folder, ignore_errors=True)

    def list_uploads(self) -> Iterator[UploadInfo]:
        for entry in sorted(self.root.iterdir()):
            if not is_upload_id(entry.name) or not entry.is_dir():
                continue
            with contextlib.suppress(TusError):  # terminated while we list
                yield self.get(entry.name)

    def purge_orphans(self, older_than: datetime) -> int:
        """Remove upload folders without a sidecar (a crash inside :meth:`create` or
        :meth:`concatenate`) whose newest file is older than ``older_than``."""
        cutoff = older_than.timestamp()
        removed = 0
        for entry in self.root.iterdir():
            if not is_upload_id(entry.name) or not entry.is_dir() or entry.is_symlink():
                continue
            if self._info_path(entry.name).exists():
                continue
            try:
                newest = max(p.stat().st_mtime for p in (entry, *entry.iterdir()))
            except FileNotFoundError:
                continue
            if newest < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        return removed


__all__ = [
    "INCOMING_PREFIX",
    "FileAdopter",
    "LocalUploadStore",
    "UploadStore",
    "content_type_of",
    "incoming_key",
    "info_from_json",
    "info_to_json",
    "is_upload_id",
    "new_upload_id",
]
