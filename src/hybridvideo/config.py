"""Settings, read from the environment once, by the composition root.

Our own variables carry the ``HYBRIDVIDEO_`` prefix; names the user's team already has are
honoured as they are (``CLOUDFLARE_ACCOUNT_ID``, ``CLOUDFLARE_STREAM_TOKEN``,
``DATABASE_URL``, ``REDIS_URL``). Nothing here runs at import time: call
:func:`load_settings`, which turns every validation problem into one
:class:`~hybridvideo.errors.ConfigurationError` naming the variables at fault.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hybridvideo.errors import ConfigurationError

ENV_PREFIX = "HYBRIDVIDEO_"
MIN_PART_SIZE = 5 * 1024 * 1024

_ACCOUNT_ID = re.compile(r"^[0-9a-f]{32}$")


def _check_port(url: str) -> None:
    """Raise ValueError (named by pydantic after the variable) for a malformed host:port."""
    try:
        _ = urlsplit(url).port
    except ValueError:
        raise ValueError("has an invalid port") from None


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """Every setting, with the embedded defaults (SQLite, local archive, in-process worker)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", populate_by_name=True, frozen=True
    )

    data_dir: Path = Field(Path(".hybridvideo"), description="Where embedded state lives.")
    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(8787, ge=1, le=65535)
    public_url: str | None = Field(
        None, description="Base URL clients use to reach this server (signed archive URLs)."
    )
    admin_token: SecretStr | None = Field(None, description="Bearer token for the admin API.")
    secret_key: SecretStr | None = Field(None, description="Key for our own signed URLs.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] | None = Field(
        None, description="Default: console on a terminal, json otherwise."
    )

    database_url: str | None = Field(None, validation_alias=_env("DATABASE_URL"))
    auto_migrate: bool | None = Field(
        None, description="Upgrade the catalog on start (default: only for SQLite)."
    )

    redis_url: str | None = Field(None, validation_alias=_env("REDIS_URL"))
    queue_backend: Literal["auto", "sqlite", "redis", "postgres", "memory"] = "auto"
    worker_concurrency: int = Field(2, ge=1, le=64)
    embedded_worker: bool | None = Field(
        None, description="Run jobs inside `serve` (default: yes on the SQLite queue)."
    )

    archive_backend: Literal["auto", "local", "s3"] = "auto"
    archive_dir: Path | None = None
    archive_public_base_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_region: str = "auto"
    s3_access_key_id: str | None = Field(
        None, validation_alias=_env("HYBRIDVIDEO_S3_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID")
    )
    s3_secret_access_key: SecretStr | None = Field(
        None,
        validation_alias=_env("HYBRIDVIDEO_S3_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
    )
    s3_part_size: int = Field(8 * 1024 * 1024, ge=MIN_PART_SIZE, le=5 * 1024**3)

    cloudflare_account_id: str | None = Field(None, validation_alias=_env("CLOUDFLARE_ACCOUNT_ID"))
    cloudflare_stream_token: SecretStr | None = Field(
        None, validation_alias=_env("CLOUDFLARE_STREAM_TOKEN")
    )

    stream_api_url: str | None = Field(
        None, description="Stream API base URL (Cloudflare's, or an engine's /client/v4)."
    )
    engine: bool | None = Field(
        None, description="Mount the built-in engine in `serve` (default: when the client uses it)."
    )
    engine_media_dir: Path | None = None
    engine_delivery_url: str | None = None
    engine_database_url: str | None = None
    engine_country_header: str = Field("CF-IPCountry", min_length=1, max_length=64)
    engine_preset: Literal[
        "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"
    ] = "veryfast"
    engine_early_first_rung: bool = Field(
        False, description="Encode the lowest rung alone first (playable sooner, ~10% more CPU)."
    )
    engine_api_rate_limit: int = Field(
        0, ge=0, le=1_000_000, description="Engine API requests allowed per window (0: off)."
    )
    engine_api_rate_window: float = Field(
        300.0, gt=0, le=86_400, description="Seconds of the engine API's sliding rate window."
    )
    engine_faults: str = Field(
        "", max_length=1000, description="Test mode: inject API faults, e.g. '429=0.1,seed=7'."
    )
    engine_accept_only: bool = Field(
        False, description="Test mode: copies become ready without fetching or encoding."
    )
    stream_signing_key_id: str | None = Field(None, pattern=r"^[0-9a-f]{32}$")
    stream_signing_key: SecretStr | None = Field(
        None, description="Base64 PEM or JWK of the playback signing key (as Cloudflare gives it)."
    )
    stream_webhook_secret: SecretStr | None = Field(
        None, description="Secret of Stream's Webhook-Signature (`stream webhook set` prints it)."
    )
    stream_rate_limit: int = Field(
        1200, ge=1, le=1_000_000, description="Stream API requests allowed per rate window."
    )
    stream_rate_window: float = Field(
        300.0, gt=0, le=86_400, description="Seconds of the Stream API's sliding rate window."
    )
    stream_timeout: float = Field(
        30.0, gt=0, le=600, description="Seconds one Stream API request may take before we give up."
    )
    stream_source_url_ttl: int = Field(
        86_400,
        ge=900,
        le=604_800,
        description="Seconds a master's presigned URL for Stream stays valid (R2: 7 days max).",
    )
    stream_require_signed_urls: bool = Field(
        True, description="Copies play only with a signed token (Stream's requireSignedURLs)."
    )
    stream_delivery_url: str | None = Field(
        None, description="Cloudflare's customer delivery base (https://customer-CODE...)."
    )
    # Playback (issue 6): the app's viewer identity, the policy, the tokens handed out
    playback_policy: str = Field(
        "owner,grant,admin",
        max_length=200,
        description="Rules tried in order: public, signed_in, owner, grant, admin.",
    )
    playback_public_collections: str = Field(
        "", max_length=2000, description="Comma-separated collections anyone may play."
    )
    playback_jwt_secret: SecretStr | None = Field(
        None, description="HS256 shared secret of the app's viewer JWTs (Supabase's JWT secret)."
    )
    playback_jwks_url: str | None = Field(
        None, description="JWKS URL of the app's identity provider (RS256/ES256 viewer JWTs)."
    )
    playback_jwt_algorithms: str = Field(
        "", max_length=200, description="Accepted viewer JWT algorithms (default: by the keys)."
    )
    playback_jwt_issuer: str | None = Field(None, max_length=500)
    playback_jwt_audience: str | None = Field(None, max_length=500)
    playback_jwt_leeway: int = Field(30, ge=0, le=600)
    playback_jwks_refresh_seconds: float = Field(
        60.0, ge=0, le=86_400, description="Least seconds between JWKS fetches for unknown kids."
    )
    playback_admin_claim: str = Field(
        "role=admin", min_length=3, max_length=200, description="claim=value that makes an admin."
    )
    playback_token_ttl: int = Field(
        3600, ge=60, le=86_400, description="Seconds a playback token stays valid (max 24 h)."
    )
    playback_bind_ip: bool = Field(
        False, description="Bind playback tokens to the viewer's IP (an ip.src access rule)."
    )
    playback_downloadable: bool = Field(False, description="Tokens allow MP4 downloads.")
    playback_token_cache_seconds: float = Field(
        60.0, ge=0, le=3600, description="Reuse a minted token this long (0: off)."
    )
    playback_retry_after: int = Field(
        30, ge=1, le=3600, description="Retry-After of the 202 answered for evicted videos."
    )
    # Ingest (tus at /files/, direct and legacy uploads)
    upload_max_size: int = Field(
        64 * 1024**3, ge=1, le=2**53, description="Largest upload in bytes (Tus-Max-Size)."
    )
    upload_expiry_hours: float = Field(
        24.0, gt=0, le=24 * 90, description="An upload untouched this long expires."
    )
    upload_token_ttl: int = Field(
        6 * 3600, ge=60, le=7 * 24 * 3600, description="Seconds an upload token stays valid."
    )
    upload_lock: Literal["auto", "process", "redis"] = "auto"
    upload_dir: Path | None = Field(
        None, description="Unfinished local uploads; on the archive's disk, finishing is a rename."
    )
    direct_upload_max_size: int = Field(200 * 1024**2, ge=1, le=5 * 1024**3)
    legacy_base64_uploads: bool = Field(
        False, description="Keep the deprecated base64 JSON upload endpoint."
    )
    cors_origins: list[str] = Field(default_factory=list)
    # The reference player (/watch, /embed) and its QoE beacons; plain settings until the
    # flags issue turns them into per-viewer flags.
    player_segment_cache: bool = Field(
        True, description="Keep played segments in the Cache API (a replay refetches none)."
    )
    player_preload_next: bool = Field(
        True, description="Preload the first segments of the next video of a list (?next=ID)."
    )
    player_abr: bool = Field(True, description="Adaptive bitrate; off locks the top rendition.")
    player_debug: bool = Field(False, description="Verbose hls.js and player logs in the console.")
    player_embed_origins: list[str] = Field(
        default_factory=list, description="Origins that may frame /embed/{id} (frame-ancestors)."
    )
    player_cohort: str = Field(
        "default", max_length=64, description="The flag cohort reported with every QoE beacon."
    )
    metrics_public: bool = Field(
        False, description="Serve /metrics without the admin token (scrapers on a private net)."
    )
    upload_hook_url: str | None = Field(
        None, description="Where upload events (created/finished/terminated/failed) are POSTed."
    )
    upload_hook_secret: SecretStr | None = Field(
        None, description="Key of the upload hooks' Webhook-Signature (as Stream's webhooks)."
    )

    @field_validator("database_url", "engine_database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("sqlite:", "postgres://", "postgresql")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        _check_port(value)
        if value.startswith("postgres://"):
            value = "postgresql+psycopg://" + value[len("postgres://") :]
        elif value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value[len("postgresql://") :]
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        _check_port(value)
        return value

    @field_validator(
        "public_url",
        "archive_public_base_url",
        "s3_endpoint_url",
        "stream_api_url",
        "engine_delivery_url",
        "stream_delivery_url",
        "playback_jwks_url",
    )
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http:// or https:// URL")
        _check_port(value)
        return value.rstrip("/")

    @field_validator("cloudflare_account_id")
    @classmethod
    def _account_id(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not _ACCOUNT_ID.match(value):
            raise ValueError("must be the 32-character hex account id from the dashboard")
        return value

    @field_validator("admin_token", "secret_key", "stream_webhook_secret", "playback_jwt_secret")
    @classmethod
    def _strong_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @field_validator("upload_hook_url")
    @classmethod
    def _upload_hook_url(cls, value: str | None) -> str | None:
        # Kept exactly as given (no trailing-slash trimming): it is the app's endpoint.
        if not value:
            return None
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http:// or https:// URL")
        _check_port(value)
        return value

    @field_validator("upload_hook_secret")
    @classmethod
    def _upload_hook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    # -- derived values: the composition root reads these, never the raw fields ----------

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'catalog.db').resolve()}"

    @property
    def database_is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path | None:
        """The catalog's SQLite file, or None for PostgreSQL / in-memory SQLite."""
        url = self.resolved_database_url
        if not url.startswith("sqlite:///") or url in ("sqlite:///", "sqlite:///:memory:"):
            return None
        return Path(url[len("sqlite:///") :])

    @property
    def resolved_queue_backend(self) -> str:
        if self.queue_backend != "auto":
            return self.queue_backend
        return "redis" if self.redis_url else "sqlite"

    @property
    def resolved_upload_dir(self) -> Path:
        return self.upload_dir or self.data_dir / "uploads"

    @property
    def resolved_upload_lock(self) -> str:
        """Redis locks whenever Redis is configured (several nodes), else in-process."""
        if self.upload_lock != "auto":
            return self.upload_lock
        return "redis" if self.redis_url else "process"

    @property
    def runs_embedded_worker(self) -> bool:
        if self.embedded_worker is not None:
            return self.embedded_worker
        return self.resolved_queue_backend in ("sqlite", "memory")

    @property
    def runs_auto_migrate(self) -> bool:
        return self.auto_migrate if self.auto_migrate is not None else self.database_is_sqlite

    @property
    def resolved_archive_backend(self) -> str:
        if self.archive_backend != "auto":
            return self.archive_backend
        return "s3" if self.s3_bucket else "local"

    @property
    def resolved_archive_dir(self) -> Path:
        return self.archive_dir or self.data_dir / "archive"

    @property
    def resolved_s3_endpoint_url(self) -> str | None:
        """An explicit endpoint, else R2's, derived from ``CLOUDFLARE_ACCOUNT_ID``."""
        if self.s3_endpoint_url:
            return self.s3_endpoint_url
        if self.cloudflare_account_id:
            return f"https://{self.cloudflare_account_id}.r2.cloudflarestorage.com"
        return None

    @property
    def resolved_public_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def uses_cloudflare(self) -> bool:
        """Delivery goes to Cloudflare Stream: credentials given and no engine URL chosen."""
        has_credentials = bool(self.cloudflare_account_id and self.cloudflare_stream_token)
        return has_credentials and (
            self.stream_api_url is None or self.stream_api_url.startswith("https://api.cloudflare")
        )

    @property
    def runs_engine(self) -> bool:
        """Mount the engine here: by default only when the Stream client points at us."""
        if self.engine is not None:
            return self.engine
        return self.stream_api_url is None and not self.uses_cloudflare

    @property
    def resolved_stream_api_url(self) -> str:
        if self.stream_api_url:
            return self.stream_api_url
        if self.uses_cloudflare:
            return "https://api.cloudflare.com/client/v4"
        return f"{self.resolved_public_url}/client/v4"

    @property
    def resolved_engine_media_dir(self) -> Path:
        return self.engine_media_dir or self.data_dir / "engine"

    @property
    def resolved_engine_delivery_url(self) -> str:
        return self.engine_delivery_url or f"{self.resolved_public_url}/delivery"

    @property
    def resolved_engine_database_url(self) -> str:
        return self.engine_database_url or self.resolved_database_url

    def check_consistency(self) -> None:
        """Cross-field rules; raises :class:`ConfigurationError`."""
        problems: list[str] = []
        if self.resolved_queue_backend == "redis" and not self.redis_url:
            problems.append("REDIS_URL: required when HYBRIDVIDEO_QUEUE_BACKEND=redis")
        if self.resolved_queue_backend == "postgres" and self.database_is_sqlite:
            problems.append(
                "DATABASE_URL: a PostgreSQL URL is required when HYBRIDVIDEO_QUEUE_BACKEND=postgres"
            )
        if self.resolved_archive_backend == "s3" and not self.s3_bucket:
            problems.append("HYBRIDVIDEO_S3_BUCKET: required when HYBRIDVIDEO_ARCHIVE_BACKEND=s3")
        if self.resolved_archive_backend == "s3" and not self.resolved_s3_endpoint_url:
            problems.append(
                "HYBRIDVIDEO_S3_ENDPOINT_URL: required for the S3 archive "
                "(or set CLOUDFLARE_ACCOUNT_ID to use R2)"
            )
        if (
            not self.database_is_sqlite
            and self.resolved_archive_backend == "local"
            and self.secret_key is None
        ):
            problems.append(
                "HYBRIDVIDEO_SECRET_KEY: required when several nodes share a PostgreSQL "
                "catalog and a local archive (every node must sign URLs the same way)"
            )
        if not self.database_is_sqlite and self.admin_token is None:
            problems.append(
                "HYBRIDVIDEO_ADMIN_TOKEN: required when DATABASE_URL points at a shared "
                "database (every node must accept the same token)"
            )
        if bool(self.stream_signing_key_id) != bool(self.stream_signing_key):
            problems.append(
                "HYBRIDVIDEO_STREAM_SIGNING_KEY: set it together with "
                "HYBRIDVIDEO_STREAM_SIGNING_KEY_ID (or neither)"
            )
        if self.upload_hook_url and self.upload_hook_secret is None:
            problems.append(
                "HYBRIDVIDEO_UPLOAD_HOOK_SECRET: required when HYBRIDVIDEO_UPLOAD_HOOK_URL is set "
                "(upload hooks are always signed)"
            )
        if problems:
            raise ConfigurationError("invalid configuration:\n  " + "\n  ".join(problems))


def env_name(field: str) -> str:
    """The environment variable a field is read from (its first alias, or prefix+NAME)."""
    info = Settings.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        return str(first)
    return ENV_PREFIX + field.upper()


def load_settings(**overrides: Any) -> Settings:
    """Read the environment (plus explicit ``overrides`` from CLI flags) and check it."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            name = env_name(field) if field in Settings.model_fields else field
            lines.append(f"{name}: {err['msg']}")
        raise ConfigurationError("invalid configuration:\n  " + "\n  ".join(lines)) from None
    settings.check_consistency()
    return settings
