"""A delivery world on real parts: SQLite catalog, local archive, the engine's real API.

The engine's Cloudflare-compatible router runs in-process (starlette's TestClient as the
SDK's transport), so our Stream client makes real copy/get/list calls with the real
envelope. Only the encoder is left out: ``finish`` records the result an ingest would
(``ready`` or ``error`` with a Cloudflare code), which is what delivery reacts to.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from hybridvideo.api import errors as app_errors
from hybridvideo.archive.local import LocalArchive
from hybridvideo.catalog.sql import SqlCatalog, create_catalog_engine, upgrade
from hybridvideo.delivery.service import DeliveryService
from hybridvideo.domain.video import StreamStatus, VideoState
from hybridvideo.engine import migrate as engine_migrate
from hybridvideo.engine.api import build_engine_router
from hybridvideo.engine.store import EngineStore
from hybridvideo.errors import BackendUnavailable
from hybridvideo.media.probe import probe
from hybridvideo.stream.base import StreamProvider, StreamVideo
from hybridvideo.stream.cloudflare import CloudflareStream
from hybridvideo.videos.service import VideoService

NON_VIDEO = ("ERR_NON_VIDEO", "The file is not a video")
ACCOUNT = "d0" * 16
TOKEN = "delivery-engine-token-0123456789"


class ViaTestClient(httpx.BaseTransport):
    """The SDK wants an ``httpx.Client``; starlette's TestClient is an ``httpx2`` one."""

    def __init__(self, client: TestClient, seen: list[str] | None = None) -> None:
        self._client = client
        self._seen = seen

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._seen is not None:
            self._seen.append(f"{request.method} {request.url.path}")
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
class World:
    catalog: SqlCatalog
    catalog_engine: Engine
    archive: LocalArchive
    videos: VideoService
    engine: EngineStore
    stream: CloudflareStream
    service: DeliveryService
    copies: list[str] = field(default_factory=list)
    #: ``METHOD /path`` of every call our Stream client made to the engine.
    requests: list[str] = field(default_factory=list)

    def add(self, path: Path, title: str | None = None) -> VideoState:
        return self.videos.add_file(path, title=title).video

    def finish(self, uid: str, error: tuple[str, str] | None = None) -> StreamVideo:
        """What the engine's ingest would record: ready, or error with Cloudflare's code."""
        if error is None:
            self.engine.set_processing_state(
                uid, "ready", ready_to_stream=True, duration=1.0, width=160, height=90, size=999
            )
        else:
            self.engine.set_processing_state(uid, "error", error=error)
        return self.stream.get(uid)

    def service_with(self, stream: StreamProvider) -> DeliveryService:
        return DeliveryService(catalog=self.catalog, archive=self.archive, stream=stream)


@contextlib.contextmanager
def delivery_world(tmp_path: Path) -> Iterator[World]:
    catalog_url = f"sqlite:///{tmp_path / 'catalog.db'}"
    engine_url = f"sqlite:///{tmp_path / 'engine.db'}"
    upgrade(catalog_url)
    engine_migrate.upgrade(engine_url)
    catalog_sql = create_catalog_engine(catalog_url)
    engine_sql = create_catalog_engine(engine_url)
    root = tmp_path / "archive"
    root.mkdir()
    archive = LocalArchive(root, base_url="http://archive.test", secret=b"k" * 32)
    catalog = SqlCatalog(catalog_sql)
    store = EngineStore(engine_sql)
    copies: list[str] = []
    requests: list[str] = []
    app = FastAPI()
    app_errors.install(app)
    app.include_router(
        build_engine_router(
            store=store,
            account_id=ACCOUNT,
            api_token=TOKEN,
            delivery_base="http://delivery.test/delivery",
            enqueue_ingest=copies.append,
        )
    )
    try:
        with TestClient(app, raise_server_exceptions=False) as http:
            stream = CloudflareStream(
                account_id=ACCOUNT,
                api_token=TOKEN,
                base_url="http://testserver/client/v4",
                http_client=httpx.Client(transport=ViaTestClient(http, requests)),
                max_retries=0,
            )
            yield World(
                catalog=catalog,
                catalog_engine=catalog_sql,
                archive=archive,
                videos=VideoService(catalog=catalog, archive=archive, prober=probe),
                engine=store,
                stream=stream,
                service=DeliveryService(catalog=catalog, archive=archive, stream=stream),
                copies=copies,
                requests=requests,
            )
            stream.close()
    finally:
        catalog_sql.dispose()
        engine_sql.dispose()


def answering(handler: Callable[[httpx.Request], httpx.Response]) -> CloudflareStream:
    """Our real client against answers only Cloudflare gives (429, 5xx, auth refusals)."""
    return CloudflareStream(
        account_id=ACCOUNT,
        api_token=TOKEN,
        base_url="https://api.test/client/v4",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
        max_retries=0,
    )


def envelope_error(status: int, code: int, message: str, **headers: str) -> httpx.Response:
    body = {"result": None, "success": False, "errors": [{"code": code, "message": message}]}
    return httpx.Response(status, json={**body, "messages": []}, headers=headers)


class CatalogFailingOnce(SqlCatalog):
    """The catalog goes away right after Stream accepted a copy (the duplicate window:
    the copy exists, its uid is never recorded)."""

    failures = 1

    def set_stream_status(  # type: ignore[override]
        self, video_id: str, status: StreamStatus, **kw: str | None
    ) -> VideoState:
        if self.failures:
            self.failures -= 1
            raise BackendUnavailable("database is restarting")
        return super().set_stream_status(video_id, status, **kw)
