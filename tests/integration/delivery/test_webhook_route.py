"""``POST /webhooks/stream`` on the real app: signed bodies move videos, nothing else does."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hybridvideo.container import Container
from hybridvideo.delivery.webhook_secrets import WebhookSecretStore
from hybridvideo.domain.video import StreamStatus
from hybridvideo.stream.webhooks import sign_webhook

S = StreamStatus
SECRET = "85011ed3a913c6ad5f9cf6c5573cc0a7"
UID = "6b9e68b07dfee8cc2d116e4c51d6a957"
URL = "/webhooks/stream"


def video_body(uid: str = UID, state: str = "ready", **status: str) -> bytes:
    doc = {
        "uid": uid,
        "readyToStream": state == "ready",
        "status": {"state": state, "pctComplete": "100.000000", **status},
        "meta": {"name": "clip"},
        "duration": 1.0,
        "input": {"width": 160, "height": 90},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def post(
    client: TestClient, body: bytes, *, secret: str = SECRET, timestamp: int | None = None
) -> tuple[int, dict[str, object]]:
    headers = {
        "Content-Type": "application/json",
        "Webhook-Signature": sign_webhook(secret, body, timestamp=timestamp),
    }
    response = client.post(URL, content=body, headers=headers)
    return response.status_code, response.json()


@pytest.fixture
def processing(container: Container, sample_video: Path) -> str:
    """A video sent to Stream as ``UID``, and our secret stored as `serve` would."""
    WebhookSecretStore.for_settings(container.settings).remember(SECRET)
    video = container.videos.add_file(sample_video).video
    container.catalog.set_stream_status(video.id, S.PROCESSING, stream_uid=UID)
    return video.id


def status_of(container: Container, video_id: str) -> StreamStatus:
    return container.catalog.get_video(video_id).spec.stream_status


def test_a_signed_ready_webhook_makes_the_video_ready(
    client: TestClient, container: Container, processing: str
) -> None:
    body = video_body()
    assert post(client, body) == (200, {"received": True, "matched": True})
    assert status_of(container, processing) is S.READY
    again = video_body() + b" "  # a redelivery: signed anew, same news
    assert post(client, again) == (200, {"received": True, "matched": True})
    kinds = [e.kind for e in container.catalog.events(processing)]
    assert kinds.count("delivery_ready") == 1 and kinds.count("stream_status") == 2


def test_a_signed_error_webhook_records_cloudflares_reason(
    client: TestClient, container: Container, processing: str
) -> None:
    body = video_body(
        state="error", errReasonCode="ERR_DURATION_TOO_SHORT", errReasonText="too short"
    )
    assert post(client, body)[0] == 200
    spec = container.catalog.get_video(processing).spec
    assert (spec.stream_status, spec.stream_error) == (S.ERROR, "ERR_DURATION_TOO_SHORT: too short")


def test_an_unknown_uid_is_acknowledged_and_ignored(
    client: TestClient, container: Container, processing: str
) -> None:
    assert post(client, video_body(uid="f" * 32)) == (200, {"received": True, "matched": False})
    assert status_of(container, processing) is S.PROCESSING


def forged(body: bytes) -> dict[str, str]:
    return {"Webhook-Signature": sign_webhook(SECRET, body)}


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("tampered", "does not match"),
        ("wrong_secret", "does not match"),
        ("stale", "too old"),
        ("future", "in the future"),
        ("missing", "no Webhook-Signature"),
        ("malformed", "malformed"),
    ],
)
def test_unauthenticated_webhooks_are_401_and_change_nothing(
    client: TestClient, container: Container, processing: str, case: str, reason: str
) -> None:
    body = video_body(state="error", errorReasonCode="ERR_UNKNOWN")
    signature = sign_webhook(SECRET, body)
    now = int(time.time())
    headers = {
        "tampered": {"Webhook-Signature": sign_webhook(SECRET, video_body())},
        "wrong_secret": {"Webhook-Signature": sign_webhook("another-secret-0000", body)},
        "stale": {"Webhook-Signature": sign_webhook(SECRET, body, timestamp=now - 900)},
        "future": {"Webhook-Signature": sign_webhook(SECRET, body, timestamp=now + 900)},
        "missing": {},
        "malformed": {"Webhook-Signature": signature.replace("sig1=", "sig=")},
    }[case]
    response = client.post(URL, content=body, headers=headers)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "INVALID_WEBHOOK" and reason in error["message"]
    assert error["request_id"]
    assert status_of(container, processing) is S.PROCESSING
    assert "delivery_error" not in [e.kind for e in container.catalog.events(processing)]


def test_a_replayed_delivery_is_refused(
    client: TestClient, container: Container, processing: str
) -> None:
    body = video_body()
    headers = {"Webhook-Signature": sign_webhook(SECRET, body)}
    assert client.post(URL, content=body, headers=headers).status_code == 200
    replay = client.post(URL, content=body, headers=headers)
    assert replay.status_code == 401 and "already received" in replay.json()["error"]["message"]


def test_the_previous_secret_still_works_after_a_rotation(
    client: TestClient, container: Container, processing: str
) -> None:
    WebhookSecretStore.for_settings(container.settings).remember("the-new-secret-0123")
    assert post(client, video_body(), secret=SECRET)[0] == 200  # signed before the rotation
    assert status_of(container, processing) is S.READY


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a Stream video object"),
        (json.dumps({"uid": UID}).encode(), "no status object"),
    ],
)
def test_authentic_bodies_that_are_not_videos_are_400(
    client: TestClient, container: Container, processing: str, body: bytes, message: str
) -> None:
    status, answer = post(client, body)
    assert status == 400
    error = answer["error"]
    assert isinstance(error, dict) and error["code"] == "INVALID_INPUT"
    assert message in error["message"]
    assert status_of(container, processing) is S.PROCESSING


def test_an_oversized_body_is_refused_before_it_is_read(
    client: TestClient, processing: str
) -> None:
    body = video_body()[:-1] + b',"pad":"' + b"x" * 300_000 + b'"}'
    status, answer = post(client, body)
    assert status == 400 and "too large" in str(answer)


def test_without_any_secret_webhooks_cannot_be_checked(client: TestClient) -> None:
    response = client.post(URL, content=video_body(), headers=forged(video_body()))
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "CONFIG_INVALID"
    assert "HYBRIDVIDEO_STREAM_WEBHOOK_SECRET" in error["message"]


def test_out_of_order_deliveries_never_move_a_status_backwards(
    client: TestClient, container: Container, processing: str
) -> None:
    newer = json.loads(video_body())
    newer["modified"] = "2026-01-01T10:00:05Z"
    older_error = json.loads(
        video_body(state="error", errorReasonCode="ERR_UNKNOWN", errorReasonText="x")
    )
    older_error["modified"] = "2026-01-01T10:00:01Z"
    late_progress = json.loads(video_body(state="inprogress"))
    late_progress["modified"] = "2026-01-01T10:00:00Z"
    assert post(client, json.dumps(newer).encode())[0] == 200
    assert status_of(container, processing) is S.READY
    for late in (older_error, late_progress):
        assert post(client, json.dumps(late).encode())[0] == 200
        assert status_of(container, processing) is S.READY
    # A genuinely newer failure of the same copy still counts.
    newest_error = {**older_error, "modified": "2026-01-01T10:00:09Z"}
    assert post(client, json.dumps(newest_error).encode())[0] == 200
    assert status_of(container, processing) is S.ERROR


def test_ready_copies_duration_and_dimensions_into_the_catalog(
    client: TestClient, container: Container, processing: str
) -> None:
    doc = json.loads(video_body())
    doc.update({"duration": 12.5, "input": {"width": 1280, "height": 720}, "size": 4242})
    assert post(client, json.dumps(doc).encode())[0] == 200
    spec = container.catalog.get_video(processing).spec
    assert (spec.duration, spec.width, spec.height, spec.size) == (12.5, 1280, 720, 4242)


@pytest.mark.redis
def test_a_replay_to_another_node_is_refused_when_nodes_share_redis(
    tmp_path: Path, redis_url: str
) -> None:
    from hybridvideo.api.app import create_app
    from hybridvideo.config import load_settings
    from hybridvideo.container import build_container

    body = video_body(uid="f" * 32)
    headers = {"Content-Type": "application/json", "Webhook-Signature": sign_webhook(SECRET, body)}
    answers = []
    for node in ("a", "b"):
        settings = load_settings(data_dir=tmp_path / node, redis_url=redis_url)
        node_container = build_container(settings, serving=True)
        try:
            WebhookSecretStore.for_settings(settings).remember(SECRET)
            with TestClient(create_app(node_container, run_worker=False)) as node_client:
                answers.append(node_client.post(URL, content=body, headers=headers).status_code)
        finally:
            node_container.close()
    assert answers == [200, 401]
