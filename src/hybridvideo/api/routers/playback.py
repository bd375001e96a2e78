"""Playback for the app's viewers, and the grants admins manage (issue 6).

``GET /api/v1/videos/{id}/playback`` is called by players with the app's own viewer JWT
(or none, for public videos); the grants routes take the admin token. All decisions live
in :class:`hybridvideo.playback.service.PlaybackService`; this module only reads the
request and shapes the answer (200 with URLs, 202 + ``Retry-After`` while an evicted video
comes back).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from hybridvideo.api.deps import AdminDep, ContainerDep, bearer_token
from hybridvideo.api.errors import error_response
from hybridvideo.container import Container
from hybridvideo.errors import ConfigurationError
from hybridvideo.playback.grants import Grant
from hybridvideo.playback.service import PlaybackDenied, PlaybackService, Reimporting

router = APIRouter(prefix="/api/v1/videos", tags=["playback"])
grants_router = APIRouter(prefix="/api/v1/videos", tags=["playback"], dependencies=[AdminDep])


#: Tokens are per viewer and short-lived: no cache may keep or share an answer.
NO_STORE = {"Cache-Control": "private, no-store"}


def _service(container: Container) -> PlaybackService:
    if container.playback is None:
        raise ConfigurationError("playback is not configured on this server")
    return container.playback


@router.get("/{video_id}/playback")
async def playback(video_id: str, request: Request) -> Response:
    """Async on purpose: the usual answer is CPU only (cached row, cached or locally signed
    token) and is computed on the event loop; only what may wait runs in the threadpool
    (a JWKS fetch, a catalog read, a grant query, a re-import, the Stream fallback)."""
    container: Container = request.app.state.container
    service = _service(container)
    token = bearer_token(request)
    if container.settings.playback_jwks_url:  # may fetch the provider's keys
        viewer = await run_in_threadpool(service.authenticator.authenticate, token)
    else:  # HS256 with the shared secret: CPU only
        viewer = service.authenticator.authenticate(token)
    client_ip = request.client.host if request.client else None
    try:
        result = service.playback_nowait(video_id, viewer, client_ip)
        if result is None:
            result = await run_in_threadpool(service.playback, video_id, viewer, client_ip)
    except PlaybackDenied as exc:
        # 403 is mapped here: api/errors.py knows no "forbidden" domain error yet.
        return error_response(request, 403, exc.code, exc.message)
    if isinstance(result, Reimporting):
        body: dict[str, Any] = {"status": "reimporting", "retryAfter": result.retry_after}
        return JSONResponse(
            body, status_code=202, headers={**NO_STORE, "Retry-After": str(result.retry_after)}
        )
    return JSONResponse(result.to_json(), headers=NO_STORE)


class GrantIn(BaseModel):
    subject: str = Field(min_length=1, max_length=128)
    expires_at: datetime | None = Field(None, alias="expiresAt")


def _grant(grant: Grant) -> dict[str, Any]:
    return {
        "videoId": grant.video_id,
        "subject": grant.subject,
        "createdAt": grant.created_at.isoformat(),
        "expiresAt": grant.expires_at.isoformat() if grant.expires_at else None,
        "createdBy": grant.created_by,
    }


@grants_router.get("/{video_id}/grants")
def list_grants(video_id: str, container: ContainerDep) -> dict[str, Any]:
    grants = _service(container).grants.list_grants(video_id)
    return {"items": [_grant(g) for g in grants]}


@grants_router.post("/{video_id}/grants", status_code=201)
def add_grant(video_id: str, body: GrantIn, container: ContainerDep) -> dict[str, Any]:
    grant = _service(container).grants.grant(
        video_id, body.subject, expires_at=body.expires_at, created_by="admin"
    )
    return _grant(grant)


@grants_router.delete("/{video_id}/grants/{subject}", status_code=204)
def revoke_grant(video_id: str, subject: str, container: ContainerDep) -> Response:
    _service(container).grants.revoke(video_id, subject)
    return Response(status_code=204)
