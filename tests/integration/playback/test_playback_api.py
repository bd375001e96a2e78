"""GET /api/v1/videos/{id}/playback and the grants API: every auth and status branch.

Real parts: the embedded container (SQLite catalog, local archive), PyJWT-signed viewer
tokens, a JWKS served by uvicorn on loopback, tokens checked with the stream verifier.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hybridvideo.api.app import create_app
from hybridvideo.config import load_settings
from hybridvideo.container import Container, build_container
from hybridvideo.domain.video import MediaInfo, NewVideo, StreamStatus
from hybridvideo.stream.tokens import SigningKey, verify_token
from tests.services import serve_asgi

SECRET = "viewer-secret-" + "x" * 24


class Env:
    def __init__(self, container: Container, client: TestClient, key: SigningKey) -> None:
        self.container = container
        self.client = client
        self.key = key

    def video(
        self,
        status: StreamStatus = StreamStatus.READY,
        *,
        owner: str | None = "alice",
        collection: str = "work",
    ) -> str:
        n = uuid.uuid4().hex
        catalog = self.container.catalog
        video = catalog.add_video(
            NewVideo(
                title=f"clip {n[:6]}",
                collection=collection,
                archive_bucket="masters",
                archive_key=f"videos/{n}.mp4",
                media=MediaInfo(
                    size=10,
                    sha256=hashlib.sha256(n.encode()).hexdigest(),
                    format="mp4",
                    duration=1.0,
                    width=160,
                    height=90,
                ),
                owner_id=owner,
                thumbnail_url=f"http://archive.test/thumbnails/{n}.jpg",
            )
        )
        uid = uuid.uuid4().hex
        path = {
            StreamStatus.NOT_DELIVERED: [],
            StreamStatus.PROCESSING: [StreamStatus.PROCESSING],
            StreamStatus.READY: [StreamStatus.PROCESSING, StreamStatus.READY],
            StreamStatus.EVICTED: [
                StreamStatus.PROCESSING,
                StreamStatus.READY,
                StreamStatus.EVICTED,
            ],
        }[status]
        for step in path:
            catalog.set_stream_status(
                video.id, step, stream_uid=uid if step is StreamStatus.PROCESSING else None
            )
        return video.id

    def play(self, video_id: str, token: str | None = None) -> httpx2.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.get(f"/api/v1/videos/{video_id}/playback", headers=headers)


@pytest.fixture
def make_env(tmp_path: Path) -> Iterator[Callable[..., Env]]:
    made: list[tuple[Container, TestClient]] = []

    def make(**settings: Any) -> Env:
        data_dir = tmp_path / f"data-{len(made)}"
        data_dir.mkdir()
        key = SigningKey.generate()
        (data_dir / "signing-key.json").write_text(json.dumps(key.to_cloudflare()))
        container = build_container(load_settings(data_dir=data_dir, **settings), serving=True)
        client = TestClient(create_app(container, run_worker=False), raise_server_exceptions=False)
        client.__enter__()
        made.append((container, client))
        return Env(container, client, key)

    yield make
    for container, client in made:
        client.__exit__(None, None, None)
        container.close()


@pytest.fixture
def env(make_env: Callable[..., Env]) -> Env:
    return make_env(playback_jwt_secret=SECRET)


def hs(claims: dict[str, Any], secret: str = SECRET, **header: Any) -> str:
    base = {"sub": "alice", "exp": int(time.time()) + 300}
    return jwt.encode({**base, **claims}, secret, algorithm="HS256", headers=header or None)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def assert_401(response: httpx2.Response, words: str) -> None:
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] in ("INVALID_VIEWER_TOKEN", "UNAUTHORIZED")
    assert words in error["message"]
    assert response.headers["www-authenticate"] == "Bearer"


# -- the happy path and its shape -------------------------------------------------------


def test_owner_plays_with_signed_urls_and_archive_poster(env: Env) -> None:
    video_id = env.video()
    response = env.play(video_id, hs({}))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"streamUid", "token", "expiresAt", "hls", "dash", "iframe", "poster"}
    claims = verify_token(body["token"], keys={env.key.id: env.key.public_key})
    assert claims.uid == body["streamUid"]
    assert not claims.downloadable and claims.access_rules == ()
    assert 3500 <= claims.exp - time.time() <= 3600
    base = env.container.settings.resolved_engine_delivery_url
    assert body["hls"] == f"{base}/{body['token']}/manifest/video.m3u8"
    assert body["dash"] == f"{base}/{body['token']}/manifest/video.mpd"
    assert body["iframe"] == f"{base}/{body['token']}/iframe"
    assert body["streamUid"] not in body["hls"]
    video = env.container.catalog.get_video(video_id)
    assert body["poster"] == video.spec.thumbnail_url
    assert body["expiresAt"].endswith("Z")
    assert response.headers["cache-control"] == "private, no-store"


# -- authentication ---------------------------------------------------------------------


def test_missing_token_asks_to_sign_in(env: Env) -> None:
    assert_401(env.play(env.video()), "sign in")


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "x" * 9000, "eyJhbGciOiJIUzI1NiJ9.e30"])
def test_malformed_tokens(env: Env, token: str) -> None:
    response = env.play(env.video(), token)
    assert_401(response, "malformed")


def test_wrongly_signed_token(env: Env) -> None:
    response = env.play(env.video(), hs({}, secret="another-secret-" + "y" * 20))
    assert_401(response, "signature is not valid")


def test_expired_token_even_with_leeway(env: Env) -> None:
    assert_401(env.play(env.video(), hs({"exp": int(time.time()) - 120})), "expired")
    # Inside the 30 s leeway: clock skew is tolerated.
    assert env.play(env.video(), hs({"exp": int(time.time()) - 5})).status_code == 200


def test_not_yet_valid_token(env: Env) -> None:
    assert_401(env.play(env.video(), hs({"nbf": int(time.time()) + 600})), "not valid yet")


def test_alg_none_is_refused(env: Env) -> None:
    claims = {"sub": "alice", "exp": int(time.time()) + 300}
    for alg in ("none", "None", "NONE"):
        token = f"{b64(json.dumps({'alg': alg}).encode())}.{b64(json.dumps(claims).encode())}."
        assert_401(env.play(env.video(), token), "algorithm")


def test_token_without_subject(env: Env) -> None:
    token = jwt.encode({"exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    assert_401(env.play(env.video(), token), "required claim")


def test_issuer_and_audience_are_checked(make_env: Callable[..., Env]) -> None:
    env = make_env(
        playback_jwt_secret=SECRET,
        playback_jwt_issuer="https://id.example/auth/v1",
        playback_jwt_audience="authenticated",
    )
    video_id = env.video()
    good = {"iss": "https://id.example/auth/v1", "aud": "authenticated"}
    assert env.play(video_id, hs(good)).status_code == 200
    assert_401(env.play(video_id, hs({**good, "iss": "https://evil.example"})), "another identity")
    assert_401(env.play(video_id, hs({**good, "aud": "other-app"})), "another application")
    assert_401(env.play(video_id, hs({"aud": "authenticated"})), "required claim")


def test_error_text_never_carries_library_internals(env: Env) -> None:
    response = env.play(env.video(), hs({}, secret="z" * 40))
    text = response.text
    assert "Signature verification failed" not in text and "jwt" not in text.lower()


# -- JWKS (RS256 and ES256) with rotation ----------------------------------------------


class Jwks:
    """A provider's key set on a real uvicorn; ``keys`` can be swapped (rotation)."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.hits = 0
        app = FastAPI()

        @app.get("/.well-known/jwks.json")
        def jwks() -> dict[str, Any]:
            self.hits += 1
            return {"keys": self.keys}

        self.app = app


