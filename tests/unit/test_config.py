from __future__ import annotations

from pathlib import Path

import pytest

from hybridvideo.config import Settings, env_name, load_settings
from hybridvideo.errors import ConfigurationError


def test_embedded_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRIDVIDEO_DATA_DIR", str(tmp_path))
    s = load_settings()
    assert s.port == 8787
    assert s.resolved_database_url == f"sqlite:///{(tmp_path / 'catalog.db').resolve()}"
    assert s.resolved_queue_backend == "sqlite"
    assert s.resolved_archive_backend == "local"
    assert s.runs_embedded_worker and s.runs_auto_migrate
    assert s.resolved_public_url == "http://127.0.0.1:8787"


def test_team_names_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "0123456789abcdef0123456789abcdef")
    monkeypatch.setenv("CLOUDFLARE_STREAM_TOKEN", "tok")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("HYBRIDVIDEO_S3_BUCKET", "assets")
    s = load_settings()
    assert s.cloudflare_stream_token is not None
    assert s.cloudflare_stream_token.get_secret_value() == "tok"
    assert s.resolved_queue_backend == "redis" and not s.runs_embedded_worker
    # With no explicit endpoint the S3 archive goes to the account's R2 endpoint.
    assert s.resolved_archive_backend == "s3"
    assert s.resolved_s3_endpoint_url == (
        "https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com"
    )


def test_postgres_urls_are_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db:5432/hv")
    monkeypatch.setenv("HYBRIDVIDEO_ADMIN_TOKEN", "x" * 20)
    monkeypatch.setenv("HYBRIDVIDEO_SECRET_KEY", "y" * 20)
    s = load_settings()
    assert s.resolved_database_url == "postgresql+psycopg://u:p@db:5432/hv"
    assert not s.runs_auto_migrate


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("HYBRIDVIDEO_PORT", "eighty", "HYBRIDVIDEO_PORT"),
        ("HYBRIDVIDEO_PORT", "70000", "HYBRIDVIDEO_PORT"),
        ("DATABASE_URL", "mysql://x", "DATABASE_URL: Value error, must be a sqlite"),
        ("REDIS_URL", "http://x", "REDIS_URL"),
        ("CLOUDFLARE_ACCOUNT_ID", "not-an-id", "CLOUDFLARE_ACCOUNT_ID"),
        ("HYBRIDVIDEO_ADMIN_TOKEN", "short", "HYBRIDVIDEO_ADMIN_TOKEN: Value error, must be at"),
        ("HYBRIDVIDEO_QUEUE_BACKEND", "kafka", "HYBRIDVIDEO_QUEUE_BACKEND"),
        ("HYBRIDVIDEO_S3_PART_SIZE", "1024", "HYBRIDVIDEO_S3_PART_SIZE"),
        ("HYBRIDVIDEO_PUBLIC_URL", "ftp://x", "HYBRIDVIDEO_PUBLIC_URL"),
        ("DATABASE_URL", "postgresql://h:port/db", "DATABASE_URL: Value error, has an invalid"),
        ("REDIS_URL", "redis://h:99999/0", "REDIS_URL: Value error, has an invalid port"),
        ("HYBRIDVIDEO_LOG_FORMAT", "xml", "HYBRIDVIDEO_LOG_FORMAT"),
    ],
)
def test_invalid_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert expected in info.value.message


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"HYBRIDVIDEO_QUEUE_BACKEND": "redis"}, "REDIS_URL: required"),
        ({"HYBRIDVIDEO_ARCHIVE_BACKEND": "s3"}, "HYBRIDVIDEO_S3_BUCKET: required"),
        ({"HYBRIDVIDEO_S3_BUCKET": "b"}, "HYBRIDVIDEO_S3_ENDPOINT_URL: required"),
        ({"DATABASE_URL": "postgresql://h/db"}, "HYBRIDVIDEO_ADMIN_TOKEN: required"),
        ({"DATABASE_URL": "postgresql://h/db"}, "HYBRIDVIDEO_SECRET_KEY: required"),
    ],
)
def test_inconsistent_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigurationError, match=expected):
        load_settings()


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRIDVIDEO_PORT", "9000")
    assert load_settings(port=9100).port == 9100
    assert load_settings(port=None).port == 9000


def test_every_setting_is_in_the_readme() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    missing = [env_name(f) for f in Settings.model_fields if f"`{env_name(f)}`" not in readme]
    assert missing == []


def test_delivery_defaults_to_the_built_in_engine() -> None:
    s = load_settings()
    assert s.runs_engine and not s.uses_cloudflare
    assert s.resolved_stream_api_url == "http://127.0.0.1:8787/client/v4"
    assert s.resolved_engine_delivery_url == "http://127.0.0.1:8787/delivery"
    assert s.resolved_engine_database_url == s.resolved_database_url


def test_cloudflare_credentials_switch_delivery_to_cloudflare(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "0123456789abcdef0123456789abcdef")
    monkeypatch.setenv("CLOUDFLARE_STREAM_TOKEN", "t" * 40)
    s = load_settings()
    assert s.uses_cloudflare and not s.runs_engine
    assert s.resolved_stream_api_url == "https://api.cloudflare.com/client/v4"
    # The same credentials against a self-hosted engine elsewhere: only the URL changes.
    monkeypatch.setenv("HYBRIDVIDEO_STREAM_API_URL", "http://engine.internal:8787/client/v4")
    s = load_settings()
    assert not s.uses_cloudflare and not s.runs_engine  # the engine runs over there
    assert s.resolved_stream_api_url == "http://engine.internal:8787/client/v4"


def test_signing_key_needs_its_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRIDVIDEO_STREAM_SIGNING_KEY", "abc")
    with pytest.raises(ConfigurationError, match="HYBRIDVIDEO_STREAM_SIGNING_KEY_ID"):
        load_settings()
    monkeypatch.setenv("HYBRIDVIDEO_STREAM_SIGNING_KEY_ID", "not-hex")
    with pytest.raises(ConfigurationError, match="HYBRIDVIDEO_STREAM_SIGNING_KEY_ID"):
        load_settings()
