"""Register the masters already in a bucket, so a team that has only a bucket can start.

``hybridvideo archive import --prefix P`` walks ``archive.list(P)`` and catalogs every
master the catalog does not know yet, **at the key it already has**: the bucket is the
team's, so nothing is moved, copied or deleted (the only writes are poster thumbnails
under ``thumbnails/`` and catalog rows).

The key convention, decided per object:

* **Ignored**: keys under our own working folders (``incoming/``, ``thumbnails/``,
  ``.tus/``) and any key whose extension is not a video extension (:data:`VIDEO_EXTENSIONS`:
  ``.mp4 .mov .m4v .webm .mkv .avi .ts .mts .m2ts .mpg .mpeg .flv .3gp .ogv .wmv``):
  sidecars, JSON, subtitles, stray pictures.
* **Master**: a video extension *and* a successful probe (read through ranged GETs, no
  download). A file that only looks like a video is reported *not a video* with the reason.
* **Thumbnail**: the first that exists of ``<key without extension>.jpg|.jpeg|.png|.webp``
  beside the master, then ``thumbnails/<key without extension>.jpg``; otherwise one is
  made like ingest makes it, at ``thumbnails/<sha[:2]>/<sha>.jpg``. The catalog's
  ``thumbnail_url`` is the store's public URL of that image; a matched image the store
  does not serve publicly (a local folder serves only ``thumbnails/``) is copied to
  ``thumbnails/<sha[:2]>/<sha><ext>`` so players can show it.

Each master is read once whole to compute its sha256. The same bytes at a second key are
reported as a *duplicate* of the first and not cataloged (one master, one video). Keys the
catalog already holds are skipped before any byte is read, so a rerun registers nothing
new and costs one listing plus one catalog lookup per master. Imported videos start as
``NOT_DELIVERED``; sending them to Stream is ``hybridvideo videos deliver``.
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any

from hybridvideo.archive.base import ArchiveStore, ObjectInfo
from hybridvideo.catalog.base import Catalog
from hybridvideo.domain.video import (
    DEFAULT_COLLECTION,
    MediaInfo,
    NewVideo,
    validate_collection,
    validate_title,
)
from hybridvideo.errors import Conflict, HybridVideoError, NotAVideo
from hybridvideo.videos.service import thumbnail_key

#: What makes a key a master candidate (lower-cased suffix).
VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4",
        ".mov",
        ".m4v",
        ".webm",
        ".mkv",
        ".avi",
        ".ts",
        ".mts",
        ".m2ts",
        ".mpg",
        ".mpeg",
        ".flv",
        ".3gp",
        ".ogv",
        ".wmv",
    }
)
#: Image extensions a thumbnail beside its master may have, in the order they are tried.
THUMBNAIL_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
#: Our own working folders: never masters.
WORKING_FOLDERS = ("incoming/", "thumbnails/", ".tus/")
IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}
IMAGE_TYPES[".webp"] = "image/webp"

Prober = Callable[..., MediaInfo]
Thumbnailer = Callable[..., bytes]
ReaderFactory = Callable[[ArchiveStore, str, int], Any]


class ImportStatus(StrEnum):
    REGISTERED = "registered"
    KNOWN = "already known"
    NOT_A_VIDEO = "not a video"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class ImportOutcome:
    """What became of one object. ``video_id`` is the new video, the known one, or the
    video that already holds the same bytes (duplicate); ``None`` in a dry run."""

    key: str
    status: ImportStatus
    reason: str | None = None
    video_id: str | None = None
    sha256: str | None = None
    thumbnail_key: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "status": self.status.value,
            "reason": self.reason,
            "video_id": self.video_id,
            "sha256": self.sha256,
            "thumbnail_key": self.thumbnail_key,
        }


@dataclass(slots=True)
class ImportSummary:
    counts: Counter[ImportStatus] = field(default_factory=Counter)
    dry_run: bool = False

    def add(self, outcome: ImportOutcome) -> ImportOutcome:
        self.counts[outcome.status] += 1
        return outcome

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, **{s.value: self.counts[s] for s in ImportStatus}}


def thumbnail_candidates(key: str) -> list[str]:
    """Keys that, if present, are ``key``'s thumbnail, in the order they are tried."""
    stem = key[: -len(PurePosixPath(key).suffix)] if PurePosixPath(key).suffix else key
    return [stem + ext for ext in THUMBNAIL_EXTENSIONS] + [f"thumbnails/{stem}.jpg"]


def is_candidate(key: str) -> bool:
    """A key the convention treats as a possible master (before probing)."""
    if key.startswith(WORKING_FOLDERS) or key.endswith("/"):
        return False
    return PurePosixPath(key).suffix.lower() in VIDEO_EXTENSIONS


