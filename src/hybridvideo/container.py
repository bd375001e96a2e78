"""The composition root: the one place that turns :class:`Settings` into working parts.

Only this module imports the concrete adapters (local folder or S3 archive, SQL catalog,
huey queue); everything else sees the Protocols in ``*/base.py``. The CLI and the HTTP app
both call :func:`build_container`, so a setting means the same thing everywhere.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hybridvideo.archive.base import ArchiveStore
from hybridvideo.catalog.base import Catalog
from hybridvideo.config import Settings
from hybridvideo.delivery.service import DeliveryService
from hybridvideo.engine.runtime import EngineRuntime
from hybridvideo.errors import ConfigurationError
from hybridvideo.ingest.locks import UploadLocker
from hybridvideo.ingest.service import IngestService
from hybridvideo.ingest.tokens import UploadTokens
from hybridvideo.ingest.tus.handler import TusMetrics
from hybridvideo.ingest.tus.protocol import Capabilities as TusCapabilities
from hybridvideo.ingest.tus.store import UploadStore
from hybridvideo.migrate.journal import RunJournal
from hybridvideo.migrate.runner import MigrationRunner
from hybridvideo.migrate.service import MigrationService
from hybridvideo.playback.service import PlaybackService
from hybridvideo.queue.base import TaskQueue
from hybridvideo.stream.base import StreamProvider
from hybridvideo.stream.ratelimit import RateLimitedStream, RateLimiter, RetryPolicy
from hybridvideo.stream.webhooks import MemoryReplayCache, ReplayCache
from hybridvideo.telemetry.qoe import BeaconStore
from hybridvideo.videos.service import VideoService

log = logging.getLogger("hybridvideo")


@dataclass
class Container:
    settings: Settings
    catalog: Catalog
    archive: ArchiveStore
    queue: TaskQueue
    videos: VideoService
    #: Sends catalog videos to the Stream service and records the outcome.
    delivery: DeliveryService
    #: None outside ``serve`` when no token exists yet; the HTTP app refuses to start then.
    admin_token: str | None
    #: Ingest: tus uploads and what they become (see :func:`build_ingest`).
    ingest: IngestService
    upload_tokens: UploadTokens
    upload_locker: UploadLocker
    tus_capabilities: TusCapabilities
    tus_metrics: TusMetrics
    #: The Stream client every service shares (rate limited, see :func:`build_stream`).
    stream: StreamProvider
    #: The migration run journal (``hybridvideo migrate``), in the catalog's database.
    runs: RunJournal
    #: Phase 1 runs: start, resume, retry the failed ones (see :mod:`hybridvideo.migrate`).
    migrations: MigrationService
    #: Stream webhook signatures already accepted: Redis when nodes share one, else memory.
    webhook_replay: ReplayCache
    #: True when this start generated the admin token (the CLI prints it once).
    admin_token_generated: bool = False
    #: The built-in Stream engine, when this process runs it (``settings.runs_engine``).
    engine: EngineRuntime | None = None
    #: QoE beacons from the reference player (``POST /api/v1/telemetry/qoe``).
    beacons: BeaconStore | None = None
    #: Authorized playback: viewer JWTs, policy, grants, signed Stream URLs (issue 6).
    playback: PlaybackService | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def close(self) -> None:
        for closer in self._closers:
            closer()


def ensure_data_dir(settings: Settings) -> Path:
    """The data dir, created private (0700): it holds the catalog, the queue and secrets."""
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return settings.data_dir


def secret_from(settings: Settings, *, create: bool = True) -> str | None:
    """The URL-signing key: the setting, else the data dir's (created if ``create``)."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    path = settings.data_dir / "secret-key"
    if not create:
        return read_secret(path)
    ensure_data_dir(settings)
    return read_or_create_secret(path)[0]


def read_secret(path: Path) -> str | None:
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        return None
    return value if len(value) >= 16 else None


