"""Short-lived upload tokens: let an app's users upload without the admin credential.

The app (holding the admin token) mints one per user or per upload with
``POST /api/v1/upload-tokens``; the browser sends it as ``Authorization: Bearer <token>``
to ``/files/``. A token is ``hvu1.<payload>.<mac>``: base64url JSON (id, expiry, optional
collection, owner and size cap) and an HMAC-SHA256 over it with a key derived from the
server secret, so any node sharing ``HYBRIDVIDEO_SECRET_KEY`` verifies it without a
lookup. Uploads record the token id; a token only ever sees the uploads it created.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from hybridvideo.errors import InvalidInput, Unauthorized

PREFIX = "hvu1"
_MAX_TOKEN = 2048


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class UploadGrant:
    """What a verified token allows."""

    id: str
    expires_at: datetime
    collection: str | None = None
    owner_id: str | None = None
    max_size: int | None = None


class UploadTokens:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("upload token secret too short")
        self._key = hmac.new(secret, b"hybridvideo upload tokens v1", hashlib.sha256).digest()

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def mint(
        self,
        *,
        ttl: int,
        now: datetime | None = None,
        collection: str | None = None,
        owner_id: str | None = None,
        max_size: int | None = None,
    ) -> tuple[str, UploadGrant]:
        if ttl <= 0:
            raise InvalidInput("ttl must be positive")
        issued = now or datetime.now(UTC)
        expires = int(issued.timestamp()) + ttl
        grant = UploadGrant(
            id=secrets.token_hex(8),
            expires_at=datetime.fromtimestamp(expires, UTC),
            collection=collection,
            owner_id=owner_id,
            max_size=max_size,
        )
        body: dict[str, object] = {"id": grant.id, "exp": expires}
        if collection is not None:
            body["col"] = collection
        if owner_id is not None:
            body["own"] = owner_id
        if max_size is not None:
            body["max"] = max_size
        payload = _b64(json.dumps(body, separators=(",", ":")).encode())
        return f"{PREFIX}.{payload}.{self._mac(payload)}", grant

    def verify(self, token: str, *, now: datetime | None = None) -> UploadGrant:
        """The grant of a valid, unexpired token; ``Unauthorized`` otherwise (one message)."""
        bad = Unauthorized("invalid or expired upload token")
        if len(token) > _MAX_TOKEN or token.count(".") != 2:
            raise bad
        prefix, payload, mac = token.split(".")
        if prefix != PREFIX or not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            raise bad
        try:
            body = json.loads(_unb64(payload))
            expires = int(body["exp"])
            grant = UploadGrant(
                id=str(body["id"]),
                expires_at=datetime.fromtimestamp(expires, UTC),
                collection=body.get("col"),
                owner_id=body.get("own"),
                max_size=None if body.get("max") is None else int(body["max"]),
            )
        except (ValueError, KeyError, TypeError, OverflowError):
            raise bad from None
        if (now or datetime.now(UTC)) >= grant.expires_at:
            raise bad
        return grant


def looks_like_upload_token(token: str) -> bool:
    return token.startswith(PREFIX + ".")


__all__ = ["PREFIX", "UploadGrant", "UploadTokens", "looks_like_upload_token"]
