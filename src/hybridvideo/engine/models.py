"""The engine's tables (videos, signing keys, webhook, deliveries) and the values they yield.

They belong to the built-in Stream engine, not to the catalog: every table is prefixed
``engine_``, has its own :class:`EngineBase` metadata and its own Alembic history (version
table ``alembic_version_engine``), so the engine can share the catalog's database or live
in one of its own, and each side migrates without knowing the other.

What is stored mirrors Cloudflare's Video object field for field (``pct_complete`` stays a
string because Cloudflare sends ``"39.000000"``; ``-1`` means unknown for duration and
picture size, as in Cloudflare's schema), so :mod:`hybridvideo.engine.shapes` is a plain
rename. ``name`` is the one addition: a copy of ``meta["name"]`` kept by the store, because
the list's ``search`` filter needs a column both SQLite and PostgreSQL can ``LIKE``
without JSON operators.

The ORM classes never leave :mod:`hybridvideo.engine.store`: it hands out what their
``to_value`` returns, the frozen dataclasses below, and takes :class:`VideoEdit` and
:class:`VideoQuery` in. The migration in ``engine/migrations/versions`` is a frozen copy of
this schema.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import Enum
from typing import Any, TypedDict

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hybridvideo.catalog.sql.models import NAMING_CONVENTION, UtcDateTime, utcnow

#: Cloudflare's ``status.state`` values (Python SDK 5.9.0 lists all seven).
VIDEO_STATES: tuple[str, ...] = (
    "pendingupload",
    "downloading",
    "queued",
    "inprogress",
    "ready",
    "error",
    "live-inprogress",
)

#: The most videos one list call returns (Cloudflare's limit).
MAX_LIST = 1000
#: A webhook delivery is waiting, done, or given up on.
DELIVERY_STATES: tuple[str, ...] = ("pending", "delivered", "failed")


class Unset(Enum):
    """Marks an edit field as "leave alone", so ``None`` can mean "clear"."""

    UNSET = "unset"


UNSET = Unset.UNSET


@dataclass(frozen=True)
class EngineVideo:
    uid: str
    account_id: str
    creator: str | None
    meta: dict[str, Any]
    state: str
    pct_complete: str | None
    error_reason_code: str | None
    error_reason_text: str | None
    require_signed_urls: bool
    allowed_origins: tuple[str, ...]
    thumbnail_timestamp_pct: float
    scheduled_deletion: datetime | None
    upload_expiry: datetime | None
    max_duration_seconds: int | None
    duration: float
    width: int
    height: int
    size: int
    ready_to_stream: bool
    ready_to_stream_at: datetime | None
    source_url: str | None
    media_manifest: dict[str, Any] | None
    created: datetime
    modified: datetime
    uploaded: datetime | None


class NewVideo(TypedDict, total=False):
    """What a new video may start with (keyword arguments of ``create_video``)."""

    uid: str
    state: str
    creator: str | None
    meta: Mapping[str, Any]
    require_signed_urls: bool
    allowed_origins: Sequence[str]
    thumbnail_timestamp_pct: float
    scheduled_deletion: datetime | None
    upload_expiry: datetime | None
    max_duration_seconds: int | None
    source_url: str | None


@dataclass(frozen=True)
class VideoEdit:
    """A partial edit: only the fields given (not :data:`UNSET`) change."""

    creator: str | None | Unset = UNSET
    meta: Mapping[str, Any] | Unset = UNSET
    require_signed_urls: bool | Unset = UNSET
    allowed_origins: Sequence[str] | Unset = UNSET
    thumbnail_timestamp_pct: float | Unset = UNSET
    scheduled_deletion: datetime | None | Unset = UNSET
    upload_expiry: datetime | None | Unset = UNSET
    max_duration_seconds: int | None | Unset = UNSET


@dataclass(frozen=True)
class VideoQuery:
    """The list endpoint's filters; ``after``/``before`` are exclusive creation-time cursors."""

    after: datetime | None = None
    before: datetime | None = None
    asc: bool = False
    limit: int = MAX_LIST
    status: str | None = None
    search: str | None = None
    creator: str | None = None
    uids: tuple[str, ...] | None = None
    video_name: str | None = None


@dataclass(frozen=True)
class EngineKey:
    id: str
    account_id: str
    public_jwk: dict[str, Any]
    created: datetime
    revoked_at: datetime | None
    #: Only on the engine's own ``/token`` key; never part of an API answer.
    private_pem: str | None = field(default=None, repr=False)

    @property
    def internal(self) -> bool:
        return self.private_pem is not None


