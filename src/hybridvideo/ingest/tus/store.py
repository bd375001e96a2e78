"""Where tus uploads live while they are being written: a small contract and a local store.

The contract follows tusd's data store in spirit. The offset recorded in the info is the
truth: bytes are made durable (``fsync``) *before* the new offset is recorded, so a crash
can leave unrecorded bytes at the end of the data file but never a recorded offset
without its bytes. Such a tail is cut off before the next write.

A write can be made conditional on a checksum of the bytes it receives: the bytes are
appended, and the offset only moves once the digest matches; otherwise the file is cut
back and 460 is raised, so the chunk is discarded and the offset is unchanged.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from hybridvideo.ingest.tus.protocol import TusError, TusErrorKind, UploadInfo, new_hasher

_ID = re.compile(r"[0-9a-f]{32}")


def new_upload_id() -> str:
    """A random 32-hex upload id (128 bits: not guessable, safe in paths and URLs)."""
    return secrets.token_hex(16)


def is_upload_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None


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


def _info_to_json(info: UploadInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "offset": info.offset,
        "length": info.length,
        "created_at": info.created_at.isoformat(),
        "metadata_raw": info.metadata_raw,
        "metadata": dict(info.metadata),
    }


def _info_from_json(data: dict[str, Any]) -> UploadInfo:
    return UploadInfo(
        id=str(data["id"]),
        offset=int(data["offset"]),
        length=None if data["length"] is None else int(data["length"]),
        created_at=datetime.fromisoformat(str(data["created_at"])),
        metadata_raw=data["metadata_raw"],
        metadata=dict(data["metadata"]),
    )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalUploadStore:
    """Uploads on a local disk: ``<root>/<id>/<id>.bin`` and an ``<id>.json`` sidecar.

    The sidecar is replaced atomically (write a temporary file, fsync, rename). Only
    32-hex ids are accepted, so an id can never escape ``root``.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

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
            json.dump(_info_to_json(info), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    def create(self, info: UploadInfo) -> UploadInfo:
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
        except FileNotFoundError as exc:
            raise TusError(TusErrorKind.NOT_FOUND, detail=upload_id) from exc
        return _info_from_json(json.loads(text))

    def declare_length(self, upload_id: str, length: int) -> UploadInfo:
        info = self.get(upload_id)
        if info.length is not None and info.length != length:
            raise TusError(TusErrorKind.INVALID_LENGTH, detail="length is already set")
        if length < info.offset:
            raise TusError(TusErrorKind.INVALID_LENGTH, detail="length below the offset")
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
    ) -> int:
        info = self.get(upload_id)
        if offset != info.offset:
            raise TusError(TusErrorKind.OFFSET_MISMATCH, detail=f"{offset} != {info.offset}")
        hasher = new_hasher(checksum[0]) if checksum is not None else None
        written = 0
        with self.data_path(upload_id).open("r+b") as fh:
            fh.truncate(offset)  # drop an unrecorded tail left by a crash or a failed chunk
            fh.seek(offset)
            try:
                for chunk in chunks:
                    if limit is not None and written + len(chunk) > limit:
                        raise TusError(TusErrorKind.SIZE_EXCEEDED, detail=f"over {limit}")
                    fh.write(chunk)
                    written += len(chunk)
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
                self._commit(fh.fileno(), info, written)
                raise
            return self._commit(fh.fileno(), info, written)

    def _commit(self, fd: int, info: UploadInfo, written: int) -> int:
        os.fsync(fd)  # durable first ...
        if written:
            self._save(replace(info, offset=info.offset + written))  # ... then recorded
        return info.offset + written

    def terminate(self, upload_id: str) -> None:
        folder = self._folder(upload_id)
        if not self._info_path(upload_id).exists():
            raise TusError(TusErrorKind.NOT_FOUND, detail=upload_id)
        self._info_path(upload_id).unlink()  # gone for readers before the data goes
        shutil.rmtree(folder, ignore_errors=True)


__all__ = ["LocalUploadStore", "UploadStore", "is_upload_id", "new_upload_id"]
