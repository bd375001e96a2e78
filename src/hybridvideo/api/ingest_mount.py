"""Mount tus at ``/files/`` over the container's upload store, locker and ingest service.

The capabilities come from the container (what the store supports, what the operator
set), so OPTIONS advertises exactly what is served. Browsers need CORS for the tus headers;
that is configured on the whole app (``HYBRIDVIDEO_CORS_ORIGINS``) in :mod:`api.app`.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from hybridvideo.api.deps import upload_principal_async
from hybridvideo.container import Container
from hybridvideo.ingest.tus.handler import TusOptions, build_tus_router

#: Response headers a browser client must be allowed to read (tus + Cloudflare's id).
TUS_EXPOSED_HEADERS = (
    "Location",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Metadata",
    "Upload-Defer-Length",
    "Upload-Expires",
    "Upload-Concat",
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Extension",
    "Tus-Max-Size",
    "Tus-Checksum-Algorithm",
    "stream-media-id",
    "X-Request-ID",
    "Deprecation",
    "Link",
    "Content-Location",
)


def mount_ingest(app: FastAPI, container: Container) -> None:
    settings = container.settings
    options = TusOptions(
        prefix="/files",
        locker=container.upload_locker,
        events=container.ingest,
        authorize=upload_principal_async,
        expires_after=timedelta(hours=settings.upload_expiry_hours),
        metrics=container.tus_metrics,
        can_terminate=container.ingest.check_terminate,
    )
    app.include_router(
        build_tus_router(container.ingest.store, container.tus_capabilities, options)
    )