def public_jwk(private: Any, kid: str, alg: str) -> dict[str, Any]:
    algo = jwt.get_algorithm_by_name(alg)
    data = json.loads(algo.to_jwk(private.public_key()))
    return {**data, "kid": kid, "alg": alg, "use": "sig"}


@pytest.fixture
def jwks() -> Iterator[tuple[Jwks, str]]:
    server = Jwks()
    with serve_asgi(server.app) as url:
        yield server, f"{url}/.well-known/jwks.json"


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_jwks_tokens_and_key_rotation(
    make_env: Callable[..., Env], jwks: tuple[Jwks, str], alg: str
) -> None:
    server, url = jwks

    def new_key() -> Any:
        if alg == "RS256":
            return rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return ec.generate_private_key(ec.SECP256R1())

    k1, k2 = new_key(), new_key()
    server.keys = [public_jwk(k1, "k1", alg)]
    env = make_env(playback_jwks_url=url, playback_jwks_refresh_seconds=0)
    video_id = env.video()
    claims = {"sub": "alice", "exp": int(time.time()) + 300}
    t1 = jwt.encode(claims, k1, algorithm=alg, headers={"kid": "k1"})
    assert env.play(video_id, t1).status_code == 200
    assert env.play(video_id, t1).status_code == 200
    assert server.hits == 1  # cached
    # Rotation: the provider now signs with k2 and publishes it; an unknown kid refreshes.
    server.keys = [public_jwk(k2, "k2", alg)]
    t2 = jwt.encode(claims, k2, algorithm=alg, headers={"kid": "k2"})
    assert env.play(video_id, t2).status_code == 200
    assert server.hits == 2
    # A kid nobody published: refused (one more fetch, allowed by refresh_seconds=0).
    t3 = jwt.encode(claims, k1, algorithm=alg, headers={"kid": "nope"})
    assert_401(env.play(video_id, t3), "unknown key")
    # A token signed by the right kid but another key: bad signature.
    forged = jwt.encode(claims, new_key(), algorithm=alg, headers={"kid": "k2"})
    assert_401(env.play(video_id, forged), "signature")


