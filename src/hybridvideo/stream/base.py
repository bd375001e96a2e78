"""The Stream boundary: everything hybridvideo asks of a Stream service.

One implementation speaks the Cloudflare Stream API (:mod:`hybridvideo.stream.cloudflare`);
pointing it at Cloudflare or at hybridvideo's own engine is a base-URL setting. Results are
frozen dataclasses in our vocabulary, so no SDK model leaks into services, and failures are
domain errors: ``NotFound``, ``InvalidInput`` (the service refused the request),
``StreamAuthError`` (bad credentials), ``RateLimited`` (still limited after the retries),
``BackendUnavailable`` (cannot reach it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from hybridvideo.errors import BackendUnavailable, ConfigurationError

#: Cloudflare's ``status.state`` values for on-demand videos.
STATES = ("pendingupload", "downloading", "queued", "inprogress", "ready", "error")


class StreamAuthError(ConfigurationError):
    """The Stream service refused our credentials: a configuration problem, not a retry."""

    code = "STREAM_AUTH"


class RateLimited(BackendUnavailable):
    """Still rate limited after honouring ``Retry-After`` for every allowed retry."""

    code = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after: float | None, detail: str | None = None):
        super().__init__(message, detail=detail)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class StreamVideo:
    uid: str
    state: str
    pct_complete: float | None
    ready_to_stream: bool
    error_code: str | None
    error_text: str | None
    duration: float | None
    width: int | None
    height: int | None
    size: int | None
    require_signed_urls: bool
    thumbnail: str | None
    hls: str | None
    dash: str | None
    creator: str | None
    meta: Mapping[str, Any] = field(default_factory=dict)
    created: datetime | None = None
    modified: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("ready", "error")


@dataclass(frozen=True, slots=True)
class KeyMaterial:
    """A signing key as the service hands it out once: ``pem``/``jwk`` are base64."""

    id: str
    pem: str
    jwk: str
    created: datetime | None


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    notification_url: str
    secret: str
    modified: datetime | None


@dataclass(frozen=True, slots=True)
class StorageUsage:
    total_minutes: float
    limit_minutes: float | None
    video_count: int


@runtime_checkable
class StreamProvider(Protocol):
    def copy_from_url(
        self,
        url: str,
        *,
        name: str | None = None,
        meta: Mapping[str, Any] | None = None,
        require_signed_urls: bool = False,
        allowed_origins: Sequence[str] | None = None,
        thumbnail_timestamp_pct: float | None = None,
        creator: str | None = None,
    ) -> StreamVideo:
        """Ask the service to fetch ``url`` (HEAD + ranged GETs) and encode it."""

    def get(self, uid: str) -> StreamVideo: ...

    def list(
        self,
        *,
        status: str | None = None,
        creator: str | None = None,
        search: str | None = None,
        after: datetime | None = None,
        limit: int = 1000,
    ) -> Iterator[StreamVideo]:
        """Oldest first, paging with the ``after`` cursor until exhausted."""

    def edit(self, uid: str, **changes: Any) -> StreamVideo:
        """Change ``require_signed_urls``, ``allowed_origins``, ``meta``, ``creator``, ..."""

    def delete(self, uid: str) -> None:
        """Remove the delivery copy; the archive's master is untouched."""

    def create_signing_key(self) -> KeyMaterial: ...

    def revoke_signing_key(self, key_id: str) -> None: ...

    def create_token(self, uid: str, *, expires_in: int = 3600) -> str:
        """A token minted by the service (rate limited there; prefer the local signer)."""

    def set_webhook(self, url: str) -> WebhookConfig: ...

    def get_webhook(self) -> WebhookConfig | None: ...

    def storage_usage(self) -> StorageUsage: ...

    def ping(self) -> None:
        """Raise ``StreamAuthError`` / ``BackendUnavailable`` unless an API call works."""
