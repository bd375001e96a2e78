"""Cloudflare Stream's JSON shapes: the answers, made from stored values, and the requests.

No web framework here. The answers are pure functions; the API wraps them in Cloudflare's
envelope,
the webhook job posts :func:`video_json` bare (Cloudflare's webhook body is the Video
object itself), so a client that parses Cloudflare's answers parses ours unchanged, the
official SDK's typed models included.

Choices the public schema leaves open, kept the same everywhere:

* Timestamps are RFC 3339 in UTC with a ``Z`` and microseconds (Cloudflare prints
  nanoseconds; the SDK and ``datetime.fromisoformat`` read both).
* ``thumbnail`` and ``preview`` are omitted until the video is playable
  (``readyToStream``), as the schema says ("omitted until encoding is complete"), even
  though Cloudflare's own upload-via-link example shows them earlier: a URL that does not
  work yet is worse than no URL.
* ``status`` always carries ``state``; ``pctComplete`` once known; ``errorReasonCode`` and
  ``errorReasonText`` are empty strings except in ``error`` (the schema: "This field is
  empty if the video is not in an error state").
* ``maxSizeBytes`` is 0 and ``maxDurationSeconds`` 0 unless set, as in Cloudflare's
  upload-via-link example; ``watermark`` is null (the engine has no watermark profiles).

The request bodies are pydantic models with Cloudflare's camelCase names and limits
(``creator`` ≤ 64 characters, ``thumbnailTimestampPct`` in 0..1, strict booleans and
numbers: ``"true"`` is not a boolean), plus the rules a model cannot state alone: http(s)
URLs, and ``scheduledDeletion`` 30 to 1096 days after the upload (the tus metadata's range).
Unknown fields are ignored, as Cloudflare ignores them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints

from hybridvideo.engine.models import EngineKey, EngineVideo, Webhook
from hybridvideo.errors import InvalidInput

MAX_URL = 4096
DELETION_MIN, DELETION_MAX = timedelta(days=30), timedelta(days=1096)


def rfc3339(value: datetime) -> str:
    """``2026-11-23T13:29:45.123456Z``; naive values are taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _maybe(value: datetime | None) -> str | None:
    return None if value is None else rfc3339(value)


def delivery_urls(delivery_base: str, uid: str) -> dict[str, str]:
    """Every URL of a video under the engine's delivery base (no trailing slash needed)."""
    base = f"{delivery_base.rstrip('/')}/{uid}"
    return {
        "hls": f"{base}/manifest/video.m3u8",
        "dash": f"{base}/manifest/video.mpd",
        "thumbnail": f"{base}/thumbnails/thumbnail.jpg",
        "preview": f"{base}/watch",
    }


def status_json(video: EngineVideo) -> dict[str, Any]:
    status: dict[str, Any] = {"state": video.state}
    if video.pct_complete is not None:
        status["pctComplete"] = video.pct_complete
    failed = video.state == "error"
    status["errorReasonCode"] = (video.error_reason_code or "") if failed else ""
    status["errorReasonText"] = (video.error_reason_text or "") if failed else ""
    return status


def video_json(video: EngineVideo, *, delivery_base: str) -> dict[str, Any]:
    """Cloudflare's Video object for ``video``, fields in Cloudflare's example order."""
    urls = delivery_urls(delivery_base, video.uid)
    body: dict[str, Any] = {"uid": video.uid, "creator": video.creator}
    if video.ready_to_stream:
        body["thumbnail"] = urls["thumbnail"]
    body.update(
        thumbnailTimestampPct=video.thumbnail_timestamp_pct,
        readyToStream=video.ready_to_stream,
        readyToStreamAt=_maybe(video.ready_to_stream_at),
        status=status_json(video),
        meta=dict(video.meta),
        created=rfc3339(video.created),
        modified=rfc3339(video.modified),
        size=video.size,
    )
    if video.ready_to_stream:
        body["preview"] = urls["preview"]
    body.update(
        allowedOrigins=list(video.allowed_origins),
        requireSignedURLs=video.require_signed_urls,
        uploaded=_maybe(video.uploaded),
        uploadExpiry=_maybe(video.upload_expiry),
        maxSizeBytes=0,
        maxDurationSeconds=video.max_duration_seconds or 0,
        duration=video.duration,
        input={"width": video.width, "height": video.height},
        playback={"hls": urls["hls"], "dash": urls["dash"]},
        watermark=None,
        scheduledDeletion=_maybe(video.scheduled_deletion),
    )
    return body


