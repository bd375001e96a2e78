"""The engine's tus endpoint: Cloudflare Stream's resumable and direct creator uploads.

Cloudflare takes large files with tus 1.0.0 on the video collection itself: ``POST
/client/v4/accounts/{acct}/stream`` with ``Tus-Resumable``, ``Upload-Length`` and
``Upload-Metadata`` answers 201 with the upload URL in ``Location`` and the video's uid in
a ``stream-media-id`` header; PATCHes to that URL carry the bytes. The engine serves the
same with the project's tus core (:func:`build_tus_router`) and adds only what an upload
*means* to Stream, through the core's :class:`UploadEvents`, ``authorize``, ``chunk_rule``
and ``creation_headers`` hooks:

* **Creation** makes the video at once, in Cloudflare's ``pendingupload`` state, with the
  settings ``Upload-Metadata`` names (keys are matched case-insensitively): ``name``
  (``meta.name``), ``requiresignedurls`` (its presence means true, whatever the value),
  ``allowedorigins`` (comma-separated), ``thumbnailtimestamppct`` (0.0-1.0),
  ``scheduleddeletion`` (RFC 3339, 30-1096 days ahead), ``maxdurationseconds`` (1-36000;
  a longer video fails with ``ERR_DURATION_EXCEED_CONSTRAINT`` before it is encoded) and
  ``expiry`` (RFC 3339: when the upload URL stops working). ``watermark`` is refused, as
  on ``/copy`` (the engine has no watermark profiles); other keys are ignored. The
  ``Upload-Creator`` header sets ``creator``. Bad values are 400 in Cloudflare's envelope.
* **Chunks** follow Cloudflare's documented rules (:func:`cloudflare_chunk_rule`): at most
  200 MiB each; every chunk but the last at least 5 MiB and a multiple of 256 KiB; the
  size must be announced with ``Content-Length``. Anything else is 400 with the rule in
  the body, refused before a byte is read.
* **The last byte** moves the upload's file to the video's source path (uploads live on
  the media disk, so it is a rename), the video goes to ``queued`` and the usual ingest
  job encodes it, exactly like a copied video. The upload is then deleted: its URL works
  once (a HEAD afterwards is 404).
* **Direct creator uploads** (``?direct_user=true``): the API token is needed to create
  the upload, not to use it. The upload URL, whose 128-bit random id is the credential,
  then takes HEAD/PATCH/DELETE without ``Authorization``; an upload made without
  ``direct_user`` still needs the token (401 otherwise).
* **Expiry**: every upload has a hard deadline, the video's ``uploadExpiry``: ``expiry``
  from the metadata, else 30 minutes for a direct upload (Cloudflare's default) and 24
  hours for one made with the token (Cloudflare documents none). After it the URL answers
  410. :meth:`EngineUploadEvents.sweep` (a periodic job) deletes expired uploads and
  moves their videos from ``pendingupload`` to ``error`` (``ERR_UNKNOWN``, "The upload
  expired before it was completed.") and notifies the webhook, so an abandoned upload
  stops reserving storage and the app hears about it. A PATCH already writing when the
  deadline passes is allowed to finish. A client ``DELETE`` of the upload
  deletes its still-empty video.

Upload URLs are ``/client/v4/accounts/{acct}/stream/tus/{upload id}``, absolute in
``Location`` (made from ``upload_base``, else from the URL the creating request reached):
Cloudflare's docs tell clients not to parse it, so any opaque URL is compatible.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import shutil
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import anyio.to_thread
from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

from hybridvideo import errors
from hybridvideo.engine.api import CLOCK_SLACK, INVALID, PREFIX, STORAGE_FULL, CloudflareError
from hybridvideo.engine.fetch import MAX_SIZE
from hybridvideo.engine.models import VideoQuery
from hybridvideo.engine.runtime import EngineRuntime
from hybridvideo.engine.shapes import as_utc, check_deletion
from hybridvideo.engine.source import ERR_UNKNOWN
from hybridvideo.engine.store import MAX_CREATOR, new_uid
from hybridvideo.ingest.tus.handler import (
    PRINCIPAL_NOTE,
    Locker,
    Principal,
    TusOptions,
    build_tus_router,
)
from hybridvideo.ingest.tus.protocol import Capabilities, TusError, UploadInfo, format_expires
from hybridvideo.ingest.tus.store import LocalUploadStore

log = logging.getLogger("hybridvideo.engine.uploads")

#: Cloudflare's chunk rules (https://developers.cloudflare.com/stream/uploading-videos/
#: resumable-uploads/): minimum unless last, maximum, and the multiple unless last.
MIN_CHUNK = 5_242_880
MAX_CHUNK = 209_715_200
CHUNK_MULTIPLE = 262_144
#: Cloudflare's default ``expiry`` of a direct creator upload.
DIRECT_UPLOAD_EXPIRY = timedelta(minutes=30)
#: Ours for an upload made with the token (Cloudflare documents none).
UPLOAD_EXPIRY = timedelta(hours=24)
#: The furthest ``expiry`` a client may ask for.
MAX_UPLOAD_EXPIRY = timedelta(days=7)
MAX_DURATION_SECONDS = 36000
MAX_ORIGIN = 255
EXPIRED_TEXT = "The upload expired before it was completed."
#: A complete upload untouched this long lost its hand-off (a crash): the sweep redoes it.
HANDOFF_GRACE = timedelta(minutes=2)
#: Folders a crash left without a sidecar are removed after this.
ORPHAN_AGE = timedelta(days=1)

#: Who owns an upload (the tus core's principal note): the account, or anyone holding a
#: direct upload's URL.
ACCOUNT_PRINCIPAL = Principal("engine-account", is_admin=True)
DIRECT_PRINCIPAL = Principal("engine-direct-user")

NOTE_UID = "engine_uid"
NOTE_SETTINGS = "engine_settings"
NOTE_EXPIRES = "engine_expires"
NOTE_CREATOR = "engine_creator"

#: What the engine's tus endpoint supports; OPTIONS advertises exactly this.
CAPABILITIES = Capabilities(
    creation=True, expiration=True, checksum=True, termination=True, max_size=MAX_SIZE
)


# -- metadata ---------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadSettings:
    """The video settings an upload's metadata asked for (validated)."""

    name: str | None = None
    require_signed_urls: bool = False
    allowed_origins: tuple[str, ...] = ()
    thumbnail_timestamp_pct: float = 0.0
    scheduled_deletion: datetime | None = None
    max_duration_seconds: int | None = None
    expiry: datetime | None = None

    def to_note(self) -> str:
        """As a string note on the upload, to cross from ``before_create`` to ``created``."""
        return json.dumps(
            {
                "name": self.name,
                "require_signed_urls": self.require_signed_urls,
                "allowed_origins": list(self.allowed_origins),
                "thumbnail_timestamp_pct": self.thumbnail_timestamp_pct,
                "scheduled_deletion": _iso(self.scheduled_deletion),
                "max_duration_seconds": self.max_duration_seconds,
                "expiry": _iso(self.expiry),
            }
        )

    @classmethod
    def from_note(cls, text: str) -> UploadSettings:
        data: dict[str, Any] = json.loads(text)
        return cls(
            name=data["name"],
            require_signed_urls=bool(data["require_signed_urls"]),
            allowed_origins=tuple(data["allowed_origins"]),
            thumbnail_timestamp_pct=float(data["thumbnail_timestamp_pct"]),
            scheduled_deletion=_from_iso(data["scheduled_deletion"]),
            max_duration_seconds=data["max_duration_seconds"],
            expiry=_from_iso(data["expiry"]),
        )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _from_iso(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _date(key: str, value: str | None) -> datetime:
    try:
        return as_utc(datetime.fromisoformat((value or "").strip()))
    except ValueError:
        raise errors.InvalidInput(
            f"{key} must be an RFC 3339 date such as 2030-01-02T03:04:05Z"
        ) from None


def settings_from_metadata(metadata: Mapping[str, str | None], *, now: datetime) -> UploadSettings:
    """The settings ``Upload-Metadata`` names (see the module notes); ``InvalidInput``."""
    given = {key.lower(): value for key, value in metadata.items()}
    if "watermark" in given:
        raise errors.InvalidInput("watermark profiles are not supported by this engine")
    pct = 0.0
    if "thumbnailtimestamppct" in given:
        try:
            pct = float((given["thumbnailtimestamppct"] or "").strip())
        except ValueError:
            pct = -1.0
        if not 0.0 <= pct <= 1.0:  # also refuses nan
            raise errors.InvalidInput("thumbnailtimestamppct must be a number from 0.0 to 1.0")
    origins = tuple(o.strip() for o in (given.get("allowedorigins") or "").split(",") if o.strip())
    if any(len(origin) > MAX_ORIGIN for origin in origins):
        raise errors.InvalidInput(f"each of allowedorigins must be at most {MAX_ORIGIN} characters")
    max_duration = None
    if "maxdurationseconds" in given:
        text = (given["maxdurationseconds"] or "").strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 5):
            text = "0"
        max_duration = int(text)
        if not 1 <= max_duration <= MAX_DURATION_SECONDS:
            raise errors.InvalidInput(
                f"maxDurationSeconds must be a whole number from 1 to {MAX_DURATION_SECONDS}"
            )
    deletion = None
    if "scheduleddeletion" in given:
        deletion = check_deletion(
            _date("scheduleddeletion", given["scheduleddeletion"]), now - CLOCK_SLACK
        )
    expiry = None
    if "expiry" in given:
        expiry = _date("expiry", given["expiry"])
        if expiry <= now:
            raise errors.InvalidInput("expiry must be in the future")
        if expiry > now + MAX_UPLOAD_EXPIRY:
            raise errors.InvalidInput(f"expiry must be at most {MAX_UPLOAD_EXPIRY.days} days ahead")
    return UploadSettings(
        name=given.get("name"),
        require_signed_urls="requiresignedurls" in given,
        allowed_origins=origins,
        thumbnail_timestamp_pct=pct,
        scheduled_deletion=deletion,
        max_duration_seconds=max_duration,
        expiry=expiry,
    )