class ArchiveImporter:
    def __init__(
        self,
        catalog: Catalog,
        archive: ArchiveStore,
        prober: Prober,
        thumbnailer: Thumbnailer,
        reader: ReaderFactory,
    ) -> None:
        self._catalog = catalog
        self._archive = archive
        self._probe = prober
        self._thumbnail = thumbnailer
        self._reader = reader

    def objects(self, prefix: str) -> list[ObjectInfo]:
        """The listing ``scan`` works through (taken first so progress has a total)."""
        return list(self._archive.list(prefix))

    def scan(
        self,
        prefix: str,
        *,
        dry_run: bool = False,
        collection: str = DEFAULT_COLLECTION,
        limit: int | None = None,
        objects: Iterable[ObjectInfo] | None = None,
        summary: ImportSummary | None = None,
    ) -> Iterator[ImportOutcome]:
        """One outcome per listed object; stops after ``limit`` registrations.

        A dry run hashes and probes (so it reports what would happen) but writes nothing.
        Failures of one object (a vanished key, an unreadable title) are ``ERROR``
        outcomes; the scan goes on.
        """
        validate_collection(collection)
        tally = summary if summary is not None else ImportSummary()
        tally.dry_run = dry_run
        seen: dict[str, str] = {}  # sha256 -> key, for duplicates within a dry run
        registered = 0
        for info in objects if objects is not None else self._archive.list(prefix):
            if limit is not None and registered >= limit:
                return
            try:
                outcome = self._one(info, dry_run=dry_run, collection=collection, seen=seen)
            except NotAVideo as exc:
                outcome = ImportOutcome(info.key, ImportStatus.NOT_A_VIDEO, exc.message)
            except HybridVideoError as exc:
                outcome = ImportOutcome(info.key, ImportStatus.ERROR, exc.message)
            if outcome.status is ImportStatus.REGISTERED:
                registered += 1
            yield tally.add(outcome)

    def _one(
        self, info: ObjectInfo, *, dry_run: bool, collection: str, seen: dict[str, str]
    ) -> ImportOutcome:
        key = info.key
        if not is_candidate(key):
            return ImportOutcome(key, ImportStatus.IGNORED, "not a video by its name")
        bucket = self._archive.bucket
        known = self._catalog.find_by_archive_key(bucket, key)
        if known is not None:
            return ImportOutcome(key, ImportStatus.KNOWN, video_id=known.id)
        size, sha256 = self._hash(key)
        name = PurePosixPath(key).name
        suffix = PurePosixPath(key).suffix
        with self._reader(self._archive, key, size) as reader:
            media = self._probe(reader, name=name, suffix=suffix, size=size, sha256=sha256)
        twin = self._catalog.find_by_sha256(sha256)
        if twin is not None or sha256 in seen:
            where = twin.spec.archive_key if twin is not None else seen[sha256]
            return ImportOutcome(
                key,
                ImportStatus.DUPLICATE,
                f"same bytes as {where}",
                video_id=twin.id if twin is not None else None,
                sha256=sha256,
            )
        seen[sha256] = key
        title = validate_title(PurePosixPath(key).stem or name)
        thumb = self._matched_thumbnail(key)
        if dry_run:
            made = thumb or thumbnail_key(sha256)
            return ImportOutcome(key, ImportStatus.REGISTERED, sha256=sha256, thumbnail_key=made)
        thumb = self._usable_thumbnail(thumb, key, size, sha256, media)
        new = NewVideo(
            title=title,
            collection=collection,
            archive_bucket=bucket,
            archive_key=key,
            media=media,
            thumbnail_url=self._archive.public_url(thumb),
        )
        try:
            video = self._catalog.add_video(new)
        except Conflict:
            # Another import got there between our checks and the insert.
            raced = self._catalog.find_by_archive_key(bucket, key)
            if raced is not None:
                return ImportOutcome(key, ImportStatus.KNOWN, video_id=raced.id)
            twin = self._catalog.find_by_sha256(sha256)
            if twin is None:
                raise
            reason = f"same bytes as {twin.spec.archive_key}"
            return ImportOutcome(key, ImportStatus.DUPLICATE, reason, twin.id, sha256)
        self._catalog.record_event(video.id, "imported", {"key": key, "size": size})
        return ImportOutcome(
            key, ImportStatus.REGISTERED, video_id=video.id, sha256=sha256, thumbnail_key=thumb
        )

    def _hash(self, key: str) -> tuple[int, str]:
        digest = hashlib.sha256()
        size = 0
        for chunk in self._archive.open(key):
            digest.update(chunk)
            size += len(chunk)
        return size, digest.hexdigest()

    def _matched_thumbnail(self, key: str) -> str | None:
        for candidate in thumbnail_candidates(key):
            if self._archive.exists(candidate):
                return candidate
        return None

    def _usable_thumbnail(
        self, matched: str | None, key: str, size: int, sha256: str, media: MediaInfo
    ) -> str:
        """A thumbnail key the store can give a public URL for (made or copied if needed)."""
        if matched is not None:
            if self._archive.public_url(matched) is not None:
                return matched
            ext = PurePosixPath(matched).suffix.lower()
            target = thumbnail_key(sha256, ext)
            if not self._archive.exists(target):
                data = b"".join(self._archive.open(matched))
                self._archive.put(target, io.BytesIO(data), content_type=IMAGE_TYPES.get(ext))
            return target
        target = thumbnail_key(sha256)
        if not self._archive.exists(target):
            with self._reader(self._archive, key, size) as reader:
                jpeg = self._thumbnail(reader, duration=media.duration)
            self._archive.put(target, io.BytesIO(jpeg), content_type="image/jpeg")
        return target


__all__ = [
    "THUMBNAIL_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "ArchiveImporter",
    "ImportOutcome",
    "ImportStatus",
    "ImportSummary",
    "is_candidate",
    "thumbnail_candidates",
]
