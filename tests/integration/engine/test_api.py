"""The engine's Cloudflare-compatible control API, driven by the official ``cloudflare`` SDK.

The router is mounted on an app that also has our own global error handlers, as in
``serve``, so these tests prove the engine's routes keep Cloudflare's envelope.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import httpx2
import jwt
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from cloudflare import (
    AuthenticationError,
    BadRequestError,
    Cloudflare,
    NotFoundError,
    PermissionDeniedError,
)
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import inspect

from hybridvideo.api import errors as app_errors
from hybridvideo.catalog.sql import migrate as catalog_migrate
from hybridvideo.catalog.sql.engine import create_catalog_engine
from hybridvideo.engine import migrate
from hybridvideo.engine.api import build_engine_router
from hybridvideo.engine.models import EngineBase
from hybridvideo.engine.store import EngineStore
from hybridvideo.errors import InvalidInput, NotFound
from hybridvideo.stream.tokens import SigningKey

ACCOUNT = "023e105f4ecef8ad9ca31a8372d0c353"
TOKEN = "engine-api-token-0123456789abcdef"
BASE = "https://media.example.com/delivery"
API = f"/client/v4/accounts/{ACCOUNT}/stream"
SOURCE = "https://origin.example.com/media/Intro%20Clip.mp4"
HEX32 = re.compile(r"[0-9a-f]{32}")


class ViaTestClient(httpx.BaseTransport):
    """The SDK wants an ``httpx.Client``; starlette's TestClient is an ``httpx2`` one."""

    def __init__(self, client: TestClient) -> None:
        self._client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer = self._client.request(
            request.method,
            str(request.url),
            headers=list(request.headers.multi_items()),
            content=request.read(),
        )
        return httpx.Response(
            answer.status_code,
            headers=list(answer.headers.multi_items()),
            content=answer.content,
            request=request,
        )