def test_unknown_kid_refresh_is_rate_limited(
    make_env: Callable[..., Env], jwks: tuple[Jwks, str]
) -> None:
    server, url = jwks
    k1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server.keys = [public_jwk(k1, "k1", "RS256")]
    env = make_env(playback_jwks_url=url, playback_jwks_refresh_seconds=3600)
    video_id = env.video()
    claims = {"sub": "alice", "exp": int(time.time()) + 300}
    for n in range(5):
        token = jwt.encode(claims, k1, algorithm="RS256", headers={"kid": f"made-up-{n}"})
        assert_401(env.play(video_id, token), "unknown key")
    assert server.hits == 1


def test_hs_rs_algorithm_confusion_is_refused(
    make_env: Callable[..., Env], jwks: tuple[Jwks, str]
) -> None:
    """An HS256 token whose HMAC key is the provider's RSA public key must not pass,
    whether HS256 is accepted (with a real secret) or not."""
    server, url = jwks
    k1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server.keys = [public_jwk(k1, "k1", "RS256")]
    pem = k1.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = {"sub": "alice", "exp": int(time.time()) + 300}
    header = {"alg": "HS256", "typ": "JWT", "kid": "k1"}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    forged = (
        f"{signing_input}.{b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())}"
    )

    only_jwks = make_env(playback_jwks_url=url)
    assert_401(only_jwks.play(only_jwks.video(), forged), "algorithm")
    both = make_env(playback_jwks_url=url, playback_jwt_secret=SECRET)
    assert_401(both.play(both.video(), forged), "signature is not valid")
    # An RS256 token claiming the JWKS key but signed with HMAC bytes: bad signature.
    rs_header = {"alg": "RS256", "kid": "k1"}
    rs_input = f"{b64(json.dumps(rs_header).encode())}.{b64(json.dumps(claims).encode())}"
    rs_forged = f"{rs_input}.{b64(hmac.new(pem, rs_input.encode(), hashlib.sha256).digest())}"
    assert_401(both.play(both.video(), rs_forged), "signature")


