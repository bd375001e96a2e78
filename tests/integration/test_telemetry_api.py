"""``POST /api/v1/telemetry/qoe``: what is stored, and everything that is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hybridvideo.container import Container
from hybridvideo.telemetry.qoe import MAX_BODY_BYTES, MAX_EVENTS, SessionBudget

URL = "/api/v1/telemetry/qoe"
SESSION = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def video_id(container: Container, sample_video: Path) -> str:
    return container.videos.add_file(sample_video).video.id


def batch(video_id: str, *events: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sessionId": SESSION,
        "videoId": video_id,
        "cohort": {"cohort": "default", "abr": "on"},
        "events": list(events) or [{"kind": "startup", "ms": 412.5}],
    }
    body.update(extra)
    return body


def test_a_batch_of_every_kind_is_stored_as_sent(
    client: TestClient, container: Container, video_id: str
) -> None:
    events = [
        {"kind": "startup", "ms": 412.5, "native": False},
        {"kind": "rebuffer", "ms": 800, "position": 3.2},
        {"kind": "bitrate", "level": 2, "bitrate": 1_200_000, "height": 720, "auto": True},
        {"kind": "error", "fatal": True, "type": "networkError", "details": "x", "status": 403},
        {"kind": "watch", "seconds": 12.5, "rebuffers": 1, "rebufferMs": 800, "final": True},
    ]
    answer = client.post(URL, json=batch(video_id, *events))
    assert answer.status_code == 204 and answer.content == b""
    assert container.beacons is not None
    stored = container.beacons.session_beacons(SESSION)
    assert [(b.kind, b.data) for b in stored] == [
        (e["kind"], {k: v for k, v in e.items() if k != "kind"}) for e in events
    ]
    assert {b.video_id for b in stored} == {video_id}
    assert stored[0].cohort == {"cohort": "default", "abr": "on"}


def test_sendbeacon_text_plain_bodies_are_accepted(
    client: TestClient, container: Container, video_id: str
) -> None:
    body = json.dumps(batch(video_id))
    answer = client.post(URL, content=body, headers={"Content-Type": "text/plain;charset=UTF-8"})
    assert answer.status_code == 204
    assert container.beacons is not None
    assert [b.kind for b in container.beacons.session_beacons(SESSION)] == ["startup"]


BAD_EVENTS = [
    {"kind": "startup"},  # required field missing
    {"kind": "startup", "ms": -1},
    {"kind": "startup", "ms": 10 * 60_000 + 1},  # longer than any real startup
    {"kind": "startup", "ms": "fast"},
    {"kind": "startup", "ms": True},
    {"kind": "startup", "ms": 10, "extra": 1},
    {"kind": "dance", "ms": 10},
    {"kind": "bitrate", "level": 1.5, "bitrate": 10},
    {"kind": "error", "fatal": "yes", "type": "x"},
    {"kind": "error", "fatal": True, "type": "x" * 200},
    {"kind": "error", "fatal": True, "type": "bad\nline"},
    {"kind": "watch", "seconds": 1, "rebuffers": -1, "rebufferMs": 0},
    "startup",
]


@pytest.mark.parametrize("event", BAD_EVENTS, ids=range(len(BAD_EVENTS)))
def test_malformed_events_are_refused_and_nothing_is_stored(
    client: TestClient, container: Container, video_id: str, event: object
) -> None:
    good = {"kind": "startup", "ms": 300}
    answer = client.post(URL, json=batch(video_id, good, event))  # type: ignore[arg-type]
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "INVALID_INPUT"
    assert container.beacons is not None
    assert container.beacons.session_beacons(SESSION) == []


@pytest.mark.parametrize(
    "change",
    [
        {"sessionId": "short"},
        {"sessionId": "x" * 65},
        {"sessionId": "../../etc/passwd0000"},
        {"videoId": "no such/id"},
        {"events": []},
        {"events": [{"kind": "startup", "ms": 1}] * (MAX_EVENTS + 1)},
        {"cohort": {"Bad Key": "x"}},
        {"cohort": {"k": "v" * 65}},
        {"cohort": {f"k{i}": "v" for i in range(17)}},
        {"extra": 1},
    ],
)
def test_malformed_batches_are_refused(
    client: TestClient, video_id: str, change: dict[str, Any]
) -> None:
    answer = client.post(URL, json=batch(video_id, **change))
    assert answer.status_code == 400, answer.text


def test_unknown_videos_bad_json_wrong_types_and_big_bodies_are_refused(
    client: TestClient, container: Container, video_id: str
) -> None:
    unknown = client.post(URL, json=batch("00000000-0000-0000-0000-000000000000"))
    assert unknown.status_code == 400 and "known video" in unknown.json()["error"]["message"]
    assert (
        client.post(
            URL, content=b"{not json", headers={"Content-Type": "application/json"}
        ).status_code
        == 400
    )
    assert (
        client.post(URL, content=b"\xff\xfe", headers={"Content-Type": "text/plain"}).status_code
        == 400
    )
    form = client.post(URL, data={"a": "b"})
    assert form.status_code == 415
    huge = json.dumps(batch(video_id)) + " " * MAX_BODY_BYTES
    big = client.post(URL, content=huge, headers={"Content-Type": "application/json"})
    assert big.status_code == 413 and big.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert container.beacons is not None
    assert container.beacons.session_beacons(SESSION) == []


def test_a_flooding_session_is_refused_with_429(container: Container, video_id: str) -> None:
    from fastapi import FastAPI

    from hybridvideo.api import errors
    from hybridvideo.api.routers import telemetry

    # the route alone, with a tight budget
    app = FastAPI()
    app.state.container = container
    errors.install(app)
    app.include_router(telemetry.build_router(SessionBudget(per_session=3, total=100)))
    with TestClient(app, raise_server_exceptions=False) as client:
        three = [{"kind": "startup", "ms": 1}] * 3
        assert client.post(URL, json=batch(video_id, *three)).status_code == 204
        refused = client.post(URL, json=batch(video_id))
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "60"
        other = client.post(URL, json=batch(video_id, sessionId="f" * 32))
        assert other.status_code == 204  # the budget is per session
    assert container.beacons is not None
    assert len(container.beacons.session_beacons(SESSION)) == 3
