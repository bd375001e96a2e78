"""The :class:`~hybridvideo.catalog.base.Catalog` on SQLAlchemy (SQLite or PostgreSQL).

Each public method is one short transaction with its own session, so no ORM object, lazy
load or open transaction outlives a call: callers get frozen domain values. Driver errors
are translated once, by :func:`~hybridvideo.catalog.sql.engine.translate_errors`, so
nothing above this module sees SQLAlchemy.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from types import EllipsisType
from typing import Any

from sqlalchemy import ColumnElement, Engine, Select, and_, func, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, contains_eager

from hybridvideo.catalog.base import VideoEvent, VideoPage
from hybridvideo.catalog.sql.engine import (
    NOT_MIGRATED,
    Transactions,
    driver_text,
    translate_errors,
)
from hybridvideo.catalog.sql.migrate import head_revision, revision_of
from hybridvideo.catalog.sql.models import (
    MigrationItemRow,
    Video,
    VideoEventRow,
    VideoSpec,
    new_id,
    utcnow,
)
from hybridvideo.domain.keys import validate_key
from hybridvideo.domain.video import (
    NewVideo,
    ScanCursor,
    ScanSummary,
    StreamStatus,
    VideoChanges,
    VideoFilter,
    VideoScan,
    VideoState,
    check_transition,
    validate_collection,
    validate_owner_id,
    validate_page,
    validate_title,
)
from hybridvideo.errors import BackendUnavailable, Conflict, InvalidInput, NotFound

MAX_PAGE = 200
MAX_SCAN_PAGE = 1000
MAX_SCAN_IDS = 10_000
#: Bounds on what Stream may report about a video: 100 hours, 16K, 1 TB.
MAX_DURATION = 360_000.0
MAX_DIMENSION = 16_384
MAX_SIZE = 10**12

_SHA256 = re.compile(r"[0-9a-f]{64}")


def _check_length(name: str, value: str | None, maximum: int, *, required: bool = False) -> None:
    if value is None:
        if required:
            raise InvalidInput(f"{name} is required")
        return
    if (required and not value) or len(value) > maximum:
        raise InvalidInput(f"{name} must be {int(required)}-{maximum} characters")


def _check_media(
    duration: float | None, width: int | None, height: int | None, size: int | None
) -> None:
    if duration is not None and not 0 < duration <= MAX_DURATION:
        raise InvalidInput(f"duration must be between 0 and {MAX_DURATION:.0f} seconds")
    for name, value in (("width", width), ("height", height)):
        if value is not None and not 0 < value <= MAX_DIMENSION:
            raise InvalidInput(f"{name} must be between 1 and {MAX_DIMENSION}")
    if size is not None and not 0 < size <= MAX_SIZE:
        raise InvalidInput(f"size must be between 1 and {MAX_SIZE} bytes")


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _scan_conditions(scan: VideoScan) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if scan.collection is not None:
        conditions.append(Video.collection == scan.collection)
    if scan.key_prefix:
        pattern = f"{_escape_like(scan.key_prefix)}%"
        conditions.append(VideoSpec.archive_key.like(pattern, escape="\\"))
    if scan.created_after is not None:
        conditions.append(Video.created_at > scan.created_after)
    if scan.created_before is not None:
        conditions.append(Video.created_at < scan.created_before)
    if scan.statuses is not None:
        values = sorted(StreamStatus(s).value for s in scan.statuses)
        conditions.append(VideoSpec.stream_status.in_(values))
    if scan.has_stream_uid is not None:
        has = VideoSpec.stream_uid.is_not(None)
        conditions.append(has if scan.has_stream_uid else VideoSpec.stream_uid.is_(None))
    if scan.video_ids is not None:
        if len(scan.video_ids) > MAX_SCAN_IDS:
            raise InvalidInput(f"at most {MAX_SCAN_IDS} video ids per scan")
        conditions.append(Video.id.in_(sorted(scan.video_ids)))
    if scan.in_run is not None:
        run_id, outcome = scan.in_run
        conditions.append(
            Video.id.in_(
                select(MigrationItemRow.video_id).where(
                    MigrationItemRow.run_id == run_id, MigrationItemRow.outcome == outcome
                )
            )
        )
    return conditions


def _videos() -> Select[Video]:
    # One explicit join serves filtering, ordering and loading the spec.
    return select(Video).join(Video.spec).options(contains_eager(Video.spec))


class SqlCatalog:
    """The catalog on a SQLAlchemy :class:`Engine` made by ``create_catalog_engine``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._tx = Transactions(engine)

    # -- reads ---------------------------------------------------------------------------

    def get_video(self, video_id: str) -> VideoState:
        with self._tx() as session:
            return self._load(session, video_id).to_state()

    def find_by_sha256(self, sha256: str) -> VideoState | None:
        with self._tx() as session:
            video = session.scalar(_videos().where(VideoSpec.sha256 == sha256.lower()))
            return None if video is None else video.to_state()

    def find_by_archive_key(self, bucket: str, key: str) -> VideoState | None:
        if not bucket or len(bucket) > 255 or not key or len(key) > 1024:
            return None  # longer than the columns: nothing stored can match
        with self._tx() as session:
            video = session.scalar(
                _videos().where(VideoSpec.archive_bucket == bucket, VideoSpec.archive_key == key)
            )
            return None if video is None else video.to_state()

    def find_by_stream_uid(self, stream_uid: str) -> VideoState | None:
        if not stream_uid or len(stream_uid) > 64:
            return None  # no stored uid can match (the column holds at most 64 characters)
        with self._tx() as session:
            video = session.scalar(_videos().where(VideoSpec.stream_uid == stream_uid))
            return None if video is None else video.to_state()

    def list_videos(self, flt: VideoFilter) -> VideoPage:
        validate_page(flt.limit, flt.offset, max_limit=MAX_PAGE)
        conditions: list[ColumnElement[bool]] = []
        if flt.collection is not None:
            conditions.append(Video.collection == flt.collection)
        if flt.status is not None:
            conditions.append(VideoSpec.stream_status == StreamStatus(flt.status).value)
        if flt.query and flt.query.strip():
            pattern = f"%{_escape_like(flt.query.strip())}%"
            conditions.append(Video.title.ilike(pattern, escape="\\"))
        with self._tx() as session:
            total = session.scalar(
                select(func.count()).select_from(Video).join(Video.spec).where(*conditions)
            )
            rows = session.scalars(
                _videos()
                .where(*conditions)
                .order_by(Video.created_at.desc(), Video.id.desc())
                .limit(flt.limit)
                .offset(flt.offset)
            )
            return VideoPage(items=[v.to_state() for v in rows], total=int(total or 0))

    def scan_videos(
        self, scan: VideoScan, *, after: ScanCursor | None = None, limit: int = 500
    ) -> list[VideoState]:
        if not 1 <= limit <= MAX_SCAN_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_SCAN_PAGE}")
        conditions = _scan_conditions(scan)
        if after is not None:
            at, last_id = after
            conditions.append(
                or_(Video.created_at > at, and_(Video.created_at == at, Video.id > last_id))
            )
        with self._tx() as session:
            rows = session.scalars(
                _videos().where(*conditions).order_by(Video.created_at, Video.id).limit(limit)
            )
            return [v.to_state() for v in rows]

    def summarize(self, scan: VideoScan) -> ScanSummary:
        query = (
            select(
                func.count(),
                func.coalesce(func.sum(VideoSpec.duration_seconds), 0.0),
                func.count(VideoSpec.duration_seconds),
                func.coalesce(func.sum(VideoSpec.size_bytes), 0),
            )
            .select_from(Video)
            .join(Video.spec)
            .where(*_scan_conditions(scan))
        )
        with self._tx() as session:
            count, duration, known, size = session.execute(query).one()
        return ScanSummary(
            count=int(count),
            duration_seconds=float(duration or 0.0),
            unknown_duration=int(count) - int(known),
            size_bytes=int(size or 0),
        )

    def events(self, video_id: str) -> list[VideoEvent]:
        with self._tx() as session:
            self._require(session, video_id)
            rows = session.scalars(
                select(VideoEventRow)
                .where(VideoEventRow.video_id == video_id)
                .order_by(VideoEventRow.id)
            )
            return [r.to_event() for r in rows]

    def ping(self) -> None:
        with translate_errors(), self._engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            current = revision_of(connection)
        head = head_revision()
        if current != head:
            raise BackendUnavailable(
                NOT_MIGRATED, detail=f"database is at {current!r}, this release needs {head!r}"
            )

    # -- writes --------------------------------------------------------------------------

    def add_video(self, new: NewVideo) -> VideoState:
        title = validate_title(new.title)
        collection = validate_collection(new.collection)
        validate_key(new.archive_key)
        _check_length("archive bucket", new.archive_bucket, 255, required=True)
        _check_length("video id", new.id, 36, required=new.id is not None)
        validate_owner_id(new.owner_id)
        _check_length("thumbnail url", new.thumbnail_url, 2048)
        _check_length("format", new.media.format, 64)
        sha256 = new.media.sha256.lower()
        if not _SHA256.fullmatch(sha256):
            raise InvalidInput("sha256 must be 64 hexadecimal characters")
        if new.media.size < 0:
            raise InvalidInput("size must not be negative")
        video_id = new.id or new_id()
        try:
            with self._tx(write=True) as session:
                self._raise_if_taken(session, video_id, sha256, new)
                now = utcnow()
                video = Video(
                    id=video_id,
                    title=title,
                    collection=collection,
                    owner_id=new.owner_id,
                    pinned=False,
                    created_at=now,
                    updated_at=now,
                )
                video.spec = VideoSpec(
                    archive_bucket=new.archive_bucket,
                    archive_key=new.archive_key,
                    thumbnail_url=new.thumbnail_url,
                    stream_status=StreamStatus.NOT_DELIVERED.value,
                    size_bytes=new.media.size,
                    format=new.media.format,
                    duration_seconds=new.media.duration,
                    width=new.media.width,
                    height=new.media.height,
                    sha256=sha256,
                    created_at=now,
                    updated_at=now,
                )
                session.add(video)
                session.flush()
                data = {"bucket": new.archive_bucket, "key": new.archive_key, "sha256": sha256}
                self._record(session, video_id, "created", data)
                return video.to_state()
        except IntegrityError as exc:
            # A concurrent add won the race after our pre-check: name what it took.
            with self._tx() as session:
                self._raise_if_taken(session, video_id, sha256, new)
            raise Conflict("video clashes with an existing one", detail=driver_text(exc)) from exc

    def record_event(self, video_id: str, kind: str, data: dict[str, Any]) -> VideoEvent:
        _check_length("event kind", kind, 64, required=True)
        try:
            json.dumps(data)
        except (TypeError, ValueError) as exc:
            raise InvalidInput("event data must be JSON-serialisable", detail=str(exc)) from exc
        with self._tx(write=True) as session:
            self._require(session, video_id)
            row = self._record(session, video_id, kind, data)
            session.flush()  # assigns the id
            return row.to_event()

    def update_video(self, video_id: str, changes: VideoChanges) -> VideoState:
        wanted: dict[str, object] = {}
        if changes.title is not None:
            wanted["title"] = validate_title(changes.title)
        if changes.collection is not None:
            wanted["collection"] = validate_collection(changes.collection)
        if changes.pinned is not None:
            wanted["pinned"] = bool(changes.pinned)
        if changes.owner_id is not None:
            validate_owner_id(changes.owner_id)
            wanted["owner_id"] = changes.owner_id
        with self._tx(write=True) as session:
            video = self._load(session, video_id, lock=True)
            changed = [name for name, value in wanted.items() if getattr(video, name) != value]
            if changed:
                for name in changed:
                    setattr(video, name, wanted[name])
                video.updated_at = utcnow()
                self._record(session, video_id, "edited", {"fields": changed})
                session.flush()
            return video.to_state()

    def set_stream_status(
        self,
        video_id: str,
        status: StreamStatus,
        *,
        stream_uid: str | None = None,
        error: str | None = None,
        note: tuple[str, dict[str, Any]] | None = None,
        expected_uid: str | None | EllipsisType = ...,
        modified: datetime | None = None,
    ) -> VideoState:
        status = StreamStatus(status)
        if stream_uid is not None:
            _check_length("stream uid", stream_uid, 64, required=True)
        try:
            with self._tx(write=True) as session:
                video = self._load(session, video_id, lock=True)
                spec = video.spec
                if expected_uid is not ... and spec.stream_uid != expected_uid:
                    raise Conflict(
                        "the video's Stream copy changed meanwhile",
                        detail=f"expected {expected_uid}, found {spec.stream_uid}",
                    )
                current = StreamStatus(spec.stream_status)
                uid = spec.stream_uid if stream_uid is None else stream_uid
                if (
                    modified is not None
                    and uid == spec.stream_uid
                    and spec.stream_modified is not None
                    and modified < spec.stream_modified
                ):
                    return video.to_state()  # an older report about the same copy
                check_transition(current, status)
                reason: str | None = None
                if status == StreamStatus.ERROR:
                    # A repeated ERROR without a reason keeps the one already recorded.
                    keep = spec.stream_error if current == StreamStatus.ERROR else None
                    reason = error if error is not None else keep
                if uid != spec.stream_uid:
                    spec.stream_modified = None  # a new copy: its reports start afresh
                if modified is not None:
                    spec.stream_modified = modified
                if (status, uid, reason) == (current, spec.stream_uid, spec.stream_error):
                    if note is not None:
                        self._record(session, video_id, note[0], note[1])
                    return video.to_state()
                if uid is not None and uid != spec.stream_uid:
                    self._raise_if_uid_taken(session, video_id, uid)
                now = utcnow()
                spec.stream_status, spec.stream_uid, spec.stream_error = status.value, uid, reason
                spec.updated_at = video.updated_at = now
                data = {"from": current.value, "to": status.value, "stream_uid": uid}
                self._record(session, video_id, "stream_status", {**data, "error": reason})
                if note is not None:
                    self._record(session, video_id, note[0], note[1])
                session.flush()
                return video.to_state()
        except IntegrityError as exc:
            raise Conflict(
                "stream uid already belongs to another video", detail=driver_text(exc)
            ) from exc

    def update_media(
        self,
        video_id: str,
        *,
        duration: float | None = None,
        width: int | None = None,
        height: int | None = None,
        size: int | None = None,
    ) -> VideoState:
        _check_media(duration, width, height, size)
        with self._tx(write=True) as session:
            video = self._load(session, video_id, lock=True)
            spec = video.spec
            wanted = {
                "duration_seconds": duration,
                "width": width,
                "height": height,
                "size_bytes": size,
            }
            changed = {k: v for k, v in wanted.items() if v is not None and getattr(spec, k) != v}
            if not changed:
                return video.to_state()
            for name, value in changed.items():
                setattr(spec, name, value)
            spec.updated_at = video.updated_at = utcnow()
            self._record(session, video_id, "media", changed)
            session.flush()
            return video.to_state()

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _load(session: Session, video_id: str, *, lock: bool = False) -> Video:
        query = _videos().where(Video.id == video_id)
        if lock:  # Row lock on PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises.
            query = query.with_for_update()
        video = session.scalar(query)
        if video is None:
            raise NotFound(f"video {video_id} not found")
        return video

    @staticmethod
    def _require(session: Session, video_id: str) -> None:
        if session.scalar(select(Video.id).where(Video.id == video_id)) is None:
            raise NotFound(f"video {video_id} not found")

    @staticmethod
    def _record(session: Session, video_id: str, kind: str, data: dict[str, Any]) -> VideoEventRow:
        row = VideoEventRow(video_id=video_id, kind=kind, data=dict(data), created_at=utcnow())
        session.add(row)
        return row

    @staticmethod
    def _raise_if_taken(session: Session, video_id: str, sha256: str, new: NewVideo) -> None:
        if session.get(Video, video_id) is not None:
            raise Conflict(f"a video with id {video_id} already exists")
        owner = session.scalar(select(VideoSpec.video_id).where(VideoSpec.sha256 == sha256))
        if owner is not None:
            raise Conflict(f"a video with this sha256 already exists: {owner}")
        owner = session.scalar(
            select(VideoSpec.video_id).where(
                VideoSpec.archive_bucket == new.archive_bucket,
                VideoSpec.archive_key == new.archive_key,
            )
        )
        if owner is not None:
            raise Conflict(f"a video with this archive key already exists: {owner}")

    @staticmethod
    def _raise_if_uid_taken(session: Session, video_id: str, uid: str) -> None:
        owner = session.scalar(
            select(VideoSpec.video_id).where(
                VideoSpec.stream_uid == uid, VideoSpec.video_id != video_id
            )
        )
        if owner is not None:
            raise Conflict(f"stream uid {uid} already belongs to video {owner}")
