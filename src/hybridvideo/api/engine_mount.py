"""Mount the built-in engine (control API, tus uploads, delivery) on an app, wired to the
queue. Upload URLs share the upload locker with ``/files`` (ids never collide).

The engine's optional modes are mounted here too, so ``serve`` and the engine-only app of
``hybridvideo engine`` get the same: the API rate limit (:mod:`hybridvideo.engine.limits`)
outside the fault injection (:mod:`hybridvideo.engine.faults`), both inside the app's CORS
and request-context middleware (so refusals still carry CORS headers and a request id).
In accept-only mode a new video is made ready by the request that recorded it (after
its answer was built, so the answer still says ``downloading`` as Cloudflare's does), not
by an ingest job: see :mod:`hybridvideo.jobs.engine_ingest`.
"""

from __future__ import annotations

import logging
import shutil
from urllib.parse import urlsplit

from fastapi import FastAPI

from hybridvideo.container import Container
from hybridvideo.engine.api import build_engine_router
from hybridvideo.engine.delivery import build_delivery_router
from hybridvideo.engine.faults import FaultInjection
from hybridvideo.engine.limits import ApiRateLimit
from hybridvideo.engine.runtime import EngineRuntime
from hybridvideo.engine.uploads import build_engine_uploads
from hybridvideo.jobs import engine_ingest, engine_webhook
from hybridvideo.stream.ratelimit import RateLimiter

log = logging.getLogger("hybridvideo.engine")


def mount_engine(app: FastAPI, container: Container) -> None:
    rt = container.engine
    if rt is None:
        return

    def enqueue_webhook(_account_id: str, uid: str) -> None:
        engine_webhook.enqueue_for(container, uid)

    def enqueue_ingest(uid: str) -> None:
        if not rt.accept_only:
            container.queue.enqueue(engine_ingest.NAME, {"uid": uid})
            return
        if engine_ingest.ingest(rt, uid) != "ready":
            return
        try:  # the video is ready: a webhook that cannot be queued must not undo that
            enqueue_webhook(rt.account_id, uid)
        except Exception:
            log.exception("could not queue the webhook", extra={"uid": uid})

    def delete_media(uid: str) -> None:
        shutil.rmtree(rt.video_dir(uid), ignore_errors=True)

    uploads = build_engine_uploads(
        rt,
        enqueue_ingest=enqueue_ingest,
        notify=lambda uid: enqueue_webhook(rt.account_id, uid),
        locker=container.upload_locker,
    )
    app.include_router(uploads.router)
    app.include_router(
        build_engine_router(
            store=rt.store,
            account_id=rt.account_id,
            api_token=rt.api_token,
            delivery_base=rt.delivery_base,
            enqueue_ingest=enqueue_ingest,
            enqueue_webhook=enqueue_webhook,
            delete_media=delete_media,
            create_upload=uploads.create,
        )
    )
    prefix = urlsplit(rt.delivery_base).path.rstrip("/") or "/delivery"
    app.include_router(build_delivery_router(rt, prefix=prefix))
    _mount_modes(app, rt)


def _mount_modes(app: FastAPI, rt: EngineRuntime) -> None:
    """The rate limit and test modes; each one that is on says so at start."""
    if rt.faults is not None:
        app.add_middleware(FaultInjection, spec=rt.faults)  # added first: the inner one
        log.warning(
            "ENGINE FAULT INJECTION IS ON: the Stream API will fail on purpose "
            "(HYBRIDVIDEO_ENGINE_FAULTS, a test mode; never use it in production)",
            extra={"faults": rt.faults.describe()},
        )
    if rt.api_rate_limit > 0:
        limiter = RateLimiter(rt.api_rate_limit, rt.api_rate_window)
        app.add_middleware(ApiRateLimit, limiter=limiter)
        log.info(
            "engine API rate limit on",
            extra={"limit": rt.api_rate_limit, "window_seconds": rt.api_rate_window},
        )
    if rt.accept_only:
        log.warning(
            "ENGINE ACCEPT-ONLY MODE IS ON: copies and uploads become ready without being "
            "fetched or encoded, and cannot be played (HYBRIDVIDEO_ENGINE_ACCEPT_ONLY, a "
            "test mode)"
        )
