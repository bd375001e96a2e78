"""Uploads besides the tus protocol itself: their outcome, and tokens for the app's users.

``GET /api/v1/uploads/{id}`` says what became of an upload (receiving, processing, ready
with its video id, or failed with a reason) to the admin or to the token that created it.
``POST /api/v1/upload-tokens`` (admin) mints a short-lived token the app hands to a user's
browser, optionally pinned to a collection, an owner and a size cap.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import Field

from hybridvideo.api.deps import AdminDep, ContainerDep, UploaderDep
from hybridvideo.api.schemas import _Wire
from hybridvideo.domain.video import validate_collection, validate_owner_id
from hybridvideo.ingest.service import UploadStatus

router = APIRouter(prefix="/api/v1", tags=["uploads"])

UploadId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]


class UploadErrorOut(_Wire):
    code: str
    message: str


class UploadOut(_Wire):
    id: str
    offset: int
    length: int | None
    state: str
    video_id: str | None
    error: UploadErrorOut | None
    expires_at: datetime | None
    metadata: dict[str, str | None]

    @classmethod
    def of(cls, status: UploadStatus) -> UploadOut:
        error = None
        if status.error_code is not None:
            error = UploadErrorOut(code=status.error_code, message=status.error_message or "")
        return cls(
            id=status.id,
            offset=status.offset,
            length=status.length,
            state=status.state,
            video_id=status.video_id,
            error=error,
            expires_at=status.expires_at,
            metadata=dict(status.metadata),
        )


class TokenRequest(_Wire):
    ttl: int | None = Field(None, ge=60, le=7 * 24 * 3600)
    collection: str | None = Field(None, max_length=64)
    owner_id: str | None = Field(None, max_length=200)
    max_size: int | None = Field(None, ge=1, le=2**53)


class TokenOut(_Wire):
    token: str
    expires_at: datetime
    upload_url: str


@router.get("/uploads/{upload_id}", response_model=UploadOut, response_model_by_alias=True)
def show_upload(upload_id: UploadId, container: ContainerDep, principal: UploaderDep) -> UploadOut:
    return UploadOut.of(container.ingest.status(upload_id, principal))


@router.post(
    "/upload-tokens",
    response_model=TokenOut,
    response_model_by_alias=True,
    status_code=201,
    dependencies=[AdminDep],
)
def mint_upload_token(body: TokenRequest, container: ContainerDep) -> TokenOut:
    if body.collection is not None:
        validate_collection(body.collection)
    validate_owner_id(body.owner_id)
    ttl = body.ttl or container.settings.upload_token_ttl
    token, grant = container.upload_tokens.mint(
        ttl=ttl, collection=body.collection, owner_id=body.owner_id, max_size=body.max_size
    )
    upload_url = container.settings.resolved_public_url.rstrip("/") + "/files/"
    return TokenOut(token=token, expires_at=grant.expires_at, upload_url=upload_url)
