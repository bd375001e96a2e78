"""Add a master file: probe it, archive it, catalog it.

The order is chosen so a crash at any point loses nothing and repeats safely:

1. validate every field and probe the file (nothing stored yet; a non-video is refused);
2. put the master under a content-addressed key ``masters/<sha[:2]>/<sha><ext>``, so a retry
   after a crash writes the same object again instead of leaving an orphan beside it. The
   bytes are hashed again *as they are stored*: if the file changed since the probe (still
   being copied, rewritten), the reader fails at EOF, before the store commits, so no
   object ever holds bytes that differ from its key;
3. record the catalog row. A master that is already cataloged is reported, not duplicated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast
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
from hybridvideo.errors import Conflict

#: Content types by probed container; anything else is stored as opaque bytes.
CONTENT_TYPES = {
    "mp4": "video/mp4",
    "m4v": "video/mp4",
    "mov": "video/quicktime",
    "webm": "video/webm",
    "mkv": "video/x-matroska",
    "matroska": "video/x-matroska",
    "avi": "video/x-msvideo",
    "mpegts": "video/mp2t",
    "ts": "video/mp2t",
    "flv": "video/x-flv",
    "3gp": "video/3gpp",
    "ogg": "video/ogg",
}

Prober = Callable[[Path], MediaInfo]


@dataclass(frozen=True, slots=True)
class AddResult:
    video: VideoState
    created: bool


def thumbnail_key(sha256: str, ext: str = ".jpg") -> str:
    """Where a poster made (or copied) for a master is filed, derivable from its sha256."""
    return f"thumbnails/{sha256[:2]}/{sha256}{ext}"


def master_key(sha256: str, suffix: str) -> str:
    ext = suffix.lower() if suffix and len(suffix) <= 8 and suffix[1:].isalnum() else ""
    return f"masters/{sha256[:2]}/{sha256}{ext}"


class VideoService:
    def __init__(self, *, catalog: Catalog, archive: ArchiveStore, prober: Prober) -> None:
        self._catalog = catalog
        self._archive = archive
        self._probe = prober

    def add_file(
        self,
        path: Path,
        *,
        title: str | None = None,
        collection: str = DEFAULT_COLLECTION,
        owner_id: str | None = None,
    ) -> AddResult:
        clean_title = validate_title(title if title is not None else path.stem)
        validate_collection(collection)
        validate_owner_id(owner_id)
        media = self._probe(path)
        existing = self._catalog.find_by_sha256(media.sha256)
        if existing is not None:
            return AddResult(existing, created=False)
        key = master_key(media.sha256, path.suffix)
        if not self._archive.exists(key):
            content_type = CONTENT_TYPES.get(media.format, "application/octet-stream")
            with path.open("rb") as fh:
                self._archive.put(
                    key,
                    cast(
                        BinaryIO,
                        VerifyingReader(fh, size=media.size, sha256=media.sha256, name=path.name),
                    ),
                    content_type=content_type,
                    metadata={"sha256": media.sha256, "filename": quote(path.name)},
                )
        new = NewVideo(
            title=clean_title,
            collection=collection,
            archive_bucket=self._archive.bucket,
            archive_key=key,
            media=media,
            owner_id=owner_id,
        )
        try:
            return AddResult(self._catalog.add_video(new), created=True)
        except Conflict:
            # Another process cataloged the same master between our check and insert.
            raced = self._catalog.find_by_sha256(media.sha256)
            if raced is None:
                raise
            return AddResult(raced, created=False)


class VerifyingReader:
    """A read-only stream that fails at EOF unless the bytes match the probed size and hash.

    Stores commit only after reading to EOF, so raising there leaves nothing behind.
    """

    def __init__(self, raw: BinaryIO, *, size: int, sha256: str, name: str) -> None:
        self._raw = raw
        self._size = size
        self._sha256 = sha256
        self._name = name
        self._seen = 0
        self._digest = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        chunk = self._raw.read(n)
        self._seen += len(chunk)
        self._digest.update(chunk)
        if self._seen > self._size or (
            not chunk and (self._seen != self._size or self._digest.hexdigest() != self._sha256)
        ):
            raise Conflict(f"{self._name} changed while it was being added; try again")
        return chunk