def upload_deadline(settings: UploadSettings, *, direct: bool, now: datetime) -> datetime:
    """When the upload URL stops working (the video's ``uploadExpiry``)."""
    if settings.expiry is not None:
        return settings.expiry
    return now + (DIRECT_UPLOAD_EXPIRY if direct else UPLOAD_EXPIRY)


# -- chunk rule -------------------------------------------------------------------------


def cloudflare_chunk_rule(info: UploadInfo, offset: int, content_length: int | None) -> None:
    """Refuse a PATCH that breaks Cloudflare's chunk rules (400, the rule in the message).

    ``info.length`` is always known here: the engine does not defer lengths.
    """
    if content_length is None:
        raise errors.InvalidInput(
            "send each chunk with a Content-Length header (chunked bodies are not accepted)"
        )
    if content_length > MAX_CHUNK:
        raise errors.InvalidInput(
            f"a chunk may be at most {MAX_CHUNK:,} bytes (200 MiB); this one is "
            f"{content_length:,} bytes"
        )
    if info.length is not None and offset + content_length >= info.length:
        return  # the last chunk: any size
    if content_length < MIN_CHUNK:
        raise errors.InvalidInput(
            f"every chunk but the last must be at least {MIN_CHUNK:,} bytes (5 MiB); this "
            f"one is {content_length:,} bytes at offset {offset:,} of {info.length:,}"
        )
    if content_length % CHUNK_MULTIPLE:
        raise errors.InvalidInput(
            f"every chunk but the last must be a multiple of {CHUNK_MULTIPLE:,} bytes "
            f"(256 KiB); this one is {content_length:,} bytes"
        )


