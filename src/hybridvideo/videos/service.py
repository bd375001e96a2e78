"""Add a master file: probe it, archive it, catalog it.

The order is chosen so a crash at any point loses nothing and repeats safely:

1. probe (nothing stored yet; a non-video is refused here);
2. put the master under a content-addressed key ``masters/<sha[:2]>/<sha><ext>``, so a retry
   after a crash writes the same object again instead of leaving an orphan beside it;
3. record the catalog row. A master that is already cataloged is reported, not duplicated.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from hybridvideo.archive.base import ArchiveStore
from hybridvideo.catalog.base import Catalog
from hybridvideo.domain.video import (
    DEFAULT_COLLECTION,
    MediaInfo,
    NewVideo,
    VideoState,
    validate_collection,
    validate_title,
)
from hybridvideo.errors import Conflict

Prober = Callable[[Path], MediaInfo]


@dataclass(frozen=True, slots=True)
class AddResult:
    video: VideoState
    created: bool


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
        media = self._probe(path)
        existing = self._catalog.find_by_sha256(media.sha256)
        if existing is not None:
            return AddResult(existing, created=False)
        key = master_key(media.sha256, path.suffix)
        if not self._archive.exists(key):
            content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            with path.open("rb") as fh:
                self._archive.put(
                    key,
                    fh,
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
