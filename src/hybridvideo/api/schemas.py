"""Request and response shapes (camelCase on the wire, like the seed's Prisma model)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from hybridvideo.domain.video import StreamStatus, VideoState


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class TechnicalSpecOut(_Wire):
    archive_bucket: str
    archive_key: str
    thumbnail_url: str | None
    stream_uid: str | None
    stream_status: StreamStatus
    stream_error: str | None
    file_size: int | None
    format: str | None
    duration: float | None
    width: int | None
    height: int | None
    sha256: str | None


class VideoOut(_Wire):
    id: str
    title: str
    collection: str
    owner_id: str | None
    pinned: bool
    created_at: datetime
    updated_at: datetime
    spec: TechnicalSpecOut

    @classmethod
    def of(cls, video: VideoState) -> VideoOut:
        s = video.spec
        return cls(
            id=video.id,
            title=video.title,
            collection=video.collection,
            owner_id=video.owner_id,
            pinned=video.pinned,
            created_at=video.created_at,
            updated_at=video.updated_at,
            spec=TechnicalSpecOut(
                archive_bucket=s.archive_bucket,
                archive_key=s.archive_key,
                thumbnail_url=s.thumbnail_url,
                stream_uid=s.stream_uid,
                stream_status=s.stream_status,
                stream_error=s.stream_error,
                file_size=s.size,
                format=s.format,
                duration=s.duration,
                width=s.width,
                height=s.height,
                sha256=s.sha256,
            ),
        )


class VideoList(_Wire):
    items: list[VideoOut]
    total: int
    limit: int
    offset: int


class VideoPatch(_Wire):
    title: str | None = Field(None, min_length=1, max_length=300)
    collection: str | None = Field(None, min_length=1, max_length=64)
    pinned: bool | None = None
    owner_id: str | None = Field(None, min_length=1, max_length=128)


class CheckOut(BaseModel):
    status: str
    checks: dict[str, str]
