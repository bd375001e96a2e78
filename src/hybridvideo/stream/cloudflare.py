"""The Stream client over the official ``cloudflare`` SDK.

The same class talks to Cloudflare (``https://api.cloudflare.com/client/v4``) or to
hybridvideo's engine (``{public_url}/client/v4``): only ``base_url`` differs. The SDK already
retries connection errors, 408/409/429/5xx and honours ``Retry-After``; we raise its retry
budget (rate limits during a migration are normal) and translate what is left into domain
errors in :func:`_errors`, the one place that knows the SDK's exception types.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import cloudflare
import httpx
from cloudflare import Cloudflare
from cloudflare.types.stream import Video

from hybridvideo.errors import BackendUnavailable, InvalidInput, NotFound
from hybridvideo.stream.base import (
    KeyMaterial,
    RateLimited,
    StorageUsage,
    StreamAuthError,
    StreamVideo,
    WebhookConfig,
)

DEFAULT_BASE_URL = "https://api.cloudflare.com/client/v4"
_EDITABLE = {
    "require_signed_urls",
    "allowed_origins",
    "meta",
    "creator",
    "thumbnail_timestamp_pct",
    "scheduled_deletion",
    "max_duration_seconds",
}


@contextlib.contextmanager
def _errors(what: str) -> Iterator[None]:
    try:
        yield
    except cloudflare.AuthenticationError as exc:
        raise StreamAuthError(
            "the Stream API refused the token: check CLOUDFLARE_STREAM_TOKEN "
            "(it needs Stream Edit permission) and CLOUDFLARE_ACCOUNT_ID",
            detail=str(exc),
        ) from None
    except cloudflare.PermissionDeniedError as exc:
        raise StreamAuthError(
            "the Stream API refused the token for this account: check CLOUDFLARE_STREAM_TOKEN "
            "(it needs Stream Edit permission) and CLOUDFLARE_ACCOUNT_ID",
            detail=str(exc),
        ) from None
    except cloudflare.NotFoundError as exc:
        raise NotFound(f"{what}: not found in Stream", detail=str(exc)) from None
    except cloudflare.RateLimitError as exc:
        retry_after = exc.response.headers.get("retry-after")
        raise RateLimited(
            f"{what}: Stream API still rate limited after retries",
            retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
            detail=str(exc),
        ) from None
    except (cloudflare.BadRequestError, cloudflare.UnprocessableEntityError) as exc:
        raise InvalidInput(f"{what}: Stream refused the request: {_message(exc)}") from None
    except cloudflare.APIStatusError as exc:
        raise BackendUnavailable(
            f"{what}: Stream API answered {exc.status_code}", detail=str(exc)
        ) from None
    except (cloudflare.APIConnectionError, httpx.HTTPError) as exc:
        raise BackendUnavailable(f"{what}: cannot reach the Stream API", detail=str(exc)) from None


def _message(exc: cloudflare.APIStatusError) -> str:
    """The first error message of Cloudflare's envelope (safe to show: it is the API's)."""
    body = exc.body
    if isinstance(body, dict):
        errs = body.get("errors") or []
        if errs and isinstance(errs[0], dict) and errs[0].get("message"):
            return str(errs[0]["message"])[:300]
    return f"HTTP {exc.status_code}"


def to_stream_video(video: Video | None) -> StreamVideo:
    if video is None or not video.uid:
        raise BackendUnavailable("the Stream API returned no video")
    status = video.status
    pct = status.pct_complete if status else None
    duration = video.duration if video.duration is not None and video.duration >= 0 else None
    width = video.input.width if video.input and (video.input.width or -1) >= 0 else None
    height = video.input.height if video.input and (video.input.height or -1) >= 0 else None
    return StreamVideo(
        uid=video.uid,
        state=(status.state if status and status.state else "pendingupload"),
        pct_complete=float(pct) if pct not in (None, "") else None,
        ready_to_stream=bool(video.ready_to_stream),
        error_code=status.error_reason_code if status else None,
        error_text=status.error_reason_text if status else None,
        duration=duration,
        width=width,
        height=height,
        size=int(video.size) if video.size is not None and video.size >= 0 else None,
        require_signed_urls=bool(video.require_signed_urls),
        thumbnail=video.thumbnail,
        hls=video.playback.hls if video.playback else None,
        dash=video.playback.dash if video.playback else None,
        creator=video.creator,
        meta=dict(video.meta) if isinstance(video.meta, dict) else {},
        created=video.created,
        modified=video.modified,
    )


class CloudflareStream:
    """:class:`~hybridvideo.stream.base.StreamProvider` over the official SDK."""

    def __init__(
        self,
        *,
        account_id: str,
        api_token: str,
        base_url: str | None = None,
        max_retries: int = 5,
        timeout: float = 30.0,
        http_client: httpx.Client | None = None,
    ) -> None:
        self._account_id = account_id
        # api_token only: the SDK would prefer CLOUDFLARE_EMAIL/API_KEY from the environment.
        self._client = Cloudflare(
            api_token=api_token,
            api_key=None,
            api_email=None,
            base_url=base_url or DEFAULT_BASE_URL,
            max_retries=max_retries,
            timeout=httpx.Timeout(timeout, connect=5.0),
            http_client=http_client,
        )
        self.base_url = str(self._client.base_url).rstrip("/")

    @property
    def account_id(self) -> str:
        return self._account_id

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
        body_meta = dict(meta or {})
        if name:
            body_meta.setdefault("name", name)
        options: dict[str, Any] = {"url": url, "require_signed_urls": require_signed_urls}
        if body_meta:
            options["meta"] = body_meta
        if allowed_origins is not None:
            options["allowed_origins"] = list(allowed_origins)
        if thumbnail_timestamp_pct is not None:
            options["thumbnail_timestamp_pct"] = thumbnail_timestamp_pct
        if creator:
            options["creator"] = creator
            options["upload_creator"] = creator
        with _errors("copy"):
            video = self._client.stream.copy.create(account_id=self._account_id, **options)
        return to_stream_video(video)

    def get(self, uid: str) -> StreamVideo:
        with _errors(f"video {uid}"):
            return to_stream_video(self._client.stream.get(uid, account_id=self._account_id))

    def list(
        self,
        *,
        status: str | None = None,
        creator: str | None = None,
        search: str | None = None,
        after: datetime | None = None,
        limit: int = 1000,
    ) -> Iterator[StreamVideo]:
        query: dict[str, Any] = {"asc": True, "limit": limit}
        for key, value in (("status", status), ("creator", creator), ("search", search)):
            if value:
                query[key] = value
        cursor = after
        while True:
            if cursor is not None:
                query["after"] = cursor
            with _errors("list videos"):
                page = self._client.stream.list(account_id=self._account_id, **query)
                items = [to_stream_video(v) for v in page.result or []]
            yield from items
            if len(items) < limit or items[-1].created is None:
                return
            cursor = items[-1].created

    def edit(self, uid: str, **changes: Any) -> StreamVideo:
        unknown = set(changes) - _EDITABLE
        if unknown:
            raise InvalidInput(f"cannot edit {', '.join(sorted(unknown))}")
        with _errors(f"video {uid}"):
            video = self._client.stream.edit(uid, account_id=self._account_id, **changes)
        return to_stream_video(video)

    def delete(self, uid: str) -> None:
        with _errors(f"video {uid}"):
            self._client.stream.delete(uid, account_id=self._account_id)

    def create_signing_key(self) -> KeyMaterial:
        with _errors("create signing key"):
            key = self._client.stream.keys.create(account_id=self._account_id)
        if key is None or not key.id or not key.pem or not key.jwk:
            raise BackendUnavailable("the Stream API returned no key material")
        return KeyMaterial(id=key.id, pem=key.pem, jwk=key.jwk, created=key.created)

    def revoke_signing_key(self, key_id: str) -> None:
        with _errors(f"signing key {key_id}"):
            self._client.stream.keys.delete(key_id, account_id=self._account_id)

    def create_token(self, uid: str, *, expires_in: int = 3600) -> str:
        with _errors(f"token for {uid}"):
            made = self._client.stream.token.create(
                uid, account_id=self._account_id, exp=int(time.time()) + expires_in
            )
        if made is None or not made.token:
            raise BackendUnavailable("the Stream API returned no token")
        return made.token

    def set_webhook(self, url: str) -> WebhookConfig:
        # The docs spell the field notificationUrl; SDK v5 has two spellings, send the doc's.
        with _errors("set webhook"):
            made = self._client.stream.webhooks.update(
                account_id=self._account_id, extra_body={"notificationUrl": url}
            )
        return _webhook(made)

    def get_webhook(self) -> WebhookConfig | None:
        try:
            with _errors("webhook"):
                made = self._client.stream.webhooks.get(account_id=self._account_id)
        except NotFound:
            return None
        return _webhook(made) if made else None

    def storage_usage(self) -> StorageUsage:
        with _errors("storage usage"):
            usage = self._client.stream.videos.storage_usage(account_id=self._account_id)
        if usage is None:
            raise BackendUnavailable("the Stream API returned no storage usage")
        return StorageUsage(
            total_minutes=float(usage.total_storage_minutes or 0),
            limit_minutes=(
                float(usage.total_storage_minutes_limit)
                if usage.total_storage_minutes_limit is not None
                else None
            ),
            video_count=int(usage.video_count or 0),
        )

    def ping(self) -> None:
        self.storage_usage()

    def close(self) -> None:
        self._client.close()


def _webhook(made: Any) -> WebhookConfig:
    data = (
        made
        if isinstance(made, dict)
        else getattr(made, "model_dump", lambda **_: {})(by_alias=True)
    )
    url = data.get("notificationUrl") or data.get("notification_url")
    secret = data.get("secret")
    if not url or not secret:
        raise BackendUnavailable("the Stream API returned an incomplete webhook")
    modified = data.get("modified")
    return WebhookConfig(
        notification_url=str(url),
        secret=str(secret),
        modified=modified if isinstance(modified, datetime) else None,
    )
