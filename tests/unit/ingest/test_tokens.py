"""Upload tokens: what they carry, and every way a forged or stale one is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hybridvideo.errors import InvalidInput, Unauthorized
from hybridvideo.ingest.tokens import UploadTokens, looks_like_upload_token

SECRET = b"s" * 32
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_round_trip_carries_the_grant() -> None:
    tokens = UploadTokens(SECRET)
    token, grant = tokens.mint(
        ttl=600, now=NOW, collection="work", owner_id="user-1", max_size=1000
    )
    assert looks_like_upload_token(token)
    got = tokens.verify(token, now=NOW + timedelta(seconds=599))
    assert got == grant
    assert got.expires_at == NOW + timedelta(seconds=600)
    assert (got.collection, got.owner_id, got.max_size) == ("work", "user-1", 1000)


def test_tokens_are_unique() -> None:
    tokens = UploadTokens(SECRET)
    ids = {tokens.mint(ttl=60, now=NOW)[1].id for _ in range(50)}
    assert len(ids) == 50


def test_expired_token_is_refused() -> None:
    tokens = UploadTokens(SECRET)
    token, _ = tokens.mint(ttl=60, now=NOW)
    with pytest.raises(Unauthorized):
        tokens.verify(token, now=NOW + timedelta(seconds=60))


def test_other_secret_is_refused() -> None:
    token, _ = UploadTokens(SECRET).mint(ttl=60, now=NOW)
    with pytest.raises(Unauthorized):
        UploadTokens(b"t" * 32).verify(token, now=NOW)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t.replace("hvu1", "hvu2", 1),
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),
        lambda t: t + ".x",
        lambda t: t.split(".")[0],
        lambda t: "hvu1." + "A" * 3000 + ".x",
        lambda t: "hvu1.e30." + t.split(".")[2],  # someone else's MAC on an empty payload
        lambda t: "",
    ],
)
def test_tampered_tokens_are_refused(mangle: object) -> None:
    tokens = UploadTokens(SECRET)
    token, _ = tokens.mint(ttl=60, now=NOW, collection="work")
    with pytest.raises(Unauthorized):
        tokens.verify(mangle(token), now=NOW)  # type: ignore[operator]


def test_changing_the_payload_breaks_the_mac() -> None:
    import base64
    import json

    tokens = UploadTokens(SECRET)
    token, _ = tokens.mint(ttl=60, now=NOW, collection="work")
    prefix, payload, mac = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["col"] = "other"
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    with pytest.raises(Unauthorized):
        tokens.verify(f"{prefix}.{forged}.{mac}", now=NOW)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        UploadTokens(b"short")
    with pytest.raises(InvalidInput):
        UploadTokens(SECRET).mint(ttl=0)
