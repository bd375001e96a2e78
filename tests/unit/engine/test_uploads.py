"""The engine's tus rules as pure functions: Upload-Metadata settings and chunk sizes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hybridvideo.engine.uploads import (
    CHUNK_MULTIPLE,
    MAX_CHUNK,
    MIN_CHUNK,
    UPLOAD_EXPIRY,
    UploadSettings,
    cloudflare_chunk_rule,
    settings_from_metadata,
    upload_deadline,
)
from hybridvideo.errors import InvalidInput
from hybridvideo.ingest.tus.protocol import UploadInfo

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def test_settings_from_cloudflares_keys() -> None:
    settings = settings_from_metadata(
        {
            "name": "My clip",
            "requiresignedurls": None,
            "allowedorigins": " a.example, ,b.example:8443 ",
            "thumbnailtimestamppct": "0.5",
            "scheduleddeletion": "2030-03-01T00:00:00Z",
            "maxDurationSeconds": "600",  # the direct-creator doc's spelling
            "EXPIRY": "2030-01-01T13:00:00+00:00",
            "filename": "ignored.mp4",
        },
        now=NOW,
    )
    assert settings == UploadSettings(
        name="My clip",
        require_signed_urls=True,
        allowed_origins=("a.example", "b.example:8443"),
        thumbnail_timestamp_pct=0.5,
        scheduled_deletion=datetime(2030, 3, 1, tzinfo=UTC),
        max_duration_seconds=600,
        expiry=datetime(2030, 1, 1, 13, tzinfo=UTC),
    )
    assert UploadSettings.from_note(settings.to_note()) == settings


def test_defaults_and_presence_semantics() -> None:
    assert settings_from_metadata({}, now=NOW) == UploadSettings()
    # Cloudflare: the key's presence alone means true, whatever follows.
    assert settings_from_metadata({"requiresignedurls": "false"}, now=NOW).require_signed_urls
    assert settings_from_metadata({"allowedorigins": None}, now=NOW).allowed_origins == ()


@pytest.mark.parametrize(
    ("metadata", "needle"),
    [
        ({"watermark": "uid"}, "watermark"),
        ({"thumbnailtimestamppct": "1.01"}, "thumbnailtimestamppct"),
        ({"thumbnailtimestamppct": "nan"}, "thumbnailtimestamppct"),
        ({"thumbnailtimestamppct": None}, "thumbnailtimestamppct"),
        ({"maxdurationseconds": "0"}, "maxDurationSeconds"),
        ({"maxdurationseconds": "36001"}, "maxDurationSeconds"),
        ({"maxdurationseconds": "-5"}, "maxDurationSeconds"),
        ({"maxdurationseconds": "\uff11\uff10"}, "maxDurationSeconds"),  # full-width digits
        ({"expiry": "tomorrow"}, "RFC 3339"),
        ({"expiry": "2030-01-01T11:59:00Z"}, "future"),
        ({"expiry": "2030-02-01T00:00:00Z"}, "7 days"),
        ({"scheduleddeletion": "2030-01-15T00:00:00Z"}, "30 days"),
        ({"allowedorigins": "x" * 256}, "allowedorigins"),
    ],
)
def test_bad_values_are_refused(metadata: dict[str, str | None], needle: str) -> None:
    with pytest.raises(InvalidInput, match=needle):
        settings_from_metadata(metadata, now=NOW)


def test_deadlines() -> None:
    asked = NOW + timedelta(hours=2)
    assert upload_deadline(UploadSettings(expiry=asked), direct=True, now=NOW) == asked
    # Cloudflare's default for direct creator uploads; ours for uploads made with the token.
    assert upload_deadline(UploadSettings(), direct=True, now=NOW) == NOW + timedelta(minutes=30)
    assert upload_deadline(UploadSettings(), direct=False, now=NOW) == NOW + UPLOAD_EXPIRY


def info(length: int) -> UploadInfo:
    return UploadInfo(id="a" * 32, offset=0, length=length, created_at=NOW)


BIG = 10 * MAX_CHUNK


@pytest.mark.parametrize(
    ("length", "offset", "chunk"),
    [
        (100, 0, 100),  # a file smaller than a chunk: one (last) chunk
        (BIG, 0, MIN_CHUNK),  # 5 MiB is 20 x 256 KiB
        (BIG, 0, MAX_CHUNK),  # 200 MiB is 800 x 256 KiB
        (BIG, MIN_CHUNK, 50 * 1024 * 1024),  # Cloudflare's recommended 50 MiB
        (MIN_CHUNK + 7, MIN_CHUNK, 7),  # a ragged, tiny last chunk
        (MAX_CHUNK, 0, MAX_CHUNK),
    ],
)
def test_chunks_cloudflare_accepts(length: int, offset: int, chunk: int) -> None:
    cloudflare_chunk_rule(info(length), offset, chunk)


@pytest.mark.parametrize(
    ("length", "offset", "chunk", "needle"),
    [
        (BIG, 0, 1024 * 1024, "at least 5,242,880"),
        (BIG, 0, 0, "at least 5,242,880"),
        (BIG, 0, MIN_CHUNK + 1, "multiple of 262,144"),
        (BIG, 0, MIN_CHUNK + CHUNK_MULTIPLE // 2, "multiple of 262,144"),
        (BIG, 0, MAX_CHUNK + CHUNK_MULTIPLE, "at most 209,715,200"),
        (MAX_CHUNK + 1, 0, MAX_CHUNK + 1, "at most 209,715,200"),  # even as the last chunk
        (BIG, 0, None, "Content-Length"),
    ],
)
def test_chunks_cloudflare_refuses(
    length: int, offset: int, chunk: int | None, needle: str
) -> None:
    with pytest.raises(InvalidInput, match=needle):
        cloudflare_chunk_rule(info(length), offset, chunk)
