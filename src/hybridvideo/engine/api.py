"""The engine's control API: Cloudflare Stream's REST API, served by hybridvideo.

``build_engine_router`` returns routes under ``/client/v4/accounts/{account_id}/stream``
that answer like ``api.cloudflare.com``: same paths, bodies, envelope and typed results, so
the official ``cloudflare`` SDK (and our own Stream client) works against the engine by
changing only ``base_url``. Every answer, errors included, is Cloudflare's envelope; a
route class of its own converts validation and domain errors here, so the app's global
handlers (and their ``{"error": ...}`` shape) never see these routes' failures.

Where Cloudflare documents nothing, the engine decides (all covered by tests):

* Auth: no ``Authorization: Bearer`` header → 401; a wrong token, or a path account id
  other than the configured one → 403; both with code 10000 "Authentication error", as
  Cloudflare answers a token without rights on an account. Auth is checked before the
  body is read, so an anonymous caller learns nothing about validation.
* Error codes: 10000 authentication, 10001 internal, 10002 invalid request, 10003 not
  found, 10004 conflict, 10011 storage limit (413), and 6007 for malformed JSON (the
  code Cloudflare's gateway uses for it).
* ``DELETE /{uid}`` answers ``"result": {}`` (the documented example); ``DELETE
  /webhook`` answers ``"result": ""`` (the schema says a string and shows none); a
  missing webhook is 404 for GET and DELETE.
* ``POST /copy``: ``input`` wins over ``url`` (they must agree when both are sent), a body
  ``creator`` over the ``Upload-Creator`` header, ``meta["downloaded-from"]`` is always
  the source and ``meta.name`` defaults to the URL's file name. Watermarks are refused
  (the engine has no profiles). If the ingest job cannot be queued the video is kept in
  ``error`` (``ERR_UNKNOWN``) and the webhook is notified, as for any failed processing.
* ``POST`` on the collection is Cloudflare's tus creation (``Tus-Resumable``), served by
  :mod:`hybridvideo.engine.uploads` when the engine is given ``create_upload``; a POST
  without ``Tus-Resumable`` (Cloudflare's basic form upload) is refused with 400.
* ``POST /{uid}`` changes only the fields sent; ``meta`` is replaced as a whole (what
  was sent is what is stored); ``null`` clears ``scheduledDeletion``, ``creator``,
  ``uploadExpiry`` and ``maxDurationSeconds`` and is refused for the other fields.
* ``scheduledDeletion`` must lie 30 to 1096 days after the upload (copy: now, with five
  minutes of slack for clock skew; edit: the video's creation, and in the future).
* ``POST /{uid}/token`` without ``id``/``pem`` signs with the engine's own key: one RSA
  key per account, made on first use and kept in ``engine_keys.private_pem`` (the only
  private key the engine stores), hidden from ``GET /keys`` and not revocable through the
  API. With ``id``/``pem`` the key must be a live key of the account and the PEM its own.
* ``include_counts``: ``total`` counts every video matching the filters and cursors,
  ``range`` the videos in this answer; both strings, as in Cloudflare's example.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from hybridvideo import errors
from hybridvideo.engine.models import EngineVideo, VideoEdit, VideoQuery
from hybridvideo.engine.shapes import (
    CopyBody,
    Creator,
    EditBody,
    State,
    TokenBody,
    WebhookBody,
    as_utc,
    check_deletion,
    envelope,
    file_name,
    http_url,
    key_json,
    rfc3339,
    storage_usage_json,
    video_json,
    webhook_json,
)
from hybridvideo.engine.store import EngineStore
from hybridvideo.stream.tokens import SigningKey, sign_token

log = logging.getLogger("hybridvideo.engine.api")

PREFIX = "/client/v4/accounts/{account_id}/stream"
# Cloudflare-style error codes (see the module notes).
AUTHENTICATION = 10000
INTERNAL = 10001
INVALID = 10002
NOT_FOUND = 10003
CONFLICT = 10004
STORAGE_FULL = 10011
MALFORMED_JSON = 6007
MAX_KEYS = 1000
CLOCK_SLACK = timedelta(minutes=5)
_DOMAIN_STATUS: tuple[tuple[type[errors.HybridVideoError], int, int], ...] = (
    (errors.InvalidInput, 400, INVALID),
    (errors.NotFound, 404, NOT_FOUND),
    (errors.Conflict, 409, CONFLICT),
    (errors.Unauthorized, 401, AUTHENTICATION),
    (errors.BackendUnavailable, 503, INTERNAL),
)


class CloudflareError(Exception):
    """An answer in Cloudflare's error shape: HTTP status, numeric code, message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _ok(result: Any, **extra: Any) -> JSONResponse:
    return JSONResponse(envelope(result, **extra))


def _fail(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse(envelope(None, errors=[{"code": code, "message": message}]), status)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    return "; ".join(parts) or "invalid request"


def error_response(exc: Exception, request: Request) -> JSONResponse:
    """Any failure of an engine route, in Cloudflare's envelope."""
    if isinstance(exc, CloudflareError):
        return _fail(exc.status, exc.code, exc.message)
    if isinstance(exc, RequestValidationError):
        if any(err.get("type") == "json_invalid" for err in exc.errors()):
            return _fail(400, MALFORMED_JSON, "Malformed JSON in request body")
        return _fail(400, INVALID, _validation_message(exc))
    if isinstance(exc, StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        return _fail(exc.status_code, INVALID if exc.status_code < 500 else INTERNAL, detail)
    if isinstance(exc, errors.HybridVideoError):
        for cls, status, code in _DOMAIN_STATUS:
            if isinstance(exc, cls):
                if status >= 500:
                    log.error("engine request failed", extra={"detail": exc.detail})
                return _fail(status, code, exc.message)
    log.error("unhandled engine error", exc_info=exc, extra={"path": request.url.path})
    return _fail(500, INTERNAL, "Internal error")


def _route_class(authorize: Callable[[Request], None]) -> type[APIRoute]:
    class CloudflareRoute(APIRoute):
        """Checks auth first and answers every failure in Cloudflare's envelope."""

        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def handle(request: Request) -> Response:
                try:
                    authorize(request)
                    return await handler(request)
                except Exception as exc:
                    return error_response(exc, request)

            return handle

    return CloudflareRoute


def build_engine_router(
    *,
    store: EngineStore,
    account_id: str,
    api_token: str,
    delivery_base: str,
    enqueue_ingest: Callable[[str], None],
    enqueue_webhook: Callable[[str, str], None] | None = None,
    delete_media: Callable[[str], None] | None = None,
    storage_minutes_limit: int | None = None,
    create_upload: Callable[[Request], Awaitable[Response]] | None = None,
) -> APIRouter:
    """The Cloudflare-compatible routes for one account.

    ``enqueue_ingest(uid)`` queues the download and encoding of a copied video;
    ``enqueue_webhook(account_id, uid)`` queues a webhook notification;
    ``delete_media(uid)`` removes a video's encoded files (idempotent), before its row;
    ``storage_minutes_limit`` is reported by ``/storage-usage`` and refuses copies with
    413 once reached (``None``: unlimited, reported as null); ``create_upload(request)``
    answers a tus creation ``POST`` on the collection (``None``: no such route).
    """
    if not api_token:
        raise errors.ConfigurationError("the engine API needs a non-empty API token")
    expected = api_token.encode()
    signing_keys: dict[str, SigningKey] = {}

    def authorize(request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise CloudflareError(
                401, AUTHENTICATION, "Authentication error: send 'Authorization: Bearer <token>'"
            )
        if not hmac.compare_digest(token.strip().encode(), expected):
            raise CloudflareError(403, AUTHENTICATION, "Authentication error")
        if request.path_params.get("account_id") != account_id:
            raise CloudflareError(403, AUTHENTICATION, "Authentication error")

    router = APIRouter(prefix=PREFIX, tags=["engine"], route_class=_route_class(authorize))

    def shape(video: EngineVideo) -> dict[str, Any]:
        return video_json(video, delivery_base=delivery_base)

    def own_video(uid: str) -> EngineVideo:
        video = store.get_video(uid)
        if video.account_id != account_id:
            raise errors.NotFound(f"video {uid} not found")
        return video

    def notify(uid: str) -> None:
        if enqueue_webhook is None:
            return
        try:
            enqueue_webhook(account_id, uid)
        except Exception:
            log.exception("could not queue the webhook", extra={"uid": uid})

    def engine_key() -> SigningKey:
        stored = store.internal_key(account_id)
        if stored is None or stored.private_pem is None:
            key = SigningKey.generate()
            pem = key.private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode("ascii")
            store.add_key(account_id, key.id, key.public_jwk(), private_pem=pem)
            signing_keys[key.id] = key
            return key
        if stored.id not in signing_keys:
            signing_keys[stored.id] = SigningKey.from_pem(stored.id, stored.private_pem)
        return signing_keys[stored.id]

    @router.post("/copy")
    def copy(
        body: CopyBody, upload_creator: Annotated[Creator | None, Header()] = None
    ) -> JSONResponse:
        source = body.input or body.url
        if not source:
            raise errors.InvalidInput("url is required")
        if body.input and body.url and body.input.strip() != body.url.strip():
            raise errors.InvalidInput("url and input name different videos: send one of them")
        source = http_url(source, "url")
        if body.watermark is not None:
            raise errors.InvalidInput("watermark profiles are not supported by this engine")
        deletion = check_deletion(body.scheduled_deletion, datetime.now(UTC) - CLOCK_SLACK)
        if storage_minutes_limit is not None:
            minutes, _ = store.storage_usage(account_id)
            if minutes >= storage_minutes_limit:
                raise CloudflareError(413, STORAGE_FULL, "Storage capacity exceeded")
        meta = dict(body.meta or {})
        meta["downloaded-from"] = source
        if not isinstance(meta.get("name"), str):
            meta["name"] = body.name or file_name(source)
        video = store.create_video(
            account_id,
            creator=body.creator if body.creator is not None else upload_creator,
            meta=meta,
            require_signed_urls=body.require_signed_urls,
            allowed_origins=body.allowed_origins,
            thumbnail_timestamp_pct=body.thumbnail_timestamp_pct,
            scheduled_deletion=deletion,
            source_url=source,
        )
        try:
            enqueue_ingest(video.uid)
        except Exception:
            log.exception("could not queue the ingest job", extra={"uid": video.uid})
            reason = ("ERR_UNKNOWN", "The video could not be queued for processing.")
            video = store.set_processing_state(video.uid, "error", error=reason)
            notify(video.uid)
        return _ok(shape(video))

    if create_upload is not None:
        tus_create = create_upload

        @router.post("")
        async def create_upload_route(request: Request) -> Response:
            if "tus-resumable" not in request.headers:
                raise errors.InvalidInput(
                    "this engine takes uploads with tus (send Tus-Resumable: 1.0.0) or from "
                    "a URL (POST /copy); basic form uploads are not supported"
                )
            return await tus_create(request)

    @router.get("/keys")
    def list_keys() -> JSONResponse:
        return _ok([key_json(k) for k in store.list_keys(account_id)])

    @router.post("/keys")
    def create_key() -> JSONResponse:
        if len(store.list_keys(account_id)) >= MAX_KEYS:
            raise errors.InvalidInput(f"an account can have at most {MAX_KEYS} signing keys")
        key = SigningKey.generate()
        stored = store.add_key(account_id, key.id, key.public_jwk())
        return _ok({**key.to_cloudflare(), "created": rfc3339(stored.created)})

    @router.delete("/keys/{key_id}")
    def revoke_key(key_id: str) -> JSONResponse:
        if store.get_key(account_id, key_id).internal:
            raise errors.NotFound(f"signing key {key_id} not found")
        store.revoke_key(account_id, key_id)
        return _ok("Revoked")

    @router.get("/webhook")
    def get_webhook() -> JSONResponse:
        webhook = store.get_webhook(account_id)
        if webhook is None:
            raise errors.NotFound("no webhook is configured for this account")
        return _ok(webhook_json(webhook))

    @router.put("/webhook")
    def put_webhook(body: WebhookBody) -> JSONResponse:
        url = body.camel or body.snake
        if not url:
            raise errors.InvalidInput("notificationUrl is required")
        return _ok(webhook_json(store.put_webhook(account_id, http_url(url, "notificationUrl"))))

    @router.delete("/webhook")
    def delete_webhook() -> JSONResponse:
        store.delete_webhook(account_id)
        return _ok("")

    @router.get("/storage-usage")
    def storage_usage(creator: Annotated[Creator | None, Query()] = None) -> JSONResponse:
        minutes, count = store.storage_usage(account_id, creator)
        usage = storage_usage_json(
            creator=creator, minutes=minutes, limit=storage_minutes_limit, count=count
        )
        return _ok(usage)

    @router.get("")
    def list_videos(
        after: datetime | None = None,
        before: datetime | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        asc: bool = False,
        limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
        status: State | None = None,
        search: str | None = None,
        creator: Annotated[Creator | None, Query()] = None,
        include_counts: bool = False,
        id: str | None = None,
        video_name: str | None = None,
    ) -> JSONResponse:
        lower, upper = after or start, before or end
        query = VideoQuery(
            after=None if lower is None else as_utc(lower),
            before=None if upper is None else as_utc(upper),
            asc=asc,
            limit=limit,
            status=status,
            search=search,
            creator=creator,
            uids=None if id is None else tuple(u.strip() for u in id.split(",") if u.strip()),
            video_name=video_name,
        )
        videos = store.list_videos(account_id, query)
        extra: dict[str, str] = {}
        if include_counts:
            extra = {"total": str(store.count_videos(account_id, query)), "range": str(len(videos))}
        return _ok([shape(v) for v in videos], **extra)

    @router.get("/{uid}")
    def get_video(uid: str) -> JSONResponse:
        return _ok(shape(own_video(uid)))

    @router.post("/{uid}")
    def edit_video(uid: str, body: EditBody) -> JSONResponse:
        video = own_video(uid)
        given = body.model_fields_set
        edit: dict[str, Any] = {name: getattr(body, name) for name in given}
        for name in ("meta", "require_signed_urls", "allowed_origins", "thumbnail_timestamp_pct"):
            if name in edit and edit[name] is None:
                raise errors.InvalidInput(f"{EditBody.model_fields[name].alias} cannot be null")
        if edit.get("scheduled_deletion") is not None:
            edit["scheduled_deletion"] = check_deletion(body.scheduled_deletion, video.created)
        if edit.get("upload_expiry") is not None:
            edit["upload_expiry"] = as_utc(edit["upload_expiry"])
        return _ok(shape(store.update_video(uid, VideoEdit(**edit))))

    @router.delete("/{uid}")
    def delete_video(uid: str) -> JSONResponse:
        own_video(uid)
        if delete_media is not None:
            delete_media(uid)
        store.delete_video(uid)
        return _ok({})

    @router.post("/{uid}/token")
    def create_token(uid: str, body: TokenBody | None = None) -> JSONResponse:
        own_video(uid)
        body = body or TokenBody()
        if (body.id is None) != (body.pem is None):
            raise errors.InvalidInput("id and pem must be sent together")
        if body.id is not None and body.pem is not None:
            try:
                stored = store.get_key(account_id, body.id)
            except errors.NotFound:
                raise errors.InvalidInput(f"signing key {body.id} not found") from None
            key = SigningKey.from_pem_b64(body.id, body.pem)
            if key.public_jwk()["n"] != stored.public_jwk.get("n"):
                raise errors.InvalidInput(f"pem is not the private key of signing key {body.id}")
        else:
            key = engine_key()
        now = time.time()
        token = sign_token(
            key,
            uid,
            exp=body.exp,
            nbf=body.nbf if body.nbf is not None else int(now) - 3600,
            downloadable=body.downloadable,
            access_rules=body.access_rules,
            now=now,
        )
        return _ok({"token": token})

    return router


__all__ = ["PREFIX", "CloudflareError", "build_engine_router", "error_response"]