def test_no_identity_configured_refuses_tokens_but_serves_public(
    make_env: Callable[..., Env],
) -> None:
    env = make_env(playback_policy="public")
    video_id = env.video()
    assert env.play(video_id).status_code == 200
    assert_401(env.play(video_id, hs({})), "not configured")


# -- policies and grants -----------------------------------------------------------------


def test_owner_policy_refuses_others_with_403(env: Env) -> None:
    response = env.play(env.video(owner="alice"), hs({"sub": "bob"}))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "FORBIDDEN"
    # A video without an owner is nobody's: the owner rule never matches.
    assert env.play(env.video(owner=None), hs({"sub": "alice"})).status_code == 403


def test_admin_claim(make_env: Callable[..., Env]) -> None:
    env = make_env(playback_jwt_secret=SECRET, playback_admin_claim="app_metadata.roles=admin")
    video_id = env.video(owner="alice")
    assert env.play(video_id, hs({"sub": "root", "app_metadata": {"roles": ["admin"]}})).is_success
    assert (
        env.play(video_id, hs({"sub": "eve", "app_metadata": {"roles": ["user"]}})).status_code
        == 403
    )
    assert env.play(video_id, hs({"sub": "eve", "role": "admin"})).status_code == 403


def test_default_admin_claim_is_role_admin(env: Env) -> None:
    assert env.play(env.video(owner="alice"), hs({"sub": "ops", "role": "admin"})).is_success


def test_signed_in_policy(make_env: Callable[..., Env]) -> None:
    env = make_env(playback_jwt_secret=SECRET, playback_policy="signed_in")
    video_id = env.video(owner="alice")
    assert_401(env.play(video_id), "sign in")
    assert env.play(video_id, hs({"sub": "anyone"})).status_code == 200


def test_public_policy_and_public_collections(make_env: Callable[..., Env]) -> None:
    env = make_env(playback_jwt_secret=SECRET, playback_public_collections="trailers, promo")
    assert env.play(env.video(collection="trailers", owner=None)).status_code == 200
    assert_401(env.play(env.video(collection="work")), "sign in")
    open_env = make_env(playback_policy="public")
    assert open_env.play(open_env.video(owner=None)).status_code == 200


def test_grants_add_list_revoke(env: Env) -> None:
    admin = {"Authorization": f"Bearer {env.container.admin_token}"}
    video_id = env.video(owner="alice")
    bob = hs({"sub": "bob"})
    assert env.play(video_id, bob).status_code == 403

    added = env.client.post(
        f"/api/v1/videos/{video_id}/grants", json={"subject": "bob"}, headers=admin
    )
    assert added.status_code == 201, added.text
    assert added.json()["subject"] == "bob" and added.json()["expiresAt"] is None
    assert env.play(video_id, bob).status_code == 200
    listed = env.client.get(f"/api/v1/videos/{video_id}/grants", headers=admin).json()["items"]
    assert [g["subject"] for g in listed] == ["bob"]

    assert (
        env.client.delete(f"/api/v1/videos/{video_id}/grants/bob", headers=admin).status_code == 204
    )
    assert env.play(video_id, bob).status_code == 403
    again = env.client.delete(f"/api/v1/videos/{video_id}/grants/bob", headers=admin)
    assert again.status_code == 404


def test_expired_grant_does_not_open(env: Env) -> None:
    admin = {"Authorization": f"Bearer {env.container.admin_token}"}
    video_id = env.video(owner="alice")
    body = {"subject": "bob", "expiresAt": "2020-01-01T00:00:00Z"}
    assert (
        env.client.post(f"/api/v1/videos/{video_id}/grants", json=body, headers=admin).status_code
        == 201
    )
    assert env.play(video_id, hs({"sub": "bob"})).status_code == 403