@dataclass
class Engine:
    http: TestClient
    sdk: Cloudflare
    store: EngineStore
    ingested: list[str] = field(default_factory=list)
    notified: list[tuple[str, str]] = field(default_factory=list)
    media_deleted: list[str] = field(default_factory=list)

    def copy(self, url: str = SOURCE, **params: Any) -> str:
        video = self.sdk.stream.copy.create(account_id=ACCOUNT, url=url, **params)
        assert video is not None and video.uid is not None
        return video.uid

    def raw(self, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        headers = {"Authorization": f"Bearer {TOKEN}", **kwargs.pop("headers", {})}
        return self.http.request(method, f"{API}{path}", headers=headers, **kwargs)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'engine.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[EngineStore]:
    engine = create_catalog_engine(db_url)
    yield EngineStore(engine)
    engine.dispose()


def make_engine(store: EngineStore, **options: Any) -> Iterator[Engine]:
    ingested: list[str] = []
    notified: list[tuple[str, str]] = []
    deleted: list[str] = []
    app = FastAPI()
    app_errors.install(app)
    router = build_engine_router(
        store=store,
        account_id=ACCOUNT,
        api_token=TOKEN,
        delivery_base=BASE,
        enqueue_ingest=options.pop("enqueue_ingest", ingested.append),
        enqueue_webhook=lambda account, uid: notified.append((account, uid)),
        delete_media=deleted.append,
        **options,
    )
    app.include_router(router)
    with TestClient(app, raise_server_exceptions=False) as http:
        sdk = Cloudflare(
            api_token=TOKEN,
            base_url="http://testserver/client/v4",
            http_client=httpx.Client(transport=ViaTestClient(http)),
            max_retries=0,
        )
        yield Engine(http, sdk, store, ingested, notified, deleted)
        sdk.close()


@pytest.fixture
def eng(store: EngineStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    for name in ("CLOUDFLARE_EMAIL", "CLOUDFLARE_API_KEY", "CLOUDFLARE_API_USER_SERVICE_KEY"):
        monkeypatch.delenv(name, raising=False)
    yield from make_engine(store)


def assert_error(response: httpx2.Response, status: int, code: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"result", "success", "errors", "messages"}
    assert body["result"] is None and body["success"] is False and body["messages"] == []
    assert [e["code"] for e in body["errors"]] == [code]
    assert isinstance(body["errors"][0]["message"], str) and body["errors"][0]["message"]
    return body


# -- copy / get ------------------------------------------------------------------------


def test_copy_creates_a_downloading_video_and_queues_ingest_once(eng: Engine) -> None:
    video = eng.sdk.stream.copy.create(
        account_id=ACCOUNT,
        url=SOURCE,
        meta={"team": "docs"},
        require_signed_urls=True,
        allowed_origins=["example.com"],
        thumbnail_timestamp_pct=0.25,
        creator="creator-1",
    )
    assert video is not None and video.uid is not None and HEX32.fullmatch(video.uid)
    assert eng.ingested == [video.uid]
    assert video.status is not None and video.status.state == "downloading"
    assert video.meta == {"team": "docs", "downloaded-from": SOURCE, "name": "Intro Clip.mp4"}
    assert video.require_signed_urls is True
    assert video.allowed_origins == ["example.com"]
    assert video.thumbnail_timestamp_pct == 0.25
    assert video.creator == "creator-1"
    assert video.ready_to_stream is False and video.thumbnail is None and video.preview is None
    assert video.duration == -1 and video.input is not None and video.input.width == -1
    assert video.playback is not None
    assert video.playback.hls == f"{BASE}/{video.uid}/manifest/video.m3u8"
    assert video.playback.dash == f"{BASE}/{video.uid}/manifest/video.mpd"
    assert video.created is not None and video.created.tzinfo is not None
    assert eng.store.get_video(video.uid).source_url == SOURCE


def test_copy_accepts_input_name_and_upload_creator_header(eng: Engine) -> None:
    video = eng.sdk.stream.copy.create(
        account_id=ACCOUNT, input=SOURCE, name="Legacy name", upload_creator="from-header"
    )
    assert video is not None
    assert video.creator == "from-header"
    assert video.meta == {"downloaded-from": SOURCE, "name": "Legacy name"}
    body = eng.raw(
        "POST", "/copy", json={"url": SOURCE, "creator": "body"}, headers={"Upload-Creator": "h"}
    ).json()
    assert body["result"]["creator"] == "body"


def test_get_follows_processing(eng: Engine) -> None:
    uid = eng.copy()
    eng.store.set_processing_state(uid, "inprogress", pct=39)
    video = eng.sdk.stream.get(uid, account_id=ACCOUNT)
    assert video is not None and video.status is not None
    assert (video.status.state, video.status.pct_complete) == ("inprogress", "39.000000")
    assert video.uploaded is not None
    eng.store.set_processing_state(
        uid, "ready", ready_to_stream=True, duration=12.5, width=640, height=360, size=1234
    )
    video = eng.sdk.stream.get(uid, account_id=ACCOUNT)
    assert video is not None and video.status is not None
    assert (video.status.state, video.status.pct_complete) == ("ready", "100.000000")
    assert video.ready_to_stream is True and video.ready_to_stream_at is not None
    assert video.thumbnail == f"{BASE}/{uid}/thumbnails/thumbnail.jpg"
    assert video.preview == f"{BASE}/{uid}/watch"
    assert (video.duration, video.size) == (12.5, 1234)
    assert video.input is not None and (video.input.width, video.input.height) == (640, 360)


def test_unknown_video_is_404_in_the_envelope(eng: Engine) -> None:
    with pytest.raises(NotFoundError):
        eng.sdk.stream.get("0" * 32, account_id=ACCOUNT)
    assert_error(eng.raw("GET", "/" + "0" * 32), 404, 10003)
    assert_error(eng.raw("POST", "/" + "0" * 32, json={}), 404, 10003)
    assert_error(eng.raw("DELETE", "/" + "0" * 32), 404, 10003)
    assert_error(eng.raw("POST", "/" + "0" * 32 + "/token"), 404, 10003)


def test_failed_enqueue_leaves_an_errored_video_and_notifies(store: EngineStore) -> None:
    def broken(uid: str) -> None:
        raise ConnectionError("queue down")

    for eng in make_engine(store, enqueue_ingest=broken):
        video = eng.sdk.stream.copy.create(account_id=ACCOUNT, url=SOURCE)
        assert video is not None and video.status is not None and video.uid is not None
        assert video.status.state == "error"
        assert video.status.error_reason_code == "ERR_UNKNOWN"
        assert eng.notified == [(ACCOUNT, video.uid)]


# -- list ------------------------------------------------------------------------------


def test_list_cursors_order_and_filters(eng: Engine) -> None:
    uids = []
    for i, name in enumerate(["Alpha intro", "beta", "INTRO gamma", "delta", "epsilon"]):
        creator = "team-a" if i % 2 == 0 else "team-b"
        uids.append(eng.copy(meta={"name": name}, creator=creator))
        time.sleep(0.002)  # distinct creation times
    eng.store.set_processing_state(uids[1], "ready", ready_to_stream=True)

    listed = list(eng.sdk.stream.list(account_id=ACCOUNT))
    assert [v.uid for v in listed] == uids[::-1], "newest first by default"

    first = list(eng.sdk.stream.list(account_id=ACCOUNT, limit=2))
    assert [v.uid for v in first] == [uids[4], uids[3]]
    assert first[-1].created is not None
    rest = list(eng.sdk.stream.list(account_id=ACCOUNT, before=first[-1].created))
    assert [v.uid for v in rest] == [uids[2], uids[1], uids[0]], "before is exclusive"

    oldest = eng.store.get_video(uids[0]).created
    ascending = list(eng.sdk.stream.list(account_id=ACCOUNT, asc=True, start=oldest))
    assert [v.uid for v in ascending] == uids[1:]
    newest = eng.store.get_video(uids[4]).created
    window = eng.sdk.stream.list(account_id=ACCOUNT, after=oldest, end=newest, asc=True)
    assert [v.uid for v in window] == uids[1:4]

    ready = list(eng.sdk.stream.list(account_id=ACCOUNT, status="ready"))
    assert [v.uid for v in ready] == [uids[1]]
    found = list(eng.sdk.stream.list(account_id=ACCOUNT, search="intro", asc=True))
    assert [v.uid for v in found] == [uids[0], uids[2]], "partial, case-insensitive"
    team_b = list(eng.sdk.stream.list(account_id=ACCOUNT, creator="team-b"))
    assert [v.uid for v in team_b] == [uids[3], uids[1]]
    exact = list(eng.sdk.stream.list(account_id=ACCOUNT, video_name="beta"))
    assert [v.uid for v in exact] == [uids[1]]
    by_id = list(eng.sdk.stream.list(account_id=ACCOUNT, id=f"{uids[0]},{uids[4]}"))
    assert {v.uid for v in by_id} == {uids[0], uids[4]}


def test_list_include_counts(eng: Engine) -> None:
    for _ in range(3):
        eng.copy(creator="c1")
    eng.copy(creator="c2")
    body = eng.raw("GET", "", params={"include_counts": "true", "limit": 2, "creator": "c1"}).json()
    assert body["success"] is True
    assert (body["total"], body["range"]) == ("3", "2")
    assert len(body["result"]) == 2
    assert "total" not in eng.raw("GET", "").json()
    page = eng.sdk.stream.list(account_id=ACCOUNT, include_counts=True)
    assert len(list(page)) == 4


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 1001}, {"limit": "many"}, {"status": "bogus"}, {"asc": "perhaps"}],
)
def test_list_rejects_bad_parameters(eng: Engine, params: dict[str, Any]) -> None:
    assert_error(eng.raw("GET", "", params=params), 400, 10002)


