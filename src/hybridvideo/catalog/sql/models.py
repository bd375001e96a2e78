"""The catalog's tables as SQLAlchemy typed ORM classes.

These classes never leave :mod:`hybridvideo.catalog.sql`: the repository hands out what
their ``to_state`` / ``to_event`` return, frozen domain values. The migration in
``catalog/migrations/versions`` is a frozen copy of this schema, and a contract test
compares the two, so a change here without a migration fails.

Constraint names come from one naming convention so that migrations on both backends (and
SQLite's batch mode, which recreates tables) can refer to constraints by a stable name.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from hybridvideo.catalog.base import VideoEvent
from hybridvideo.domain.video import StreamStatus, TechnicalSpec, VideoState

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Every status the state machine knows; the CHECK constraint keeps stray strings out even
#: when someone edits rows by hand.
STREAM_STATUS_VALUES: tuple[str, ...] = tuple(s.value for s in StreamStatus)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    PostgreSQL stores ``timestamptz`` and hands back aware values, but SQLite has no
    timezone type and returns naive ones; normalising here means callers compare and
    serialise timestamps the same way on both backends.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("catalog timestamps must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JSON()}


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Video(Timestamps, Base):
    __tablename__ = "videos"
    #: Keyset scans (the migration, reconcile) walk videos oldest first.
    __table_args__ = (Index("ix_videos_created_at_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    title: Mapped[str] = mapped_column(String(300))
    collection: Mapped[str] = mapped_column(String(64), index=True)
    owner_id: Mapped[str | None] = mapped_column(String(128), index=True)
    pinned: Mapped[bool] = mapped_column(default=False, server_default=false())

    spec: Mapped[VideoSpec] = relationship(
        back_populates="video", lazy="joined", innerjoin=True, uselist=False
    )

    def to_state(self) -> VideoState:
        """The frozen domain value; called inside the session, so nothing loads lazily later."""
        spec = self.spec
        return VideoState(
            id=self.id,
            title=self.title,
            collection=self.collection,
            owner_id=self.owner_id,
            pinned=self.pinned,
            created_at=self.created_at,
            updated_at=self.updated_at,
            spec=TechnicalSpec(
                archive_bucket=spec.archive_bucket,
                archive_key=spec.archive_key,
                thumbnail_url=spec.thumbnail_url,
                stream_uid=spec.stream_uid,
                stream_status=StreamStatus(spec.stream_status),
                stream_error=spec.stream_error,
                size=spec.size_bytes,
                format=spec.format,
                duration=spec.duration_seconds,
                width=spec.width,
                height=spec.height,
                sha256=spec.sha256,
            ),
        )


class VideoSpec(Timestamps, Base):
    """The seed's ``VideoTechnicalSpec``: where the master is and where delivery stands."""

    __tablename__ = "video_specs"
    __table_args__ = (
        UniqueConstraint("archive_bucket", "archive_key"),
        CheckConstraint(
            "stream_status IN (" + ", ".join(f"'{v}'" for v in STREAM_STATUS_VALUES) + ")",
            name="stream_status",
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    video_id: Mapped[str] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"), unique=True)
    archive_bucket: Mapped[str] = mapped_column(String(255))
    archive_key: Mapped[str] = mapped_column(String(1024))
    thumbnail_url: Mapped[str | None] = mapped_column(String(2048))
    stream_uid: Mapped[str | None] = mapped_column(String(64), unique=True)
    stream_status: Mapped[str] = mapped_column(
        String(32),
        index=True,
        default=StreamStatus.NOT_DELIVERED.value,
        server_default=StreamStatus.NOT_DELIVERED.value,
    )
    stream_error: Mapped[str | None] = mapped_column(Text)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    format: Mapped[str | None] = mapped_column(String(64))
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    #: Stream's ``modified`` of the last report applied about ``stream_uid``.
    stream_modified: Mapped[datetime | None]

    video: Mapped[Video] = relationship(back_populates="spec")


class Upload(Timestamps, Base):
    """A resumable (tus) upload in progress; becomes a video once the master is archived."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    protocol: Mapped[str] = mapped_column(String(16))
    archive_key: Mapped[str] = mapped_column(String(1024))
    length: Mapped[int | None] = mapped_column(BigInteger)
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    # ``metadata`` is reserved on declarative classes, hence the different attribute name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    state: Mapped[str] = mapped_column(String(16))
    video_id: Mapped[str | None] = mapped_column(ForeignKey("videos.id", ondelete="SET NULL"))
    expires_at: Mapped[datetime | None]


class Job(Timestamps, Base):
    """A background job or migration run, keyed so that a retried job finds its record."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    key: Mapped[str] = mapped_column(String(256), index=True)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_error: Mapped[str | None] = mapped_column(Text)
    video_id: Mapped[str | None] = mapped_column(ForeignKey("videos.id", ondelete="SET NULL"))


class VideoEventRow(Base):
    """An append-only history entry; ``id`` orders events because clocks can tie."""

    __tablename__ = "video_events"

    # SQLite only auto-increments an ``INTEGER PRIMARY KEY`` (the rowid alias).
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    video_id: Mapped[str] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def to_event(self) -> VideoEvent:
        return VideoEvent(
            id=self.id,
            video_id=self.video_id,
            kind=self.kind,
            data=dict(self.data),
            created_at=self.created_at,
        )


class MigrationRunRow(Base):
    """One migration run (:class:`hybridvideo.migrate.journal.MigrationRun`)."""

    __tablename__ = "migration_runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    filters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    total: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    parent_id: Mapped[str | None] = mapped_column(String(36))
    #: Who executes the run now (a token per claim): a process that lost it stops.
    owner: Mapped[str | None] = mapped_column(String(36))


class MigrationItemRow(Base):
    """One video's outcome in a run; ``id`` keeps the order items were first recorded."""

    __tablename__ = "migration_items"
    __table_args__ = (
        UniqueConstraint("run_id", "video_id"),
        Index("ix_migration_items_run_id_outcome", "run_id", "outcome"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    run_id: Mapped[str] = mapped_column(ForeignKey("migration_runs.id", ondelete="CASCADE"))
    video_id: Mapped[str] = mapped_column(String(36))
    outcome: Mapped[str] = mapped_column(String(16))
    stream_uid: Mapped[str | None] = mapped_column(String(64))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    requests: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PlaybackGrantRow(Base):
    """An explicit right to play one video (issue 6's "grants" policy)."""

    __tablename__ = "playback_grants"
    __table_args__ = (UniqueConstraint("video_id", "subject"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    video_id: Mapped[str] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"), index=True)
    #: The viewer's id as the app's identity provider names it (JWT ``sub``).
    subject: Mapped[str] = mapped_column(String(128), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    created_by: Mapped[str | None] = mapped_column(String(128))


class QoeBeaconRow(Base):
    """One player beacon (startup, rebuffer, error, bitrate switch, watch time), as sent.

    Kept raw so the telemetry issue can compute KPIs per cohort later; no foreign key, so
    beacons outlive a deleted video.
    """

    __tablename__ = "qoe_beacons"
    __table_args__ = (Index("ix_qoe_beacons_video_id_received_at", "video_id", "received_at"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    session_id: Mapped[str] = mapped_column(String(64), index=True)
    video_id: Mapped[str | None] = mapped_column(String(36))
    viewer: Mapped[str | None] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    cohort: Mapped[dict[str, Any]] = mapped_column(default=dict)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
