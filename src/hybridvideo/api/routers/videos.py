"""The catalog's videos, for the app's backend and the admin pages (admin token)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from hybridvideo.api.deps import AdminDep, ContainerDep
from hybridvideo.api.schemas import VideoList, VideoOut, VideoPatch
from hybridvideo.domain.video import MAX_OFFSET, StreamStatus, VideoChanges, VideoFilter

router = APIRouter(prefix="/api/v1/videos", tags=["videos"], dependencies=[AdminDep])


@router.get("", response_model=VideoList, response_model_by_alias=True)
def list_videos(
    container: ContainerDep,
    collection: Annotated[str | None, Query(max_length=64)] = None,
    status: StreamStatus | None = None,
    q: Annotated[str | None, Query(max_length=300)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> VideoList:
    flt = VideoFilter(collection=collection, status=status, query=q, limit=limit, offset=offset)
    page = container.catalog.list_videos(flt)
    return VideoList(
        items=[VideoOut.of(v) for v in page.items], total=page.total, limit=limit, offset=offset
    )


@router.get("/{video_id}", response_model=VideoOut, response_model_by_alias=True)
def show_video(video_id: str, container: ContainerDep) -> VideoOut:
    return VideoOut.of(container.catalog.get_video(video_id))


@router.patch("/{video_id}", response_model=VideoOut, response_model_by_alias=True)
def edit_video(video_id: str, patch: VideoPatch, container: ContainerDep) -> VideoOut:
    changes = VideoChanges(
        title=patch.title, collection=patch.collection, pinned=patch.pinned, owner_id=patch.owner_id
    )
    return VideoOut.of(container.catalog.update_video(video_id, changes))