def test_list_rejects_long_creator(eng: Engine) -> None:
    assert_error(eng.raw("GET", "", params={"creator": "c" * 65}), 400, 10002)


# -- edit / delete ---------------------------------------------------------------------


def test_edit_changes_only_what_is_sent(eng: Engine) -> None:
    uid = eng.copy(creator="before", allowed_origins=["a.example"])
    deletion = datetime.now(UTC) + timedelta(days=45)
    expiry = datetime.now(UTC) + timedelta(hours=2)
    video = eng.sdk.stream.edit(
        uid,
        account_id=ACCOUNT,
        require_signed_urls=True,
        meta={"name": "Renamed"},
        thumbnail_timestamp_pct=0.5,
        scheduled_deletion=deletion,
        upload_expiry=expiry,
        max_duration_seconds=600,
    )
    assert video is not None
    assert video.require_signed_urls is True and video.meta == {"name": "Renamed"}
    assert video.thumbnail_timestamp_pct == 0.5 and video.max_duration_seconds == 600
    assert video.scheduled_deletion is not None
    assert abs(video.scheduled_deletion - deletion) < timedelta(milliseconds=1)
    assert video.upload_expiry is not None
    assert video.creator == "before" and video.allowed_origins == ["a.example"], "untouched"

    body = eng.raw("POST", f"/{uid}", json={"scheduledDeletion": None, "creator": "after"}).json()
    assert body["result"]["scheduledDeletion"] is None
    assert body["result"]["creator"] == "after"
    assert body["result"]["requireSignedURLs"] is True
    search = list(eng.sdk.stream.list(account_id=ACCOUNT, search="renamed"))
    assert [v.uid for v in search] == [uid], "meta.name edits feed the search"


