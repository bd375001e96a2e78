"""The admin endpoint and the delivery jobs, on the real container and queue."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from hybridvideo.container import Container
from hybridvideo.delivery.service import DeliveryService
from hybridvideo.domain.video import StreamStatus
from hybridvideo.jobs import deliver_video
from tests.unit.delivery.world import answering, envelope_error

S = StreamStatus


def scheduled(container: Container) -> list[dict[str, object]]:
    """Payloads of delayed jobs (the queue's own introspection; huey under the hood)."""
    huey = container.queue.huey  # type: ignore[attr-defined]
    return [dict(task.kwargs) for task in huey.scheduled()]


def seconds_until_scheduled(container: Container) -> list[float]:
    huey = container.queue.huey  # type: ignore[attr-defined]
    now = datetime.now(UTC).replace(tzinfo=None)  # huey keeps naive UTC times
    return [(task.eta - now).total_seconds() for task in huey.scheduled()]


def test_deliver_endpoint_queues_once_and_answers_202(
    client: TestClient, container: Container, admin: dict[str, str], sample_video: Path
) -> None:
    video = container.videos.add_file(sample_video).video
    url = f"/api/v1/videos/{video.id}/deliver"
    assert client.post(url).status_code == 401
    answer = client.post(url, headers=admin)
    assert answer.status_code == 202
    body = answer.json()
    assert body["id"] == video.id and body["spec"]["streamStatus"] == "NOT_DELIVERED"
    assert container.queue.pending() == 1

    container.catalog.set_stream_status(video.id, S.PROCESSING, stream_uid="u" * 32)
    again = client.post(url, headers=admin)
    assert again.status_code == 202 and again.json()["spec"]["streamUid"] == "u" * 32
    assert container.queue.pending() == 1  # already on its way: nothing more queued

    missing = client.post("/api/v1/videos/nope/deliver", headers=admin)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"


def test_the_job_retries_later_honouring_retry_after_then_gives_up(
    container: Container, sample_video: Path
) -> None:
    video = container.videos.add_file(sample_video).video
    limited = answering(
        lambda r: envelope_error(429, 10_000, "rate limited", **{"retry-after": "42"})
    )
    container.delivery = DeliveryService(
        catalog=container.catalog, archive=container.archive, stream=limited
    )
    assert deliver_video.run(container, video.id) == "retrying"
    assert scheduled(container) == [{"video_id": video.id, "attempt": 2}]
    (wait,) = seconds_until_scheduled(container)
    assert 40 < wait <= 42  # Retry-After (42 s), not the first backoff step (5 s)
    assert container.catalog.get_video(video.id).spec.stream_status is S.NOT_DELIVERED

    last = deliver_video.MAX_ATTEMPTS
    assert deliver_video.run(container, video.id, attempt=last) == "ERROR"
    spec = container.catalog.get_video(video.id).spec
    assert spec.stream_status is S.ERROR and "rate limits" in (spec.stream_error or "")
    assert len(scheduled(container)) == 1  # the last attempt queued nothing


def test_the_job_retries_an_unreachable_service(container: Container, sample_video: Path) -> None:
    video = container.videos.add_file(sample_video).video

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    container.delivery = DeliveryService(
        catalog=container.catalog, archive=container.archive, stream=answering(down)
    )
    assert deliver_video.run(container, video.id, attempt=3) == "retrying"
    assert scheduled(container) == [{"video_id": video.id, "attempt": 4}]
    (wait,) = seconds_until_scheduled(container)
    assert 18 < wait <= 20  # the third backoff step
