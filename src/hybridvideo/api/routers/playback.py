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

from hybridvideo.api.deps import AdminDep, ContainerDep, bearer_token
from hybridvideo.api.errors import error_response
from hybridvideo.container import Container
from hybridvideo.errors import ConfigurationError
from hybridvideo.playback.grants import Grant
from hybridvideo.playback.service import PlaybackDenied, PlaybackService, Reimporting

router = APIRouter(prefix="/api/v1/videos", tags=["playback"])
grants_router = APIRouter(prefix="/api/v1/videos", tags=["playback"], dependencies=[AdminDep])


def _service(container: Container) -> PlaybackService:
    if container.playback is None:
        raise ConfigurationError("playback is not configured on this server")
    return container.playback


@router.get("/{video_id}/playback")
def playback(video_id: str, request: Request, container: ContainerDep) -> Response:
    service = _service(container)
    viewer = service.authenticator.authenticate(bearer_token(request))
    client_ip = request.client.host if request.client else None
    try:
        result = service.playback(video_id, viewer, client_ip)
    except PlaybackDenied as exc:
        # 403 is mapped here: api/errors.py knows no "forbidden" domain error yet.
        return error_response(request, 403, exc.code, exc.message)
    headers = {"Cache-Control": "private, no-store"}
    if isinstance(result, Reimporting):
        headers["Retry-After"] = str(result.retry_after)
        body: dict[str, Any] = {"status": "reimporting", "retryAfter": result.retry_after}
        return JSONResponse(body, status_code=202, headers=headers)
    return JSONResponse(result.to_json(), headers=headers)


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