@pytest.mark.parametrize(
    "body",
    [
        {"scheduledDeletion": (datetime.now(UTC) + timedelta(days=10)).isoformat()},
        {"scheduledDeletion": (datetime.now(UTC) + timedelta(days=2000)).isoformat()},
        {"thumbnailTimestampPct": 1.5},
        {"thumbnailTimestampPct": None},
        {"creator": "c" * 65},
        {"requireSignedURLs": "yes"},
        {"meta": None},
        {"maxDurationSeconds": 0},
    ],
)
def test_edit_rejects_bad_values(eng: Engine, body: dict[str, Any]) -> None:
    uid = eng.copy()
    assert_error(eng.raw("POST", f"/{uid}", json=body), 400, 10002)


def test_delete_removes_media_then_video(eng: Engine) -> None:
    uid = eng.copy()
    eng.sdk.stream.delete(uid, account_id=ACCOUNT)
    assert eng.media_deleted == [uid]
    with pytest.raises(NotFoundError):
        eng.sdk.stream.get(uid, account_id=ACCOUNT)
    other = eng.copy()
    body = eng.raw("DELETE", f"/{other}").json()
    assert body == {"result": {}, "success": True, "errors": [], "messages": []}


# -- keys and tokens -------------------------------------------------------------------


def test_keys_create_list_revoke(eng: Engine) -> None:
    created = eng.sdk.stream.keys.create(account_id=ACCOUNT)
    assert created is not None and created.id is not None and HEX32.fullmatch(created.id)
    assert created.pem is not None and created.jwk is not None and created.created is not None
    signing = SigningKey.from_pem_b64(created.id, created.pem)
    jwk = json.loads(base64.b64decode(created.jwk))
    assert jwk["kid"] == created.id and "d" in jwk

    stored = eng.store.live_public_keys(ACCOUNT)
    assert stored[created.id] == signing.public_jwk()
    assert "d" not in stored[created.id], "private parts are never stored"
    assert eng.store.get_key(ACCOUNT, created.id).private_pem is None

    listed = list(eng.sdk.stream.keys.get(account_id=ACCOUNT))
    assert [k.id for k in listed] == [created.id]
    raw = eng.raw("GET", "/keys").json()["result"]
    assert set(raw[0]) == {"id", "created"}

    assert eng.sdk.stream.keys.delete(created.id, account_id=ACCOUNT) == "Revoked"
    assert created.id not in eng.store.live_public_keys(ACCOUNT)
    assert list(eng.sdk.stream.keys.get(account_id=ACCOUNT)) == []
    with pytest.raises(NotFoundError):
        eng.sdk.stream.keys.delete(created.id, account_id=ACCOUNT)


def verify(eng: Engine, token: str) -> dict[str, Any]:
    kid = jwt.get_unverified_header(token)["kid"]
    jwk = eng.store.live_public_keys(ACCOUNT)[kid]
    public = jwt.PyJWK(jwk).key
    claims: dict[str, Any] = jwt.decode(token, public, algorithms=["RS256"])
    return claims


def test_token_from_the_engines_own_key_verifies(eng: Engine) -> None:
    uid = eng.copy()
    response = eng.sdk.stream.token.create(uid, account_id=ACCOUNT)
    assert response is not None and response.token is not None
    claims = verify(eng, response.token)
    now = time.time()
    assert claims["sub"] == uid
    assert abs(claims["exp"] - (now + 3600)) < 10
    assert abs(claims["nbf"] - (now - 3600)) < 10
    assert "downloadable" not in claims

    # The engine's key is made once, stays out of GET /keys and cannot be revoked.
    kid = jwt.get_unverified_header(response.token)["kid"]
    again = eng.sdk.stream.token.create(uid, account_id=ACCOUNT)
    assert again is not None and again.token is not None
    assert jwt.get_unverified_header(again.token)["kid"] == kid
    assert list(eng.sdk.stream.keys.get(account_id=ACCOUNT)) == []
    assert_error(eng.raw("DELETE", f"/keys/{kid}"), 404, 10003)
    assert kid in eng.store.live_public_keys(ACCOUNT)


def test_token_with_callers_key_and_restrictions(eng: Engine) -> None:
    uid = eng.copy()
    key = eng.sdk.stream.keys.create(account_id=ACCOUNT)
    assert key is not None and key.id is not None and key.pem is not None
    exp = int(time.time()) + 600
    response = eng.sdk.stream.token.create(
        uid,
        account_id=ACCOUNT,
        id=key.id,
        pem=key.pem,
        exp=exp,
        downloadable=True,
        access_rules=[{"type": "ip.geoip.country", "action": "allow", "country": ["FR"]}],
    )
    assert response is not None and response.token is not None
    assert jwt.get_unverified_header(response.token)["kid"] == key.id
    claims = verify(eng, response.token)
    assert claims["exp"] == exp and claims["downloadable"] is True
    assert claims["accessRules"][0]["country"] == ["FR"]


def test_token_rejections(eng: Engine) -> None:
    uid = eng.copy()
    key = eng.sdk.stream.keys.create(account_id=ACCOUNT)
    assert key is not None and key.id is not None and key.pem is not None
    with pytest.raises(BadRequestError):
        eng.sdk.stream.token.create(uid, account_id=ACCOUNT, exp=int(time.time()) + 2 * 86400)
    assert_error(eng.raw("POST", f"/{uid}/token", json={"id": key.id}), 400, 10002)
    stranger = SigningKey.generate().to_cloudflare()
    body = {"id": key.id, "pem": stranger["pem"]}
    assert_error(eng.raw("POST", f"/{uid}/token", json=body), 400, 10002)
    body = {"id": stranger["id"], "pem": stranger["pem"]}
    assert_error(eng.raw("POST", f"/{uid}/token", json=body), 400, 10002)
    rules = [{"type": "any", "action": "block"}] * 6
    assert_error(eng.raw("POST", f"/{uid}/token", json={"accessRules": rules}), 400, 10002)
    eng.sdk.stream.keys.delete(key.id, account_id=ACCOUNT)
    body = {"id": key.id, "pem": key.pem}
    assert_error(eng.raw("POST", f"/{uid}/token", json=body), 400, 10002)