def test_grants_api_needs_the_admin_token(env: Env) -> None:
    video_id = env.video()
    viewer = {"Authorization": f"Bearer {hs({'role': 'admin'})}"}
    assert env.client.get(f"/api/v1/videos/{video_id}/grants").status_code == 401
    assert (
        env.client.post(
            f"/api/v1/videos/{video_id}/grants", json={"subject": "x"}, headers=viewer
        ).status_code
        == 401
    )
    admin = {"Authorization": f"Bearer {env.container.admin_token}"}
    assert env.client.get("/api/v1/videos/nope/grants", headers=admin).status_code == 404


# -- statuses -------------------------------------------------------------------------------


def test_unknown_video_is_404(env: Env) -> None:
    assert env.play(str(uuid.uuid4()), hs({})).status_code == 404


@pytest.mark.parametrize("status", [StreamStatus.NOT_DELIVERED, StreamStatus.PROCESSING])
def test_not_ready_is_409_with_the_status(env: Env, status: StreamStatus) -> None:
    response = env.play(env.video(status), hs({}))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "NOT_READY"
    assert status.value in response.json()["error"]["message"]


def test_evicted_starts_the_reimport_and_answers_202(env: Env) -> None:
    video_id = env.video(StreamStatus.EVICTED)
    before = env.container.queue.pending()
    response = env.play(video_id, hs({}))
    assert response.status_code == 202
    assert response.headers["retry-after"] == "30"
    assert response.json() == {"status": "reimporting", "retryAfter": 30}
    assert env.container.queue.pending() == before + 1  # delivery.send queued
    # A burst of viewers queues one job, and each is answered 202.
    for _ in range(3):
        assert env.play(video_id, hs({})).status_code == 202
    assert env.container.queue.pending() == before + 1


def test_policy_runs_before_status(env: Env) -> None:
    """A stranger learns nothing about an unready video's status."""
    assert env.play(env.video(StreamStatus.PROCESSING), hs({"sub": "bob"})).status_code == 403


# -- tokens -----------------------------------------------------------------------------------


def test_token_cache_reuses_within_the_window(make_env: Callable[..., Env]) -> None:
    env = make_env(playback_jwt_secret=SECRET, playback_token_ttl=600)
    video_id = env.video()
    minter = env.container.playback.minter if env.container.playback else None
    assert minter is not None and minter.cache_ttl == 60
    first = env.play(video_id, hs({})).json()
    second = env.play(video_id, hs({})).json()
    assert first["token"] == second["token"] and first["expiresAt"] == second["expiresAt"]


def test_lifetime_and_downloadable_settings(make_env: Callable[..., Env]) -> None:
    env = make_env(playback_jwt_secret=SECRET, playback_token_ttl=120, playback_downloadable=True)
    body = env.play(env.video(), hs({})).json()
    claims = verify_token(body["token"], keys={env.key.id: env.key.public_key})
    assert claims.downloadable
    assert 100 <= claims.exp - time.time() <= 120


def test_ip_binding_over_a_real_server(make_env: Callable[..., Env]) -> None:
    env = make_env(playback_jwt_secret=SECRET, playback_bind_ip=True)
    video_id = env.video()
    with serve_asgi(create_app(env.container, run_worker=False)) as url:
        response = httpx.get(
            f"{url}/api/v1/videos/{video_id}/playback",
            headers={"Authorization": f"Bearer {hs({})}"},
        )
    assert response.status_code == 200, response.text
    claims = verify_token(response.json()["token"], keys={env.key.id: env.key.public_key})
    assert [r.to_json() for r in claims.access_rules] == [
        {"type": "ip.src", "action": "allow", "ip": ["127.0.0.1"]},
        {"type": "any", "action": "block"},
    ]
    assert claims.allows(client_ip="127.0.0.1", country=None)
    assert not claims.allows(client_ip="192.0.2.7", country=None)
