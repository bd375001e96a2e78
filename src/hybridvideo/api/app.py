"""``create_app(container)``: the FastAPI application, with nothing built at import time."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hybridvideo import __version__
from hybridvideo.api import errors
from hybridvideo.api.routers import direct_uploads, health, uploads, videos
from hybridvideo.container import Container
from hybridvideo.errors import ConfigurationError
from hybridvideo.jobs import migration_run

log = logging.getLogger("hybridvideo.http")
#: How long shutdown waits for the embedded worker's running jobs.
WORKER_STOP_SECONDS = 20.0


def _operation_id(route: APIRoute) -> str:
    """Stable OpenAPI operation ids for generated clients (``videos-list_videos``)."""
    tag = route.tags[0] if route.tags else "default"
    return f"{tag}-{route.name}"


def create_app(
    container: Container, *, run_worker: bool | None = None, engine_only: bool = False
) -> FastAPI:
    """The app over an already-built container; ``run_worker`` starts the in-process worker.

    ``engine_only`` serves just the built-in engine (its API, delivery and health), for
    `hybridvideo engine` on a node of its own.
    """
    if container.admin_token is None:
        raise ConfigurationError(
            "the HTTP app needs an admin token: set HYBRIDVIDEO_ADMIN_TOKEN or build the "
            "container with serving=True"
        )
    embedded = container.settings.runs_embedded_worker if run_worker is None else run_worker

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        handle = None
        if embedded:
            handle = container.queue.start_background(container.settings.worker_concurrency)
            app.state.worker = handle
            log.info("embedded worker started", extra={"queue": container.queue.backend})
        try:
            yield
        finally:
            if handle is not None:
                # Migration runs last hours: ask them to stop now (each finishes its videos
                # in flight and is queued again) rather than outlive the stop timeout.
                migration_run.stop_runs(container)
            if handle is not None and not handle.stop(timeout=WORKER_STOP_SECONDS):
                log.error(
                    "embedded worker still busy after %s s; exiting anyway, its running "
                    "jobs are lost and their locks expire after their lock_ttl",
                    WORKER_STOP_SECONDS,
                )

    app = FastAPI(
        title="hybridvideo",
        version=__version__,
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    app.state.container = container
    app.state.worker = None
    errors.install(app)
    app.include_router(health.router)
    if not engine_only:
        app.include_router(videos.router)
        from hybridvideo.api.routers import migrations, stream_webhooks, video_delivery

        app.include_router(video_delivery.router)
        from hybridvideo.api.routers import playback

        app.include_router(playback.router)
        app.include_router(playback.grants_router)
        app.include_router(migrations.router)
        app.include_router(stream_webhooks.build_router(replay_cache=container.webhook_replay))
        app.include_router(uploads.router)
        app.include_router(direct_uploads.router)
        from hybridvideo.api.routers.admin_pages import build_admin_pages_router

        app.include_router(build_admin_pages_router())
        from hybridvideo.api.routers import player_pages, telemetry

        app.include_router(telemetry.build_router())
        app.include_router(player_pages.build_player_pages_router(container.settings))
        from hybridvideo.api.ingest_mount import mount_ingest

        mount_ingest(app, container)
        _mount_metrics(app, container)
        if container.archive.capabilities.serves_signed_urls:
            from hybridvideo.api.routers import archive_files

            app.include_router(archive_files.build_router(container.archive))
    if container.engine is not None:
        from hybridvideo.api.engine_mount import mount_engine

        mount_engine(app, container)

    _mount_cors(app, container)  # also for `hybridvideo engine`: browsers upload to it
    app.add_middleware(RequestContext)

    return app


class RequestContext:
    """Request id, access log and the last-resort 500 for every HTTP request.

    Plain ASGI on purpose: Starlette's ``BaseHTTPMiddleware`` (``@app.middleware``) wraps
    ``receive`` in a task group per message, which cost ~0.6 CPU-s per GB of tus upload
    on the event loop (bench/RESULTS.md, "Ingest (tus): notes").
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else ""
        # os.urandom(16).hex(): the same 128 random bits as uuid4().hex at a fifth the cost.
        request_id = request_id or os.urandom(16).hex()
        scope.setdefault("state", {})["request_id"] = request_id  # request.state.request_id
        started = time.perf_counter()
        status = 500
        response_started = False
        id_header = (b"x-request-id", request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                # Ours replaces any the app set (as MutableHeaders did), without building one.
                message["headers"] = [
                    *(h for h in message.get("headers") or () if h[0].lower() != b"x-request-id"),
                    id_header,
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:  # not a domain error: a bug; answer in our shape, log it
            if response_started:
                raise
            response = await errors.unexpected(Request(scope, receive), exc)
            await response(scope, receive, send_with_id)
        finally:
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                    "request_id": request_id,
                },
            )


def _mount_metrics(app: FastAPI, container: Container) -> None:
    """``/metrics`` for Prometheus: behind the admin token unless made public."""
    from hybridvideo.api.deps import AdminDep
    from hybridvideo.api.routers.metrics import build_metrics_router

    registry = getattr(container.tus_metrics, "registry", None)
    if registry is None:
        return
    router = build_metrics_router(registry)
    deps = [] if container.settings.metrics_public else [AdminDep]
    app.include_router(router, dependencies=deps)


def _mount_cors(app: FastAPI, container: Container) -> None:
    """CORS for the browser admin and apps' upload pages (tus headers exposed)."""
    origins = container.settings.cors_origins
    if not origins:
        return
    from starlette.middleware.cors import CORSMiddleware

    from hybridvideo.api.ingest_mount import TUS_EXPOSED_HEADERS

    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["*"],
        expose_headers=list(TUS_EXPOSED_HEADERS),
        max_age=600,
    )