# -- webhook ---------------------------------------------------------------------------


def test_webhook_secret_rotates_only_when_the_url_changes(eng: Engine) -> None:
    first = eng.sdk.stream.webhooks.update(
        account_id=ACCOUNT, body_notification_url_2="https://hooks.example/a"
    )
    assert first is not None and first.secret is not None and HEX32.fullmatch(first.secret)
    assert first.notification_url == "https://hooks.example/a" and first.modified is not None

    same = eng.sdk.stream.webhooks.update(
        account_id=ACCOUNT, body_notification_url_2="https://hooks.example/a"
    )
    assert same is not None and (same.secret, same.modified) == (first.secret, first.modified)

    moved = eng.sdk.stream.webhooks.update(
        account_id=ACCOUNT, body_notification_url_1="https://hooks.example/b"
    )
    assert moved is not None and moved.notification_url == "https://hooks.example/b"
    assert moved.secret is not None and moved.secret != first.secret

    got = eng.sdk.stream.webhooks.get(account_id=ACCOUNT)
    assert got is not None and (got.notification_url, got.secret) == (
        "https://hooks.example/b",
        moved.secret,
    )
    assert eng.sdk.stream.webhooks.delete(account_id=ACCOUNT) == ""
    with pytest.raises(NotFoundError):
        eng.sdk.stream.webhooks.get(account_id=ACCOUNT)
    assert_error(eng.raw("DELETE", "/webhook"), 404, 10003)


@pytest.mark.parametrize(
    "body", [{}, {"notificationUrl": "ftp://hooks.example/a"}, {"notificationUrl": 5}]
)
def test_webhook_rejects_bad_urls(eng: Engine, body: dict[str, Any]) -> None:
    assert_error(eng.raw("PUT", "/webhook", json=body), 400, 10002)


# -- storage usage ---------------------------------------------------------------------


def test_storage_usage(eng: Engine) -> None:
    a, b, c = eng.copy(creator="x"), eng.copy(creator="x"), eng.copy(creator="y")
    eng.store.set_processing_state(a, "ready", ready_to_stream=True, duration=90.0)
    eng.store.set_processing_state(b, "error", duration=600.0, error=("ERR_NON_VIDEO", "no"))
    eng.store.set_processing_state(c, "ready", ready_to_stream=True, duration=30.0)
    usage = eng.sdk.stream.videos.storage_usage(account_id=ACCOUNT)
    assert usage is not None
    assert (usage.total_storage_minutes, usage.video_count) == (2.0, 3)
    assert usage.total_storage_minutes_limit is None and usage.creator is None
    mine = eng.sdk.stream.videos.storage_usage(account_id=ACCOUNT, creator="x")
    assert mine is not None
    assert (mine.creator, mine.total_storage_minutes, mine.video_count) == ("x", 1.5, 2)


def test_storage_limit_refuses_copies(store: EngineStore) -> None:
    for eng in make_engine(store, storage_minutes_limit=1):
        uid = eng.copy()
        eng.store.set_processing_state(uid, "ready", ready_to_stream=True, duration=61.0)
        usage = eng.sdk.stream.videos.storage_usage(account_id=ACCOUNT)
        assert usage is not None and usage.total_storage_minutes_limit == 1
        assert_error(eng.raw("POST", "/copy", json={"url": SOURCE}), 413, 10011)
        assert eng.ingested == [uid]