@dataclass(frozen=True)
class Webhook:
    account_id: str
    notification_url: str
    secret: str
    modified: datetime


@dataclass(frozen=True)
class WebhookDelivery:
    id: str
    account_id: str
    video_uid: str
    url: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created: datetime
    delivered_at: datetime | None


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


class EngineBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class EngineVideoRow(EngineBase):
    __tablename__ = "engine_videos"
    __table_args__ = (
        CheckConstraint(_in("state", VIDEO_STATES), name="state"),
        # The list endpoint walks one account's videos by creation time, uid breaking ties.
        Index("ix_engine_videos_account_id_created", "account_id", "created", "uid"),
    )

    uid: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64))
    creator: Mapped[str | None] = mapped_column(String(64), index=True)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    name: Mapped[str | None] = mapped_column(String(1024))
    state: Mapped[str] = mapped_column(String(32), index=True)
    pct_complete: Mapped[str | None] = mapped_column(String(16))
    error_reason_code: Mapped[str | None] = mapped_column(String(64))
    error_reason_text: Mapped[str | None] = mapped_column(Text)
    require_signed_urls: Mapped[bool] = mapped_column(default=False, server_default=false())
    allowed_origins: Mapped[list[Any]] = mapped_column(default=list)
    thumbnail_timestamp_pct: Mapped[float] = mapped_column(Float, default=0.0)
    scheduled_deletion: Mapped[datetime | None]
    upload_expiry: Mapped[datetime | None]
    max_duration_seconds: Mapped[int | None] = mapped_column(Integer)
    duration: Mapped[float] = mapped_column(Float, default=-1.0)
    width: Mapped[int] = mapped_column(Integer, default=-1)
    height: Mapped[int] = mapped_column(Integer, default=-1)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    ready_to_stream: Mapped[bool] = mapped_column(default=False, server_default=false())
    ready_to_stream_at: Mapped[datetime | None]
    source_url: Mapped[str | None] = mapped_column(Text)
    media_manifest: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    modified: Mapped[datetime] = mapped_column(default=utcnow)
    uploaded: Mapped[datetime | None]

    def to_value(self) -> EngineVideo:
        values = {f.name: getattr(self, f.name) for f in fields(EngineVideo)}
        values["meta"] = dict(self.meta or {})
        values["allowed_origins"] = tuple(self.allowed_origins or ())
        manifest = self.media_manifest
        values["media_manifest"] = None if manifest is None else dict(manifest)
        return EngineVideo(**values)


class EngineKeyRow(EngineBase):
    """A signing key's public half; ``private_pem`` is set only on the engine's own key.

    Keys made through ``POST /keys`` are shown to the caller once and only their public JWK
    is kept. The one key per account that ``POST /{uid}/token`` signs with is the engine's
    own, so its private PEM is stored (the only private material in these tables).
    """

    __tablename__ = "engine_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64), index=True)
    public_jwk: Mapped[dict[str, Any]] = mapped_column()
    private_pem: Mapped[str | None] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]

    def to_value(self) -> EngineKey:
        return EngineKey(
            self.id,
            self.account_id,
            dict(self.public_jwk),
            self.created,
            self.revoked_at,
            self.private_pem,
        )


class EngineWebhookRow(EngineBase):
    """Cloudflare allows one webhook subscription per account, hence the key."""

    __tablename__ = "engine_webhooks"

    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    notification_url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(128))
    modified: Mapped[datetime] = mapped_column(default=utcnow)

    def to_value(self) -> Webhook:
        return Webhook(self.account_id, self.notification_url, self.secret, self.modified)


class EngineWebhookDeliveryRow(EngineBase):
    """One notification about one video to one URL, with its attempts so far."""

    __tablename__ = "engine_webhook_deliveries"
    __table_args__ = (CheckConstraint(_in("state", DELIVERY_STATES), name="state"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64), index=True)
    video_uid: Mapped[str] = mapped_column(String(32), index=True)
    url: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]

    def to_value(self) -> WebhookDelivery:
        return WebhookDelivery(**{f.name: getattr(self, f.name) for f in fields(WebhookDelivery)})


__all__ = [
    "DELIVERY_STATES",
    "MAX_LIST",
    "UNSET",
    "VIDEO_STATES",
    "EngineBase",
    "EngineKey",
    "EngineKeyRow",
    "EngineVideo",
    "EngineVideoRow",
    "EngineWebhookDeliveryRow",
    "EngineWebhookRow",
    "NewVideo",
    "Unset",
    "VideoEdit",
    "VideoQuery",
    "Webhook",
    "WebhookDelivery",
]
