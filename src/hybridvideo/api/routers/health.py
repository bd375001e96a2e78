"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from hybridvideo.api.deps import ContainerDep
from hybridvideo.errors import HybridVideoError

router = APIRouter(tags=["health"])
log = logging.getLogger("hybridvideo.api")


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up and serving; says nothing about its dependencies."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(container: ContainerDep, request: Request) -> JSONResponse:
    """200 only when the catalog, the archive and the queue all answer (and the embedded
    worker, when this server runs one, is alive)."""
    checks: dict[str, str] = {}
    pings: dict[str, Callable[[], None]] = {
        "catalog": container.catalog.ping,
        "archive": container.archive.ping,
        "queue": container.queue.ping,
    }
    if container.engine is not None:
        pings["engine"] = container.engine.store.ping
    for name, ping in pings.items():
        try:
            ping()
            checks[name] = "ok"
        except HybridVideoError as exc:
            checks[name] = exc.code
            log.warning("readiness check failed", extra={"part": name, "detail": exc.detail})
        except Exception:
            checks[name] = "INTERNAL"
            log.exception("readiness check crashed", extra={"part": name})
    worker = request.app.state.worker
    if worker is not None:
        checks["worker"] = "ok" if worker.running else "STOPPED"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )
