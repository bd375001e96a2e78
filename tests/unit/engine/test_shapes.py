"""Cloudflare's JSON shapes from stored engine values, and the request rules, without I/O."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cloudflare.types.stream import Video
from pydantic import ValidationError

from hybridvideo.engine.models import EngineKey, EngineVideo, Webhook
from hybridvideo.engine.shapes import (
    CopyBody,
    EditBody,
    TokenBody,
    WebhookBody,
    as_utc,
    check_deletion,
    delivery_urls,
    envelope,
    file_name,
    http_url,
    key_json,
    rfc3339,
    status_json,
    storage_usage_json,
    video_json,
    webhook_json,
)
from hybridvideo.errors import InvalidInput

BASE = "https://media.example.com/delivery"
UID = "6b9e68b07dfee8cc2d116e4c51d6a957"
CREATED = datetime(2026, 11, 23, 13, 0, 0, 123456, tzinfo=UTC)


def downloading() -> EngineVideo:
    return EngineVideo(
        uid=UID,
        account_id="a" * 32,
        creator=None,
        meta={"downloaded-from": "https://origin.example/a.mp4", "name": "a.mp4"},
        state="downloading",
        pct_complete=None,
        error_reason_code=None,
        error_reason_text=None,
        require_signed_urls=False,
        allowed_origins=(),
        thumbnail_timestamp_pct=0.0,
        scheduled_deletion=None,
        upload_expiry=None,
        max_duration_seconds=None,
        duration=-1.0,
        width=-1,
        height=-1,
        size=0,
        ready_to_stream=False,
        ready_to_stream_at=None,
        source_url="https://origin.example/a.mp4",
        media_manifest=None,
        created=CREATED,
        modified=CREATED,
        uploaded=None,
    )


def ready() -> EngineVideo:
    done = CREATED + timedelta(minutes=2)
    return replace(
        downloading(),
        creator="creator-7",
        state="ready",
        pct_complete="100.000000",
        require_signed_urls=True,
        allowed_origins=("example.com", "*.example.net"),
        thumbnail_timestamp_pct=0.5,
        scheduled_deletion=CREATED + timedelta(days=31),
        duration=12.5,
        width=1280,
        height=720,
        size=9032701,
        ready_to_stream=True,
        ready_to_stream_at=done,
        media_manifest={"renditions": ["720p"]},
        modified=done,
        uploaded=CREATED + timedelta(seconds=5),
    )


def test_downloading_video_is_exactly_cloudflares_shape() -> None:
    assert video_json(downloading(), delivery_base=BASE) == {
        "uid": UID,
        "creator": None,
        "thumbnailTimestampPct": 0.0,
        "readyToStream": False,
        "readyToStreamAt": None,
        "status": {"state": "downloading", "errorReasonCode": "", "errorReasonText": ""},
        "meta": {"downloaded-from": "https://origin.example/a.mp4", "name": "a.mp4"},
        "created": "2026-11-23T13:00:00.123456Z",
        "modified": "2026-11-23T13:00:00.123456Z",
        "size": 0,
        "allowedOrigins": [],
        "requireSignedURLs": False,
        "uploaded": None,
        "uploadExpiry": None,
        "maxSizeBytes": 0,
        "maxDurationSeconds": 0,
        "duration": -1.0,
        "input": {"width": -1, "height": -1},
        "playback": {
            "hls": f"{BASE}/{UID}/manifest/video.m3u8",
            "dash": f"{BASE}/{UID}/manifest/video.mpd",
        },
        "watermark": None,
        "scheduledDeletion": None,
    }


def test_ready_video_gains_thumbnail_preview_and_times() -> None:
    body = video_json(ready(), delivery_base=BASE + "/")
    assert body["thumbnail"] == f"{BASE}/{UID}/thumbnails/thumbnail.jpg"
    assert body["preview"] == f"{BASE}/{UID}/watch"
    assert body["readyToStream"] is True
    assert body["readyToStreamAt"] == "2026-11-23T13:02:00.123456Z"
    assert body["uploaded"] == "2026-11-23T13:00:05.123456Z"
    assert body["scheduledDeletion"] == "2026-12-24T13:00:00.123456Z"
    assert body["status"] == {
        "state": "ready",
        "pctComplete": "100.000000",
        "errorReasonCode": "",
        "errorReasonText": "",
    }
    assert body["input"] == {"width": 1280, "height": 720}
    assert body["allowedOrigins"] == ["example.com", "*.example.net"]
    assert "renditions" not in str(body), "the encoder's manifest is internal"
    # Field order follows Cloudflare's example: thumbnail right after creator.
    assert list(body)[:3] == ["uid", "creator", "thumbnail"]


def test_error_state_carries_reason_and_other_states_do_not() -> None:
    failed = replace(
        downloading(),
        state="error",
        error_reason_code="ERR_NON_VIDEO",
        error_reason_text="The file was not recognized as a valid video file.",
    )
    assert status_json(failed) == {
        "state": "error",
        "errorReasonCode": "ERR_NON_VIDEO",
        "errorReasonText": "The file was not recognized as a valid video file.",
    }
    stale = replace(failed, state="inprogress", pct_complete="39.000000")
    assert status_json(stale) == {
        "state": "inprogress",
        "pctComplete": "39.000000",
        "errorReasonCode": "",
        "errorReasonText": "",
    }


@pytest.mark.parametrize("make", [downloading, ready])
def test_official_sdk_model_reads_the_shape(make: Any) -> None:
    video = Video.model_validate(video_json(make(), delivery_base=BASE))
    assert video.uid == UID
    assert video.created == CREATED
    assert video.status is not None and video.status.state == make().state
    assert video.playback is not None and video.playback.hls is not None
    assert video.playback.hls.endswith("/manifest/video.m3u8")
    assert video.model_extra in ({}, None), "no field the SDK does not know"


def test_rfc3339_is_utc_with_z() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert rfc3339(datetime(2026, 1, 2, 5, 4, 5, tzinfo=plus_two)) == "2026-01-02T03:04:05.000000Z"
    assert rfc3339(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05.000000Z"
    assert as_utc(datetime(2026, 1, 2, 5, tzinfo=plus_two)) == datetime(2026, 1, 2, 3, tzinfo=UTC)


def test_delivery_urls_share_one_base() -> None:
    urls = delivery_urls("http://h/d/", "u1")
    assert urls == {
        "hls": "http://h/d/u1/manifest/video.m3u8",
        "dash": "http://h/d/u1/manifest/video.mpd",
        "thumbnail": "http://h/d/u1/thumbnails/thumbnail.jpg",
        "preview": "http://h/d/u1/watch",
    }


def test_key_webhook_usage_and_envelope_shapes() -> None:
    key = EngineKey("k" * 32, "a" * 32, {"kty": "RSA", "n": "x", "e": "AQAB"}, CREATED, None)
    assert key_json(key) == {"id": "k" * 32, "created": "2026-11-23T13:00:00.123456Z"}
    hook = Webhook("a" * 32, "https://hooks.example/x", "s" * 32, CREATED)
    assert webhook_json(hook) == {
        "notificationUrl": "https://hooks.example/x",
        "modified": "2026-11-23T13:00:00.123456Z",
        "secret": "s" * 32,
    }
    assert storage_usage_json(creator=None, minutes=1.5, limit=None, count=2) == {
        "creator": None,
        "totalStorageMinutes": 1.5,
        "totalStorageMinutesLimit": None,
        "videoCount": 2,
    }
    assert envelope([1], total="9", range="1") == {
        "result": [1],
        "success": True,
        "errors": [],
        "messages": [],
        "total": "9",
        "range": "1",
    }
    failed = envelope(None, errors=[{"code": 10003, "message": "nope"}])
    assert failed["success"] is False and failed["result"] is None


# -- requests --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["https://example.com/a.mp4", "http://127.0.0.1:8080/x", "  HTTPS://Example.com/a  "],
)
def test_http_urls_accepted(url: str) -> None:
    assert http_url(url, "url") == url.strip()


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a.mp4", "file:///etc/passwd", "example.com/a.mp4", "https://", ""]
)
def test_other_urls_refused(url: str) -> None:
    with pytest.raises(InvalidInput, match="url must be an http"):
        http_url(url, "url")


def test_file_name_defaults() -> None:
    assert file_name("https://h/media/My%20Clip.mp4?sig=1") == "My Clip.mp4"
    assert file_name("https://h/") == "https://h/"


def test_scheduled_deletion_window() -> None:
    upload = datetime.now(UTC)
    assert check_deletion(None, upload) is None
    ok = upload + timedelta(days=30, seconds=1)
    assert check_deletion(ok.replace(tzinfo=None), upload) == ok
    with pytest.raises(InvalidInput, match="at least 30 days"):
        check_deletion(upload + timedelta(days=29), upload)
    with pytest.raises(InvalidInput, match="at most 1096 days"):
        check_deletion(upload + timedelta(days=1097), upload)
    old_upload = upload - timedelta(days=60)
    with pytest.raises(InvalidInput, match="at least 30 days"):
        check_deletion(upload - timedelta(days=1), old_upload)  # in the past


def test_copy_body_reads_camel_case_and_is_strict() -> None:
    body = CopyBody.model_validate(
        {
            "url": "https://h/a.mp4",
            "requireSignedURLs": True,
            "allowedOrigins": ["example.com"],
            "thumbnailTimestampPct": 1,
            "creator": "c" * 64,
            "unknownField": "ignored",
        }
    )
    assert body.require_signed_urls is True and body.thumbnail_timestamp_pct == 1.0
    for bad in (
        {"requireSignedURLs": "true"},
        {"thumbnailTimestampPct": 1.01},
        {"thumbnailTimestampPct": "0.5"},
        {"creator": "c" * 65},
        {"allowedOrigins": "example.com"},
        {"meta": ["not", "an", "object"]},
        {"url": 5},
    ):
        with pytest.raises(ValidationError):
            CopyBody.model_validate(bad)


def test_edit_token_and_webhook_bodies() -> None:
    edit = EditBody.model_validate({"scheduledDeletion": None, "maxDurationSeconds": 60})
    assert edit.model_fields_set == {"scheduled_deletion", "max_duration_seconds"}
    with pytest.raises(ValidationError):
        EditBody.model_validate({"maxDurationSeconds": 0})
    token = TokenBody.model_validate({"exp": 5, "accessRules": [{"type": "any"}]})
    assert token.access_rules == [{"type": "any"}] and token.downloadable is False
    with pytest.raises(ValidationError):
        TokenBody.model_validate({"exp": "5"})
    assert WebhookBody.model_validate({"notificationUrl": "https://a"}).camel == "https://a"
    assert WebhookBody.model_validate({"notification_url": "https://b"}).snake == "https://b"