# -- events -----------------------------------------------------------------------------


class EngineUploadEvents:
    """What an upload means to the engine (see the module notes); every method blocks.

    ``enqueue_ingest(uid)`` queues the encode; ``notify(uid)`` the account's webhook.
    Each step is safe to repeat: a hand-off interrupted by a crash is redone by
    :meth:`sweep`.
    """

    def __init__(
        self,
        rt: EngineRuntime,
        store: LocalUploadStore,
        *,
        enqueue_ingest: Callable[[str], object],
        notify: Callable[[str], None] | None = None,
        storage_minutes_limit: int | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.rt = rt
        self.store = store
        self._enqueue = enqueue_ingest
        self._notify_hook = notify
        self._limit = storage_minutes_limit
        self._clock = clock

    def before_create(self, info: UploadInfo, principal: Principal) -> Mapping[str, str]:
        now = self._clock()
        try:
            settings = settings_from_metadata(info.metadata, now=now)
            creator = principal.notes.get(NOTE_CREATOR)
            if creator is not None and len(creator) > MAX_CREATOR:
                raise errors.InvalidInput(
                    f"Upload-Creator must be at most {MAX_CREATOR} characters"
                )
        except errors.InvalidInput as exc:
            raise CloudflareError(400, INVALID, exc.message) from None
        if self._limit is not None:
            minutes, _ = self.rt.store.storage_usage(self.rt.account_id)
            if minutes >= self._limit:
                raise CloudflareError(413, STORAGE_FULL, "Storage capacity exceeded")
        direct = principal.id == DIRECT_PRINCIPAL.id
        deadline = upload_deadline(settings, direct=direct, now=now)
        return {
            NOTE_UID: new_uid(),
            NOTE_SETTINGS: settings.to_note(),
            NOTE_EXPIRES: deadline.isoformat(),
        }

    def created(self, info: UploadInfo) -> None:
        """The upload exists: make its video (``pendingupload``) and arm the deadline."""
        settings = UploadSettings.from_note(info.notes[NOTE_SETTINGS])
        deadline = datetime.fromisoformat(info.notes[NOTE_EXPIRES])
        self.rt.store.create_video(
            self.rt.account_id,
            uid=info.notes[NOTE_UID],
            state="pendingupload",
            creator=info.notes.get(NOTE_CREATOR),
            meta={} if settings.name is None else {"name": settings.name},
            require_signed_urls=settings.require_signed_urls,
            allowed_origins=settings.allowed_origins,
            thumbnail_timestamp_pct=settings.thumbnail_timestamp_pct,
            scheduled_deletion=settings.scheduled_deletion,
            upload_expiry=deadline,
            max_duration_seconds=settings.max_duration_seconds,
        )
        self.store.update(info.id, expires_at=deadline)

    def completed(self, info: UploadInfo, sha256: str | None) -> None:
        """The last byte is durable: hand the file to ingest, then drop the upload."""
        uid = info.notes.get(NOTE_UID, "")
        try:
            video = self.rt.store.get_video(uid)
        except errors.NotFound:  # deleted while uploading (or never made): nothing to do
            self._discard(info.id)
            return
        source = self.rt.source_path(uid)
        data = self.store.data_path(info.id)
        if data.exists():
            source.parent.mkdir(parents=True, exist_ok=True)
            with data.open("r+b") as fh:
                fh.truncate(info.offset)  # an unrecorded tail (crash) is not the video's
            shutil.move(data, source)  # a rename: the uploads live on the media disk
            _fsync_dir(source.parent)  # durable before the upload is deleted
        if video.state == "pendingupload":
            self.rt.store.set_processing_state(uid, "queued", size=info.offset)
        try:
            self._enqueue(uid)
        except Exception:
            log.exception("could not queue the ingest job", extra={"uid": uid})
            reason = (ERR_UNKNOWN, "The video could not be queued for processing.")
            self.rt.store.set_processing_state(uid, "error", error=reason)
            self._notify(uid)
        self._discard(info.id)

    def terminated(self, info: UploadInfo) -> None:
        """The client cancelled: its video never got a byte, so it goes too."""
        uid = info.notes.get(NOTE_UID, "")
        with contextlib.suppress(errors.NotFound):
            if self.rt.store.get_video(uid).state == "pendingupload":
                shutil.rmtree(self.rt.video_dir(uid), ignore_errors=True)
                self.rt.store.delete_video(uid)

    def sweep(self, now: datetime | None = None) -> int:
        """Delete expired uploads, fail their videos, redo lost hand-offs; how many acted on.

        Only uploads idle for :data:`HANDOFF_GRACE` are touched, so a PATCH still writing
        (or handing off) when the deadline passes is never cut. A video still
        ``pendingupload`` after its ``uploadExpiry``, with no live upload, becomes
        ``error``, even if its upload vanished some other way (a wiped folder).
        """
        now = now or self._clock()
        acted = 0
        live: set[str] = set()
        for info in list(self.store.list_uploads()):
            idle = self._idle(info.id, now)
            expired = info.expires_at is not None and now >= info.expires_at
            if info.is_complete and idle:  # the PATCH that finished it died mid hand-off
                self.completed(info, None)
                acted += 1
            elif expired and idle and not info.is_complete:
                self._discard(info.id)
                acted += 1
            else:
                live.add(info.notes.get(NOTE_UID, ""))
        for video in self.rt.store.list_videos(
            self.rt.account_id, VideoQuery(status="pendingupload", asc=True)
        ):
            expiry = video.upload_expiry
            if video.uid not in live and expiry is not None and as_utc(expiry) <= now:
                self.rt.store.set_processing_state(
                    video.uid, "error", error=(ERR_UNKNOWN, EXPIRED_TEXT)
                )
                self._notify(video.uid)
                acted += 1
        self.store.purge_orphans(now - ORPHAN_AGE)
        return acted

    def _idle(self, upload_id: str, now: datetime) -> bool:
        try:
            touched = self.store.data_path(upload_id).stat().st_mtime
        except FileNotFoundError:  # moved, but the upload was not deleted yet
            touched = 0.0
        return now.timestamp() - touched >= HANDOFF_GRACE.total_seconds()

    def _discard(self, upload_id: str) -> None:
        with contextlib.suppress(TusError):
            self.store.terminate(upload_id)

    def _notify(self, uid: str) -> None:
        if self._notify_hook is None:
            return
        try:
            self._notify_hook(uid)
        except Exception:
            log.exception("could not queue the webhook", extra={"uid": uid})


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- HTTP -------------------------------------------------------------------------------


def upload_prefix(account_id: str) -> str:
    """Where an account's upload URLs live (their last segment is the upload id)."""
    return PREFIX.replace("{account_id}", account_id) + "/tus"


def _creation_headers(info: UploadInfo) -> dict[str, str]:
    headers = {"stream-media-id": info.notes.get(NOTE_UID, "")}
    expires = info.notes.get(NOTE_EXPIRES)
    if expires is not None:
        headers["Upload-Expires"] = format_expires(datetime.fromisoformat(expires))
    return headers


def _authorizer(
    api_token: str, store: LocalUploadStore
) -> Callable[[Request], Awaitable[Principal]]:
    expected = api_token.encode()

    async def authorize(request: Request) -> Principal:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        upload_id = request.path_params.get("upload_id")
        if scheme.lower() == "bearer" and token.strip():
            if not hmac.compare_digest(token.strip().encode(), expected):
                raise errors.Unauthorized("Authentication error")
            if upload_id is not None:
                return ACCOUNT_PRINCIPAL
            creator = request.headers.get("upload-creator")
            notes = {NOTE_CREATOR: creator} if creator is not None else {}
            direct = request.query_params.get("direct_user", "").lower() == "true"
            owner = DIRECT_PRINCIPAL if direct else ACCOUNT_PRINCIPAL
            return Principal(owner.id, is_admin=owner.is_admin, notes=notes)
        if upload_id is not None:
            info = await anyio.to_thread.run_sync(store.get, upload_id)  # 404 if unknown
            if info.notes.get(PRINCIPAL_NOTE) == DIRECT_PRINCIPAL.id:
                return DIRECT_PRINCIPAL
        raise errors.Unauthorized(
            "send 'Authorization: Bearer <token>' (only direct_user upload URLs work without)"
        )

    return authorize


@dataclass(frozen=True)
class EngineUploads:
    """The pieces the engine mounts: ``router`` serves the upload URLs, ``create`` answers
    the tus ``POST`` on the collection (the control API routes it there), ``events`` is
    also what the expiry sweep runs."""

    router: APIRouter
    create: Callable[[Request], Awaitable[Response]]
    events: EngineUploadEvents


def upload_store(rt: EngineRuntime) -> LocalUploadStore:
    return LocalUploadStore(rt.upload_root)


def build_engine_uploads(
    rt: EngineRuntime,
    *,
    enqueue_ingest: Callable[[str], object],
    notify: Callable[[str], None] | None = None,
    locker: Locker | None = None,
    upload_base: str | None = None,
    storage_minutes_limit: int | None = None,
) -> EngineUploads:
    """The engine's tus endpoint over :func:`build_tus_router` (see the module notes).

    ``locker`` keeps one writer per upload (across nodes when it is Redis);
    ``upload_base`` is the public origin put in ``Location`` (default: the origin the
    creating request reached).
    """
    store = upload_store(rt)
    events = EngineUploadEvents(
        rt,
        store,
        enqueue_ingest=enqueue_ingest,
        notify=notify,
        storage_minutes_limit=storage_minutes_limit,
    )
    prefix = upload_prefix(rt.account_id)
    options = TusOptions(
        prefix=prefix,
        locker=locker,
        events=events,
        authorize=_authorizer(rt.api_token, store),
        chunk_rule=cloudflare_chunk_rule,
        creation_headers=_creation_headers,
    )
    tus = build_tus_router(store, CAPABILITIES, options)
    router = APIRouter()
    collection: Callable[[Request], Awaitable[Response]] | None = None
    for route in tus.routes:
        # Creation is served on the Cloudflare path by the control API, nowhere else.
        if isinstance(route, APIRoute) and route.path.rstrip("/") == prefix:
            collection = collection or route.endpoint
        else:
            router.routes.append(route)
    if collection is None:
        raise errors.ConfigurationError("the tus router has no creation route")
    create_in_tus = collection

    async def create(request: Request) -> Response:
        response = await create_in_tus(request)
        location = response.headers.get("location")
        if location is not None and location.startswith("/"):
            response.headers["location"] = urljoin(upload_base or str(request.base_url), location)
        return response

    return EngineUploads(router=router, create=create, events=events)


__all__ = [
    "ACCOUNT_PRINCIPAL",
    "CAPABILITIES",
    "CHUNK_MULTIPLE",
    "DIRECT_PRINCIPAL",
    "DIRECT_UPLOAD_EXPIRY",
    "MAX_CHUNK",
    "MIN_CHUNK",
    "UPLOAD_EXPIRY",
    "EngineUploadEvents",
    "EngineUploads",
    "UploadSettings",
    "build_engine_uploads",
    "cloudflare_chunk_rule",
    "settings_from_metadata",
    "upload_deadline",
    "upload_prefix",
    "upload_store",
]