# -- malformed requests and auth -------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"url": "ftp://origin.example.com/a.mp4"},
        {"url": "not a url"},
        {"url": SOURCE, "input": "https://other.example/b.mp4"},
        {"url": SOURCE, "requireSignedURLs": "true"},
        {"url": SOURCE, "thumbnailTimestampPct": -0.1},
        {"url": SOURCE, "creator": "c" * 65},
        {"url": SOURCE, "allowedOrigins": "example.com"},
        {"url": SOURCE, "scheduledDeletion": "2020-01-01T00:00:00Z"},
        {"url": SOURCE, "scheduledDeletion": "soon"},
        {"url": SOURCE, "watermark": {"uid": "w" * 32}},
        ["not", "an", "object"],
    ],
)
def test_copy_rejects_malformed_bodies(eng: Engine, body: Any) -> None:
    assert_error(eng.raw("POST", "/copy", json=body), 400, 10002)
    assert eng.ingested == []


def test_copy_rejects_long_upload_creator_header(eng: Engine) -> None:
    response = eng.raw("POST", "/copy", json={"url": SOURCE}, headers={"Upload-Creator": "c" * 65})
    assert_error(response, 400, 10002)


def test_malformed_json_is_cloudflares_6007(eng: Engine) -> None:
    response = eng.raw(
        "POST", "/copy", content=b'{"url": ', headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400, 6007)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Basic abc"}, 401),
        ({"X-Auth-Email": "a@example.com", "X-Auth-Key": "k" * 37}, 401),
        ({"Authorization": "Bearer wrong-token"}, 403),
        ({"Authorization": f"Bearer {TOKEN}x"}, 403),
    ],
)
def test_auth_failures(eng: Engine, headers: dict[str, str], status: int) -> None:
    for method, path in [("GET", ""), ("POST", "/copy"), ("GET", "/keys"), ("PUT", "/webhook")]:
        response = eng.http.request(method, f"{API}{path}", headers=headers, content=b"{bad")
        assert_error(response, status, 10000)
    assert eng.ingested == []


def test_other_account_is_refused(eng: Engine) -> None:
    uid = eng.copy()
    other = f"/client/v4/accounts/{'f' * 32}/stream/{uid}"
    response = eng.http.get(other, headers={"Authorization": f"Bearer {TOKEN}"})
    assert_error(response, 403, 10000)


def test_sdk_raises_typed_auth_errors(eng: Engine) -> None:
    with pytest.raises(PermissionDeniedError):
        eng.sdk.with_options(api_token="wrong").stream.get("0" * 32, account_id=ACCOUNT)
    with pytest.raises(PermissionDeniedError):
        eng.sdk.stream.get("0" * 32, account_id="f" * 32)
    anonymous = eng.http.get(f"{API}/keys")
    assert anonymous.status_code == 401
    with pytest.raises(AuthenticationError):
        eng.sdk.with_options(api_token=" ").stream.keys.get(account_id=ACCOUNT)


def test_app_routes_keep_their_own_error_shape(eng: Engine) -> None:
    response = eng.http.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert "error" in response.json(), "only the engine's routes use the envelope"


# -- the store underneath -------------------------------------------------------------


def test_processing_state_rules(store: EngineStore) -> None:
    video = store.create_video(ACCOUNT, state="pendingupload", meta={"name": "n"})
    assert video.uploaded is None and video.pct_complete is None
    failed = store.set_processing_state(video.uid, "error", error=("ERR_MALFORMED_VIDEO", "bad"))
    assert (failed.error_reason_code, failed.error_reason_text) == ("ERR_MALFORMED_VIDEO", "bad")
    assert failed.uploaded is not None, "stamped when the video left the waiting states"
    retried = store.set_processing_state(video.uid, "inprogress", pct=12.5)
    assert (retried.error_reason_code, retried.pct_complete) == (None, "12.500000")
    assert retried.uploaded == failed.uploaded
    done = store.set_processing_state(
        video.uid, "ready", ready_to_stream=True, media={"renditions": 3}
    )
    assert done.pct_complete == "100.000000" and done.ready_to_stream_at is not None
    again = store.set_processing_state(video.uid, "ready")
    assert again.ready_to_stream_at == done.ready_to_stream_at
    assert again.media_manifest == {"renditions": 3}
    with pytest.raises(InvalidInput):
        store.set_processing_state(video.uid, "finished")
    with pytest.raises(InvalidInput):
        store.set_processing_state(video.uid, "inprogress", pct=101)
    with pytest.raises(NotFound):
        store.set_processing_state("0" * 32, "ready")


