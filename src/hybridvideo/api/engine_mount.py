"""Mount the built-in engine (control API, tus uploads, delivery) on an app, wired to the
queue. Upload URLs share the upload locker with ``/files`` (ids never collide)."""

from __future__ import annotations

import shutil
from urllib.parse import urlsplit

from fastapi import FastAPI

from hybridvideo.container import Container
from hybridvideo.engine.api import build_engine_router
from hybridvideo.engine.delivery import build_delivery_router
from hybridvideo.engine.uploads import build_engine_uploads
from hybridvideo.jobs import engine_ingest, engine_webhook


def mount_engine(app: FastAPI, container: Container) -> None:
    rt = container.engine
    if rt is None:
        return

    def enqueue_ingest(uid: str) -> None:
        container.queue.enqueue(engine_ingest.NAME, {"uid": uid})

    def enqueue_webhook(_account_id: str, uid: str) -> None:
        engine_webhook.enqueue_for(container, uid)

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
