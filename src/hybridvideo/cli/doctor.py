"""``hybridvideo doctor``: what is configured, what answers, and what to fix.

Each part is built and pinged on its own, so one broken part does not hide the others, and
nothing is created or migrated: the doctor only looks (the local archive's write check
writes and removes one probe file).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hybridvideo.config import Settings, load_settings
from hybridvideo.container import (
    build_archive,
    build_catalog,
    build_queue,
    build_stream,
    secret_from,
)
from hybridvideo.errors import ConfigurationError, HybridVideoError

Check = tuple[str, bool, str]


def _try(name: str, func: Callable[[], str]) -> Check:
    try:
        return (name, True, func())
    except HybridVideoError as exc:
        return (name, False, exc.message)
    except Exception as exc:  # a doctor must report, not crash
        return (name, False, f"{type(exc).__name__}: {exc}")


def _catalog(settings: Settings) -> str:
    path = settings.sqlite_path
    if path is not None and not path.exists():
        raise ConfigurationError(
            f"no catalog at {path} yet: run `hybridvideo db upgrade` (serve does it on start)"
        )
    catalog, close = build_catalog(settings)
    try:
        catalog.ping()
    finally:
        close()
    kind = "SQLite" if settings.database_is_sqlite else "PostgreSQL"
    return f"{kind}, migrated"


def _archive(settings: Settings) -> str:
    root = settings.resolved_archive_dir
    default_local = settings.resolved_archive_backend == "local" and settings.archive_dir is None
    if default_local and not root.exists():
        return f"local folder {root.resolve()}, created on first start"
    # The doctor signs nothing: a stand-in key avoids creating the data dir's secret.
    secret = secret_from(settings, create=False) or "doctor-does-not-sign-urls"
    archive = build_archive(settings, secret.encode(), create=False)
    archive.ping()
    if settings.resolved_archive_backend == "s3":
        return f"S3 bucket {settings.s3_bucket} at {settings.resolved_s3_endpoint_url}"
    return f"local folder {settings.resolved_archive_dir.resolve()}"


def _queue(settings: Settings) -> str:
    if (
        settings.resolved_queue_backend == "sqlite"
        and not (settings.data_dir / "queue.db").exists()
    ):
        return "sqlite backend, created on first start"
    queue = build_queue(settings)
    queue.ping()
    return f"{queue.backend} backend"


def _ffmpeg() -> str:
    import av
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    first = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=20)
    version = first.stdout.splitlines()[0] if first.stdout else "unknown"
    return f"{version}; PyAV {av.__version__}"


def _stream(settings: Settings) -> str:
    """Where delivery goes, and (for a remote service) that the API accepts our token."""
    if bool(settings.cloudflare_account_id) != bool(settings.cloudflare_stream_token):
        raise ValueError("set both CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_STREAM_TOKEN, or neither")
    url = settings.resolved_stream_api_url
    if settings.runs_engine and settings.stream_api_url is None:
        return f"built-in engine, served by `hybridvideo serve` at {url}"
    usage = build_stream(settings, max_retries=0, timeout=10, create=False).storage_usage()
    return f"{url}: {usage.video_count} video(s) stored"


def run_doctor(console: Console, data_dir: Path | None) -> int:
    try:
        settings = load_settings(data_dir=data_dir)
    except HybridVideoError as exc:
        console.print(f"[red]configuration[/red]: {exc.message}", highlight=False)
        return 2
    checks = [
        ("configuration", True, "environment variables valid"),
        _try("catalog", lambda: _catalog(settings)),
        _try("archive", lambda: _archive(settings)),
        _try("queue", lambda: _queue(settings)),
        _try("ffmpeg", _ffmpeg),
        _try("stream", lambda: _stream(settings)),
    ]
    table = Table(title="hybridvideo doctor")
    table.add_column("part")
    table.add_column("state")
    table.add_column("details", overflow="fold")
    for name, ok, text in checks:
        table.add_row(name, "[green]ok[/green]" if ok else "[red]FAIL[/red]", text)
    console.print(table)
    return 0 if all(ok for _, ok, _ in checks) else 1
