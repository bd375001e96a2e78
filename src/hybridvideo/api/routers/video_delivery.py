"""``POST /api/v1/videos/{id}/deliver``: queue a catalog video's delivery (admin token).

Answers 202 with the video as it is now; the job (``delivery.send``) does the work and is
idempotent, so asking again while a copy is on its way changes nothing. A video that is
already PROCESSING or READY is not queued at all.
"""

from __future__ import annotations

from fastapi import APIRouter

from hybridvideo.api.deps import AdminDep, ContainerDep
from hybridvideo.api.schemas import VideoOut
from hybridvideo.delivery.service import is_delivered
from hybridvideo.jobs import deliver_video as delivery_job

router = APIRouter(prefix="/api/v1/videos", tags=["videos"], dependencies=[AdminDep])


@router.post(
    "/{video_id}/deliver",
    status_code=202,
    response_model=VideoOut,
    response_model_by_alias=True,
)
def deliver_video(video_id: str, container: ContainerDep) -> VideoOut:
    video = container.catalog.get_video(video_id)
    if not is_delivered(video):
        delivery_job.enqueue(container.queue, video_id)
    return VideoOut.of(video)