def key_json(key: EngineKey) -> dict[str, Any]:
    """A key as ``GET /keys`` lists it: no key material at all."""
    return {"id": key.id, "created": rfc3339(key.created)}


def webhook_json(webhook: Webhook) -> dict[str, Any]:
    return {
        "notificationUrl": webhook.notification_url,
        "modified": rfc3339(webhook.modified),
        "secret": webhook.secret,
    }


def storage_usage_json(
    *, creator: str | None, minutes: float, limit: int | None, count: int
) -> dict[str, Any]:
    return {
        "creator": creator,
        "totalStorageMinutes": minutes,
        "totalStorageMinutesLimit": limit,
        "videoCount": count,
    }


def envelope(
    result: Any,
    *,
    errors: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Cloudflare's response envelope; ``extra`` adds top-level fields (``total``, ``range``)."""
    return {
        "result": result,
        "success": not errors,
        "errors": errors or [],
        "messages": [],
        **extra,
    }


# -- requests ---------------------------------------------------------------------------

Creator = Annotated[str, StringConstraints(max_length=64)]
Origin = Annotated[str, StringConstraints(min_length=1, max_length=255)]
ThumbPct = Annotated[float, Field(strict=True, ge=0.0, le=1.0)]
State = Literal[
    "pendingupload", "downloading", "queued", "inprogress", "ready", "error", "live-inprogress"
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CopyBody(_Body):
    url: str | None = None
    input: str | None = None
    name: str | None = None
    meta: dict[str, Any] | None = None
    require_signed_urls: StrictBool = Field(False, alias="requireSignedURLs")
    allowed_origins: list[Origin] = Field(default_factory=list, alias="allowedOrigins")
    thumbnail_timestamp_pct: ThumbPct = Field(0.0, alias="thumbnailTimestampPct")
    creator: Creator | None = None
    scheduled_deletion: datetime | None = Field(None, alias="scheduledDeletion")
    watermark: dict[str, Any] | None = None


class EditBody(_Body):
    allowed_origins: list[Origin] | None = Field(None, alias="allowedOrigins")
    creator: Creator | None = None
    meta: dict[str, Any] | None = None
    require_signed_urls: StrictBool | None = Field(None, alias="requireSignedURLs")
    scheduled_deletion: datetime | None = Field(None, alias="scheduledDeletion")
    thumbnail_timestamp_pct: ThumbPct | None = Field(None, alias="thumbnailTimestampPct")
    upload_expiry: datetime | None = Field(None, alias="uploadExpiry")
    max_duration_seconds: Annotated[int, Field(strict=True, ge=1, le=36000)] | None = Field(
        None, alias="maxDurationSeconds"
    )


class TokenBody(_Body):
    id: str | None = None
    pem: str | None = None
    exp: StrictInt | None = None
    nbf: StrictInt | None = None
    downloadable: StrictBool = False
    access_rules: list[dict[str, Any]] | None = Field(None, alias="accessRules")


class WebhookBody(_Body):
    camel: str | None = Field(None, alias="notificationUrl")
    snake: str | None = Field(None, alias="notification_url")


def as_utc(value: datetime) -> datetime:
    """Timestamps without a zone are taken as UTC, like Cloudflare's RFC 3339 inputs."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def http_url(value: str, field: str) -> str:
    """``value`` stripped, if it is an absolute http(s) URL; Cloudflare accepts no other."""
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or len(value) > MAX_URL:
        raise InvalidInput(f"{field} must be an http:// or https:// URL")
    return value


def check_deletion(when: datetime | None, upload: datetime) -> datetime | None:
    """A ``scheduledDeletion`` 30 to 1096 days after ``upload`` and in the future."""
    if when is None:
        return None
    when = as_utc(when)
    if when < upload + DELETION_MIN or when <= datetime.now(UTC):
        raise InvalidInput("scheduledDeletion must be at least 30 days after the upload")
    if when > upload + DELETION_MAX:
        raise InvalidInput("scheduledDeletion must be at most 1096 days after the upload")
    return when


def file_name(url: str) -> str:
    """The default ``meta.name`` of a copied video: the URL's last path segment, or the URL."""
    return PurePosixPath(unquote(urlsplit(url).path)).name or url


__all__ = [
    "CopyBody",
    "Creator",
    "EditBody",
    "State",
    "TokenBody",
    "WebhookBody",
    "as_utc",
    "check_deletion",
    "delivery_urls",
    "envelope",
    "file_name",
    "http_url",
    "key_json",
    "rfc3339",
    "status_json",
    "storage_usage_json",
    "video_json",
    "webhook_json",
]