def read_or_create_secret(path: Path) -> tuple[str, bool]:
    """A secret kept in the data dir (mode 0600), created on first use.

    Creation is ``O_EXCL``: when several processes start at once exactly one writes the
    secret and the others read that same value (waiting briefly for it to be written).
    """
    for _ in range(100):
        existing = read_secret(path)
        if existing is not None:
            return existing, False
        value = secrets.token_urlsafe(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            time.sleep(0.02)  # another process is writing it right now
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(value + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return value, True
    raise ConfigurationError(f"{path} exists but holds no usable secret; delete it to renew")


def stream_credentials(settings: Settings, *, create: bool = True) -> tuple[str, str]:
    """The account id and API token both the Stream client and the engine use.

    Cloudflare's variables when set; otherwise an account id and token generated once into
    the data dir, so `serve` (engine) and the CLI (client) on one data dir agree.
    """
    account = settings.cloudflare_account_id
    token = (
        settings.cloudflare_stream_token.get_secret_value()
        if (settings.cloudflare_stream_token)
        else None
    )
    if account is None:
        path = settings.data_dir / "engine-account-id"
        account = _read_or_create_hex(path) if create else (read_secret(path) or "")
    if token is None:
        path = settings.data_dir / "stream-token"
        if create:
            ensure_data_dir(settings)
            token = read_or_create_secret(path)[0]
        else:
            token = read_secret(path) or ""
    return account, token


def _read_or_create_hex(path: Path) -> str:
    """A 32-hex-digit id (Cloudflare's account id shape), kept in the data dir."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(100):
            value = path.read_text().strip()
            if len(value) == 32:
                return value
            time.sleep(0.02)
        raise ConfigurationError(f"{path} does not hold a 32-hex-digit account id") from None
    value = secrets.token_hex(16)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def build_stream(
    settings: Settings, *, max_retries: int = 5, timeout: float = 30.0, create: bool = True
) -> StreamProvider:
    """The Stream client: Cloudflare or an engine, by ``resolved_stream_api_url`` alone."""
    from hybridvideo.stream.cloudflare import CloudflareStream

    account, token = stream_credentials(settings, create=create)
    if not account or not token:
        raise ConfigurationError(
            "no Stream account id / API token: set CLOUDFLARE_ACCOUNT_ID and "
            "CLOUDFLARE_STREAM_TOKEN (or start `hybridvideo serve` once to make the engine's)"
        )
    return CloudflareStream(
        account_id=account,
        api_token=token,
        base_url=settings.resolved_stream_api_url,
        max_retries=max_retries,
        timeout=timeout,
    )


def rate_margin(window: float) -> float:
    """Seconds added to our window so the service never counts one request too many.

    The service counts arrivals, we count departures: a saturated limiter lets a request
    go the instant the oldest is ``window`` old, and latency jitter then lands it inside
    the service's window — a 429, and a pause for every thread. Measured with
    bench/migrate.py: 1 s windows without a margin drew a 429 every ~20 requests.
    50 ms plus 1% of the window (at most 2 s): 0.35% of Cloudflare's 5 minutes.
    """
    return min(2.0, 0.05 + 0.01 * window)


def rate_limited(stream: StreamProvider, settings: Settings) -> RateLimitedStream:
    """Every Stream call of this process under one limiter (Cloudflare's 1,200 requests
    per 5 minutes by default) with jittered retries. The SDK's own retries are off
    (``max_retries=0`` in :func:`build_stream`): requests it retried internally would be
    invisible to the limiter, and it would retry a copy that may have landed."""
    window = settings.stream_rate_window
    limiter = RateLimiter(settings.stream_rate_limit, window + rate_margin(window))
    return RateLimitedStream(stream, limiter, RetryPolicy(attempts=5, base=1.0, cap=60.0))


def build_replay_cache(settings: Settings, closers: list[Callable[[], None]]) -> ReplayCache:
    """Redis whenever one is configured (several nodes then share the webhook URL)."""
    if settings.redis_url is None:
        return MemoryReplayCache()
    from hybridvideo.stream.replay_redis import RedisReplayCache

    cache = RedisReplayCache(settings.redis_url)
    closers.append(cache.close)
    return cache


def build_archive(settings: Settings, secret: bytes, *, create: bool = True) -> ArchiveStore:
    """The configured store. A local folder is created only when it is the default one
    inside the data dir: an explicit ``HYBRIDVIDEO_ARCHIVE_DIR`` that is missing is most
    likely an unmounted volume, and writing masters beside it would hide them later."""
    if settings.resolved_archive_backend == "s3":
        from hybridvideo.archive.s3 import S3Archive

        assert settings.s3_bucket is not None  # checked by Settings.check_consistency
        secret_key = settings.s3_secret_access_key
        return S3Archive(
            bucket=settings.s3_bucket,
            endpoint_url=settings.resolved_s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=secret_key.get_secret_value() if secret_key else None,
            public_base_url=settings.archive_public_base_url,
            part_size=settings.s3_part_size,
        )
    from hybridvideo.archive.local import LocalArchive

    root = settings.resolved_archive_dir
    if create and settings.archive_dir is None:
        ensure_data_dir(settings)
        root.mkdir(mode=0o700, exist_ok=True)
    return LocalArchive(root, base_url=settings.resolved_public_url, secret=secret)


def build_queue(settings: Settings) -> TaskQueue:
    from hybridvideo.queue import huey_queue

    backend = settings.resolved_queue_backend
    if backend == "redis":
        assert settings.redis_url is not None
        return huey_queue.redis_queue(settings.redis_url)
    if backend == "postgres":
        return huey_queue.postgres_queue(settings.resolved_database_url)
    if backend == "memory":
        return huey_queue.memory_queue("hybridvideo")
    ensure_data_dir(settings)
    return huey_queue.sqlite_queue(settings.data_dir / "queue.db")


def build_catalog(
    settings: Settings, *, migrate: bool = False
) -> tuple[Catalog, Callable[[], None]]:
    """The SQL catalog and the function that releases its connections."""
    catalog, _, close = build_catalog_and_journal(settings, migrate=migrate)
    return catalog, close


def build_catalog_and_journal(
    settings: Settings, *, migrate: bool = False
) -> tuple[Catalog, RunJournal, Callable[[], None]]:
    """The SQL catalog, the migration run journal in the same database, and the function
    that releases their connections (one engine, one pool)."""
    from hybridvideo.catalog.sql import migrate as sql_migrate
    from hybridvideo.catalog.sql.engine import create_catalog_engine
    from hybridvideo.catalog.sql.repository import SqlCatalog
    from hybridvideo.catalog.sql.runs import SqlRunJournal

    url = settings.resolved_database_url
    if settings.database_is_sqlite and settings.database_url is None:
        ensure_data_dir(settings)
    if migrate:
        sql_migrate.upgrade(url)
    engine = create_catalog_engine(url)
    return SqlCatalog(engine), SqlRunJournal(engine), engine.dispose


def build_playback(
    settings: Settings,
    *,
    catalog: Catalog,
    archive: ArchiveStore,
    queue: TaskQueue,
    stream: StreamProvider,
) -> PlaybackService:
    """The playback service: identity from the app's JWTs, the policy, the token minter."""
    from hybridvideo.catalog.sql.grants import SqlGrantStore
    from hybridvideo.jobs import deliver_video
    from hybridvideo.playback.identity import JwksCache, ViewerAuthenticator, parse_algorithms
    from hybridvideo.playback.keys import load_signing_key
    from hybridvideo.playback.minter import TokenMinter
    from hybridvideo.playback.policy import (
        AdminClaim,
        PlaybackPolicy,
        parse_collections,
        parse_rules,
    )

    secret = settings.playback_jwt_secret
    jwks_url = settings.playback_jwks_url
    authenticator = ViewerAuthenticator(
        secret=secret.get_secret_value() if secret else None,
        jwks=JwksCache(jwks_url, refresh_seconds=settings.playback_jwks_refresh_seconds)
        if jwks_url
        else None,
        algorithms=parse_algorithms(
            settings.playback_jwt_algorithms, has_secret=secret is not None, has_jwks=bool(jwks_url)
        ),
        issuer=settings.playback_jwt_issuer,
        audience=settings.playback_jwt_audience,
        leeway=settings.playback_jwt_leeway,
    )
    grants = SqlGrantStore.on_catalog(catalog)
    policy = PlaybackPolicy(
        parse_rules(settings.playback_policy),
        grants=grants,
        admin_claim=AdminClaim.parse(settings.playback_admin_claim),
        public_collections=parse_collections(settings.playback_public_collections),
    )
    key_setting = settings.stream_signing_key
    minter = TokenMinter(
        key=load_signing_key(
            settings.stream_signing_key_id,
            key_setting.get_secret_value() if key_setting else None,
            settings.data_dir / "signing-key.json",
        ),
        remote=lambda uid, seconds: stream.create_token(uid, expires_in=seconds),
        lifetime=settings.playback_token_ttl,
        cache_seconds=settings.playback_token_cache_seconds,
        downloadable=settings.playback_downloadable,
    )
    delivery_base = (
        settings.stream_delivery_url
        if settings.uses_cloudflare
        else settings.stream_delivery_url or settings.resolved_engine_delivery_url
    )
    return PlaybackService(
        catalog=catalog,
        archive=archive,
        authenticator=authenticator,
        grants=grants,
        policy=policy,
        minter=minter,
        delivery_base=delivery_base,
        start_reimport=lambda video_id: deliver_video.enqueue(queue, video_id),
        bind_ip=settings.playback_bind_ip,
        retry_after=settings.playback_retry_after,
    )


def build_beacons(catalog: Catalog) -> BeaconStore:
    """The QoE beacon store on the catalog's own engine."""
    from hybridvideo.catalog.sql.beacons import SqlBeaconStore

    return SqlBeaconStore.on_catalog(catalog)


def migrate_catalog(settings: Settings) -> str | None:
    """Upgrade the catalog schema to the newest revision and return that revision."""
    from hybridvideo.catalog.sql import migrate as sql_migrate

    if settings.database_is_sqlite and settings.database_url is None:
        ensure_data_dir(settings)
    sql_migrate.upgrade(settings.resolved_database_url)
    if settings.runs_engine:
        from hybridvideo.engine import migrate as engine_migrate

        engine_migrate.upgrade(settings.resolved_engine_database_url)
    return sql_migrate.current_revision(settings.resolved_database_url)


def build_engine(
    settings: Settings, *, migrate: bool = False
) -> tuple[EngineRuntime, Callable[[], None]]:
    """The built-in Stream engine's parts, over its own (separately versioned) tables."""
    from hybridvideo.catalog.sql.engine import create_catalog_engine
    from hybridvideo.engine import migrate as engine_migrate
    from hybridvideo.engine.faults import parse_faults
    from hybridvideo.engine.store import EngineStore, relax_sqlite_durability

    faults = parse_faults(settings.engine_faults)  # a bad spec stops the start, not a request
    url = settings.resolved_engine_database_url
    if migrate:
        engine_migrate.upgrade(url)
    sql = create_catalog_engine(url)
    if settings.engine_accept_only:  # a load-test target: cheap commits (see the function)
        relax_sqlite_durability(sql)
    media = settings.resolved_engine_media_dir
    if settings.engine_media_dir is None:
        ensure_data_dir(settings)
        media.mkdir(mode=0o700, exist_ok=True)
    account, token = stream_credentials(settings)
    runtime = EngineRuntime(
        store=EngineStore(sql),
        account_id=account,
        api_token=token,
        media_root=media,
        delivery_base=settings.resolved_engine_delivery_url,
        country_header=settings.engine_country_header,
        preset=settings.engine_preset,
        early_first_rung=settings.engine_early_first_rung,
        api_rate_limit=settings.engine_api_rate_limit,
        api_rate_window=settings.engine_api_rate_window,
        faults=faults,
        accept_only=settings.engine_accept_only,
    )
    return runtime, sql.dispose


def build_upload_store(settings: Settings, archive: ArchiveStore) -> UploadStore:
    """Where unfinished uploads live: beside a local archive, or in the S3 bucket itself
    (so every node sharing the bucket can continue any upload)."""
    if settings.resolved_archive_backend == "s3":
        from hybridvideo.archive.s3 import S3Archive
        from hybridvideo.ingest.tus.s3_store import S3UploadStore

        assert isinstance(archive, S3Archive)
        return S3UploadStore(archive, part_size=settings.s3_part_size)
    from hybridvideo.ingest.tus.store import LocalUploadStore

    root = settings.resolved_upload_dir
    if settings.upload_dir is None:
        ensure_data_dir(settings)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    return LocalUploadStore(root, archive)


def tus_capabilities(settings: Settings) -> TusCapabilities:
    """Every tus extension we serve, registered here and nowhere else (OPTIONS reads it)."""
    return TusCapabilities(
        creation=True,
        creation_with_upload=True,
        creation_defer_length=True,
        expiration=True,
        checksum=True,
        termination=True,
        concatenation=True,
        max_size=settings.upload_max_size,
    )


def build_upload_locker(settings: Settings) -> UploadLocker:
    if settings.resolved_upload_lock == "redis":
        from hybridvideo.ingest.locks import RedisLocker

        if settings.redis_url is None:
            raise ConfigurationError("HYBRIDVIDEO_UPLOAD_LOCK=redis needs REDIS_URL")
        return RedisLocker(settings.redis_url)
    from hybridvideo.ingest.locks import InProcessLocker

    return InProcessLocker()


@dataclass
class IngestParts:
    service: IngestService
    tokens: UploadTokens
    locker: UploadLocker
    capabilities: TusCapabilities
    metrics: TusMetrics


def build_ingest(
    settings: Settings,
    *,
    archive: ArchiveStore,
    catalog: Catalog,
    queue: TaskQueue,
    secret: str,
) -> IngestParts:
    """The ingest parts: upload store, locker, tokens, metrics and the service."""
    from hybridvideo.ingest.hooks import build_hook_sender
    from hybridvideo.ingest.metrics import TusMetrics as PrometheusTusMetrics
    from hybridvideo.media.probe import probe_source
    from hybridvideo.media.reader import ArchiveReader
    from hybridvideo.media.thumbnail import make_thumbnail

    locker = build_upload_locker(settings)
    service = IngestService(
        store=build_upload_store(settings, archive),
        archive=archive,
        catalog=catalog,
        queue=queue,
        prober=probe_source,
        thumbnailer=make_thumbnail,
        reader=ArchiveReader,
        hooks=build_hook_sender(settings, queue),
        locker=locker,
    )
    return IngestParts(
        service=service,
        tokens=UploadTokens(secret.encode()),
        locker=locker,
        capabilities=tus_capabilities(settings),
        metrics=PrometheusTusMetrics(),
    )


def build_container(
    settings: Settings, *, migrate: bool | None = None, serving: bool = False
) -> Container:
    """Build every part; ``migrate`` overrides ``settings.runs_auto_migrate``.

    ``serving`` is for the HTTP server: only it needs the admin token, so only it creates
    one (and the CLI prints it once); other commands leave the data dir's token alone.
    """
    from hybridvideo.jobs import register_jobs
    from hybridvideo.media.probe import probe

    ensure_data_dir(settings)
    admin_token: str | None
    generated = False
    if settings.admin_token is not None:
        admin_token = settings.admin_token.get_secret_value()
    elif serving:
        admin_token, generated = read_or_create_secret(settings.data_dir / "admin-token")
    else:
        admin_token = read_secret(settings.data_dir / "admin-token")
    secret = secret_from(settings)
    assert secret is not None

    should_migrate = settings.runs_auto_migrate if migrate is None else migrate
    catalog, runs, close_catalog = build_catalog_and_journal(settings, migrate=should_migrate)
    closers = [close_catalog]
    engine: EngineRuntime | None = None
    if settings.runs_engine:
        engine, close_engine = build_engine(settings, migrate=should_migrate)
        closers.append(close_engine)
    try:
        archive = build_archive(settings, secret.encode())
        queue = build_queue(settings)
    except ValueError as exc:
        raise ConfigurationError(f"invalid configuration: {exc}") from None
    videos = VideoService(catalog=catalog, archive=archive, prober=probe)
    raw_stream = build_stream(settings, max_retries=0, timeout=settings.stream_timeout)
    close_stream = getattr(raw_stream, "close", None)
    if callable(close_stream):
        closers.append(close_stream)
    stream = rate_limited(raw_stream, settings)
    ingest = build_ingest(settings, archive=archive, catalog=catalog, queue=queue, secret=secret)
    closers.append(ingest.locker.close)
    delivery = DeliveryService(
        catalog=catalog,
        archive=archive,
        stream=stream,
        locker=ingest.locker,
        source_url_seconds=settings.stream_source_url_ttl,
        require_signed_urls=settings.stream_require_signed_urls,
    )
    container = Container(
        settings=settings,
        catalog=catalog,
        archive=archive,
        queue=queue,
        videos=videos,
        delivery=delivery,
        admin_token=admin_token,
        ingest=ingest.service,
        upload_tokens=ingest.tokens,
        upload_locker=ingest.locker,
        tus_capabilities=ingest.capabilities,
        tus_metrics=ingest.metrics,
        stream=stream,
        runs=runs,
        webhook_replay=build_replay_cache(settings, closers),
        migrations=MigrationService(
            catalog=catalog,
            journal=runs,
            runner=MigrationRunner(catalog=catalog, journal=runs, delivery=delivery, stream=stream),
        ),
        admin_token_generated=generated,
        engine=engine,
        beacons=build_beacons(catalog),
        playback=build_playback(
            settings, catalog=catalog, archive=archive, queue=queue, stream=stream
        ),
        _closers=[*closers, queue.close],
    )
    register_jobs(container)
    return container
