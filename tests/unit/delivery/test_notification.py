"""Reading Stream webhook bodies: Cloudflare's documented shapes and the engine's own."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from hybridvideo.delivery.notification import parse_stream_video
from hybridvideo.engine.models import EngineVideo
from hybridvideo.engine.shapes import video_json
from hybridvideo.errors import InvalidInput

UID = "6b9e68b07dfee8cc2d116e4c51d6a957"


def body(**over: object) -> bytes:
    """Cloudflare's webhook example: the bare video object, no envelope."""
    doc: dict[str, object] = {
        "uid": UID,
        "creator": None,
        "thumbnail": f"https://customer-x.cloudflarestream.com/{UID}/thumbnails/thumbnail.jpg",
        "thumbnailTimestampPct": 0,
        "readyToStream": True,
        "status": {
            "state": "ready",
            "pctComplete": "39.000000",
            "errorReasonCode": "",
            "errorReasonText": "",
        },
        "meta": {"name": "Intro", "hybridvideo_video_id": "v-1"},
        "created": "2022-06-30T17:53:12.512033Z",
        "modified": "2022-06-30T17:53:21.774299Z",
        "size": 383631,
        "preview": f"https://customer-x.cloudflarestream.com/{UID}/watch",
        "allowedOrigins": [],
        "requireSignedURLs": False,
        "uploaded": "2022-06-30T17:53:12.511981Z",
        "uploadExpiry": "2022-07-01T17:53:12.511973Z",
        "maxSizeBytes": None,
        "maxDurationSeconds": None,
        "duration": 7.5,
        "input": {"width": 1920, "height": 1080},
        "playback": {
            "hls": f"https://customer-x.cloudflarestream.com/{UID}/manifest/video.m3u8",
            "dash": f"https://customer-x.cloudflarestream.com/{UID}/manifest/video.mpd",
        },
        "watermark": None,
    }
    doc.update(over)
    return json.dumps(doc).encode()


def test_a_ready_video() -> None:
    video = parse_stream_video(body())
    assert (video.uid, video.state, video.ready_to_stream) == (UID, "ready", True)
    assert video.pct_complete == 39.0 and video.duration == 7.5 and video.size == 383631
    assert (video.width, video.height) == (1920, 1080)
    assert video.error_code is None and video.error_text is None  # "" means none
    assert video.meta == {"name": "Intro", "hybridvideo_video_id": "v-1"}
    assert video.hls is not None and video.hls.endswith("video.m3u8")
    assert video.created == datetime(2022, 6, 30, 17, 53, 12, 512033, tzinfo=UTC)
    assert video.finished


@pytest.mark.parametrize("prefix", ["error", "err"])
def test_an_error_in_either_spelling_the_docs_use(prefix: str) -> None:
    status = {
        "state": "error",
        f"{prefix}ReasonCode": "ERR_NON_VIDEO",
        f"{prefix}ReasonText": "The file is not a video",
    }
    video = parse_stream_video(body(status=status, readyToStream=False))
    assert video.state == "error" and video.error_code == "ERR_NON_VIDEO"
    assert video.error_text == "The file is not a video"


def test_unknown_values_and_odd_fields_are_dropped_not_refused() -> None:
    video = parse_stream_video(
        body(
            duration=-1,
            size="big",
            input={"width": -1, "height": True},
            playback=None,
            meta=["not", "a", "dict"],
            created="2020-10-16T20:20:17.872170843Z",  # nanoseconds, as in Cloudflare's docs
            modified="yesterday",
            requireSignedURLs="yes",
            futureField={"x": 1},
        )
    )
    assert video.duration is None and video.size is None
    assert video.width is None and video.height is None and video.hls is None
    assert video.meta == {} and video.modified is None and not video.require_signed_urls
    assert video.created == datetime(2020, 10, 16, 20, 20, 17, 872170, tzinfo=UTC)


def test_the_engines_own_webhook_body() -> None:
    now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    engine_video = EngineVideo(
        uid=UID,
        account_id="a" * 32,
        creator=None,
        meta={"name": "clip"},
        state="error",
        pct_complete="0",
        error_reason_code="ERR_FETCH_ORIGIN_ERROR",
        error_reason_text="the source answered 404",
        ready_to_stream=False,
        ready_to_stream_at=None,
        require_signed_urls=False,
        allowed_origins=(),
        thumbnail_timestamp_pct=0.0,
        duration=-1.0,
        width=-1,
        height=-1,
        size=0,
        source_url="http://x/a.mp4",
        created=now,
        modified=now,
        uploaded=None,
        upload_expiry=None,
        scheduled_deletion=None,
        max_duration_seconds=None,
        media_manifest={},
    )
    doc = video_json(engine_video, delivery_base="http://127.0.0.1:1/delivery")
    video = parse_stream_video(json.dumps(doc).encode())
    assert (video.uid, video.state, video.error_code) == (UID, "error", "ERR_FETCH_ORIGIN_ERROR")
    assert video.created == now


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a Stream video object"),
        (json.dumps({"result": {"uid": UID}}).encode(), "no valid video uid"),
        (body(uid=""), "no valid video uid"),
        (body(uid="../../etc"), "no valid video uid"),
        (body(uid="x" * 65), "no valid video uid"),
        (body(status=None), "no status object"),
        (body(status={"state": 3}), "no valid status.state"),
        (body(status={"state": "READY!"}), "no valid status.state"),
    ],
)
def test_bodies_that_are_not_a_video_are_refused(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_stream_video(raw)