def test_webhook_deliveries_are_recorded(store: EngineStore) -> None:
    record = store.record_delivery(ACCOUNT, "u" * 32, "https://hooks.example/a")
    assert (record.state, record.attempts, record.delivered_at) == ("pending", 0, None)
    retry = store.update_delivery(record.id, state="pending", last_status=500, last_error="HTTP")
    assert (retry.attempts, retry.last_status) == (1, 500)
    done = store.update_delivery(record.id, state="delivered", last_status=204)
    assert (done.attempts, done.state, done.last_error) == (2, "delivered", None)
    assert done.delivered_at is not None and store.get_delivery(record.id) == done
    with pytest.raises(InvalidInput):
        store.update_delivery(record.id, state="lost")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'any.db'}"
    url: str = request.getfixturevalue("postgres_db")
    return url


def test_round_trip_on_each_backend(any_db: str) -> None:
    migrate.upgrade(any_db)
    engine = create_catalog_engine(any_db)
    try:
        for eng in make_engine(EngineStore(engine)):
            first = eng.copy(meta={"name": "100%_real été"}, creator="c")
            time.sleep(0.002)
            second = eng.copy(meta={"name": "plain"})
            found = list(eng.sdk.stream.list(account_id=ACCOUNT, search="%_REAL ÉTÉ"))
            assert [v.uid for v in found] == [first], "LIKE wildcards are escaped"
            assert list(eng.sdk.stream.list(account_id=ACCOUNT, search="p_ain")) == []
            created = eng.store.get_video(second).created
            older = list(eng.sdk.stream.list(account_id=ACCOUNT, before=created))
            assert [v.uid for v in older] == [first]
            eng.sdk.stream.edit(first, account_id=ACCOUNT, meta={"k": [1, {"x": None}]})
            assert eng.store.get_video(first).meta == {"k": [1, {"x": None}]}
            eng.store.set_processing_state(first, "ready", ready_to_stream=True, duration=60.0)
            token = eng.sdk.stream.token.create(first, account_id=ACCOUNT)
            assert token is not None and token.token is not None
            assert verify(eng, token.token)["sub"] == first
            hook = eng.sdk.stream.webhooks.update(
                account_id=ACCOUNT, body_notification_url_2="https://hooks.example/x"
            )
            assert hook is not None and hook.secret is not None
            usage = eng.sdk.stream.videos.storage_usage(account_id=ACCOUNT, creator="c")
            assert usage is not None and (usage.total_storage_minutes, usage.video_count) == (1, 1)
            eng.sdk.stream.delete(second, account_id=ACCOUNT)
            assert [v.uid for v in eng.sdk.stream.list(account_id=ACCOUNT)] == [first]
    finally:
        engine.dispose()


# -- migrations ------------------------------------------------------------------------


def test_engine_schema_is_versioned_apart_from_the_catalog(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    assert not migrate.is_up_to_date(url)
    catalog_migrate.upgrade(url)
    migrate.upgrade(url)
    assert migrate.is_up_to_date(url) and catalog_migrate.is_up_to_date(url)
    assert migrate.current_revision(url) == migrate.head_revision()
    engine = create_catalog_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert {"alembic_version", "alembic_version_engine", "videos"} <= tables
        assert {
            "engine_videos",
            "engine_keys",
            "engine_webhooks",
            "engine_webhook_deliveries",
        } <= tables
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_name": lambda name, kind, _p: (
                        kind != "table" or str(name).startswith("engine_")
                    ),
                },
            )
            assert compare_metadata(context, EngineBase.metadata) == []
    finally:
        engine.dispose()
