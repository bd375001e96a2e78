"""``hybridvideo``: serve, worker, doctor, db, videos.

Every command loads settings the same way (environment, then flags), builds the same
container, and turns domain errors into one red line and a non-zero exit code; tracebacks
are for bugs only.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from hybridvideo.cli import migrate as migrate_commands
from hybridvideo.cli import playback as playback_commands
from hybridvideo.cli import reconcile as reconcile_commands
from hybridvideo.cli.common import DataDir, _container, _settings, err, friendly_errors, out
from hybridvideo.container import Container
from hybridvideo.domain.video import (
    DEFAULT_COLLECTION,
    MAX_OFFSET,
    StreamStatus,
    VideoFilter,
    VideoState,
)
from hybridvideo.errors import HybridVideoError
from hybridvideo.jobs import migration_run

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
db_app = typer.Typer(no_args_is_help=True, help="Catalog database schema.")
videos_app = typer.Typer(no_args_is_help=True, help="Videos in the catalog.")
app.add_typer(db_app, name="db")
app.add_typer(videos_app, name="videos")
keys_app = typer.Typer(no_args_is_help=True, help="Playback signing keys (Stream /keys).")
app.add_typer(keys_app, name="keys")
stream_app = typer.Typer(no_args_is_help=True, help="The Stream service (Cloudflare or an engine).")
stream_webhook_app = typer.Typer(no_args_is_help=True, help="Where Stream reports finished videos.")
stream_app.add_typer(stream_webhook_app, name="webhook")
app.add_typer(stream_app, name="stream")
archive_app = typer.Typer(no_args_is_help=True, help="The archive bucket.")
app.add_typer(archive_app, name="archive")


@app.command()
@friendly_errors
def serve(
    host: Annotated[str | None, typer.Option(help="[env: HYBRIDVIDEO_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="[env: HYBRIDVIDEO_PORT]")] = None,
    data_dir: DataDir = None,
) -> None:
    """Run the HTTP server (and, on embedded defaults, the worker) in this process."""
    import uvicorn

    from hybridvideo.api.app import create_app

    settings = _settings(data_dir, host=host, port=port)
    container = _container(settings, serving=True)
    if container.admin_token_generated:
        err.print(
            "Generated an admin token (stored in "
            f"{settings.data_dir / 'admin-token'}; shown only this once):\n"
            f"  {container.admin_token}",
            highlight=False,
        )
    _subscribe_embedded_engine(container)
    try:
        uvicorn.run(
            create_app(container),
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            proxy_headers=True,
        )
    finally:
        container.close()


@app.command()
@friendly_errors
def engine(
    host: Annotated[str | None, typer.Option(help="[env: HYBRIDVIDEO_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="[env: HYBRIDVIDEO_PORT]")] = None,
    data_dir: DataDir = None,
) -> None:
    """Run only the built-in Stream-compatible engine (API, delivery, its jobs)."""
    import uvicorn

    from hybridvideo.api.app import create_app

    settings = _settings(data_dir, host=host, port=port, engine=True)
    container = _container(settings, serving=True)
    account, _ = (container.engine.account_id, None) if container.engine else ("?", None)
    err.print(
        f"engine: account {account}, API {settings.resolved_public_url}/client/v4, "
        f"delivery {settings.resolved_engine_delivery_url}",
        highlight=False,
    )
    try:
        uvicorn.run(
            create_app(container, engine_only=True),
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
        )
    finally:
        container.close()


@app.command()
@friendly_errors
def worker(
    concurrency: Annotated[
        int | None, typer.Option(help="Threads [env: HYBRIDVIDEO_WORKER_CONCURRENCY]")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Run background jobs until SIGINT/SIGTERM."""
    settings = _settings(data_dir, worker_concurrency=concurrency)
    container = _container(settings)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if stop.is_set():  # a second Ctrl-C / SIGTERM: the operator means it
            err.print("worker: forced stop; running jobs are abandoned")
            os._exit(128 + signum)
        err.print("worker: stopping after the running jobs (signal again to force)")
        # A migration run can last hours: it stops after its videos in flight, is recorded
        # as interrupted and queued again for the next worker.
        migration_run.stop_runs(container)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    err.print(f"worker: {container.queue.backend} queue, {settings.worker_concurrency} threads")
    try:
        container.queue.run_worker(workers=settings.worker_concurrency, stop=stop)
    finally:
        container.close()


@app.command()
def doctor(data_dir: DataDir = None) -> None:
    """Check the configuration and that every configured part answers."""
    from hybridvideo.cli.doctor import run_doctor

    raise typer.Exit(run_doctor(out, data_dir))


@app.command()
@friendly_errors
def testclip(
    out: Annotated[Path, typer.Argument(help="Where to write the MP4.")],
    seconds: Annotated[float, typer.Option(help="Length.")] = 3.0,
    size: Annotated[str, typer.Option(help="WIDTHxHEIGHT")] = "320x180",
) -> None:
    """Write a small test clip (FFmpeg's testsrc2 and a tone) to try things with."""
    from hybridvideo.media.testclip import make_test_clip

    make_test_clip(out, seconds=seconds, size=size)
    err.print(f"wrote {out} ({out.stat().st_size} bytes)", highlight=False)


@db_app.command("upgrade")
@friendly_errors
def db_upgrade(data_dir: DataDir = None) -> None:
    """Apply catalog migrations up to the newest schema."""
    from hybridvideo.container import migrate_catalog

    revision = migrate_catalog(_settings(data_dir))
    out.print(f"catalog at revision {revision}")


@videos_app.command("add")
@friendly_errors
def videos_add(
    file: Annotated[Path, typer.Argument(help="A video file to archive and catalog.")],
    title: Annotated[str | None, typer.Option(help="Defaults to the file name.")] = None,
    collection: Annotated[str, typer.Option(help="e.g. work, inbound, outbound")] = (
        DEFAULT_COLLECTION
    ),
    owner: Annotated[str | None, typer.Option(help="Owner id in the app.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Probe FILE, store it in the archive, and record it in the catalog."""
    container = _container(_settings(data_dir))
    try:
        with err.status(f"adding {file.name} ..."):
            result = container.videos.add_file(
                file, title=title, collection=collection, owner_id=owner
            )
    finally:
        container.close()
    verb = "added" if result.created else "already in the catalog as"
    out.print(f"{verb} {result.video.id}", highlight=False)
    _print_video(result.video)


@videos_app.command("list")
@friendly_errors
def videos_list(
    collection: Annotated[str | None, typer.Option()] = None,
    status: Annotated[StreamStatus | None, typer.Option()] = None,
    query: Annotated[str | None, typer.Option("--query", "-q")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
    offset: Annotated[int, typer.Option(min=0, max=MAX_OFFSET)] = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    data_dir: DataDir = None,
) -> None:
    """List videos, newest first."""
    container = _container(_settings(data_dir))
    try:
        page = container.catalog.list_videos(
            VideoFilter(
                collection=collection, status=status, query=query, limit=limit, offset=offset
            )
        )
    finally:
        container.close()
    if as_json:
        out.print_json(
            json.dumps({"total": page.total, "items": [_jsonable(v) for v in page.items]})
        )
        return
    table = Table(title=f"{page.total} video(s)")
    for col in ("id", "title", "collection", "status", "duration", "size", "sha256"):
        table.add_column(col, no_wrap=col in ("id", "sha256"), overflow="fold")
    for v in page.items:
        table.add_row(
            v.id,
            v.title,
            v.collection,
            v.spec.stream_status.value,
            f"{v.spec.duration:.2f}s" if v.spec.duration is not None else "-",
            str(v.spec.size or "-"),
            v.spec.sha256 or "-",
        )
    out.print(table)


@videos_app.command("show")
@friendly_errors
def videos_show(
    video_id: Annotated[str, typer.Argument(metavar="ID")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    data_dir: DataDir = None,
) -> None:
    """Show one video and its technical spec."""
    container = _container(_settings(data_dir))
    try:
        video = container.catalog.get_video(video_id)
    finally:
        container.close()
    if as_json:
        out.print_json(json.dumps(_jsonable(video)))
    else:
        _print_video(video)


@videos_app.command("verify")
@friendly_errors
def videos_verify(
    video_id: Annotated[str, typer.Argument(metavar="ID")],
    now: Annotated[bool, typer.Option("--now", help="Verify here instead of queueing.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Check the archived master still matches its sha256 (queued for a worker by default)."""
    from hybridvideo.jobs import verify_master

    container = _container(_settings(data_dir))
    try:
        container.catalog.get_video(video_id)
        if not now:
            job_id = container.queue.enqueue(verify_master.NAME, {"video_id": video_id})
            out.print(f"queued {verify_master.NAME} job {job_id}", highlight=False)
            return
        ok = verify_master.verify(container, video_id)
    finally:
        container.close()
    if not ok:
        err.print("[red]master does not match its recorded sha256[/red]")
        raise typer.Exit(1)
    out.print("master matches its sha256")


@videos_app.command("deliver")
@friendly_errors
def videos_deliver(
    video_id: Annotated[str, typer.Argument(metavar="ID")],
    now: Annotated[bool, typer.Option("--now", help="Send it from here instead of queueing.")] = (
        False
    ),
    data_dir: DataDir = None,
) -> None:
    """Send a video's master to Stream (queued for a worker by default); safe to repeat."""
    from hybridvideo.delivery.service import is_delivered
    from hybridvideo.jobs import deliver_video

    container = _container(_settings(data_dir))
    try:
        video = container.catalog.get_video(video_id)
        if not now:
            if is_delivered(video):
                out.print(f"already {video.spec.stream_status.value}", highlight=False)
                return
            job_id = deliver_video.enqueue(container.queue, video_id)
            out.print(f"queued {deliver_video.NAME} job {job_id}", highlight=False)
            return
        video = container.delivery.deliver(video_id)
    finally:
        container.close()
    _print_video(video)
    if video.spec.stream_status is StreamStatus.ERROR:
        err.print(f"[red]delivery failed:[/red] {video.spec.stream_error}", highlight=False)
        raise typer.Exit(1)


@stream_webhook_app.command("set")
@friendly_errors
def stream_webhook_set(
    url: Annotated[str, typer.Argument(help="Public URL of this server's /webhooks/stream.")],
    print_only: Annotated[
        bool, typer.Option("--print", help="Print the secret only; store nothing here.")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Subscribe URL to the Stream account's webhook and keep the signing secret.

    Stream has one webhook per account and rotates its secret when the URL changes. The
    secret is stored in DATA_DIR/stream-webhook-secret (the previous one is kept for
    deliveries still in flight) and printed for HYBRIDVIDEO_STREAM_WEBHOOK_SECRET, which
    every node of a multi-node deployment needs.
    """
    from hybridvideo.container import build_stream
    from hybridvideo.delivery.webhook_secrets import WebhookSecretStore

    settings = _settings(data_dir)
    hook = build_stream(settings).set_webhook(url)
    if not print_only:
        store = WebhookSecretStore.for_settings(settings)
        store.remember(hook.secret)
        err.print(f"stored the secret in {store.path}", highlight=False)
        if settings.stream_webhook_secret is not None:
            err.print(
                "[yellow]note:[/yellow] HYBRIDVIDEO_STREAM_WEBHOOK_SECRET is set; "
                "update it to the value below on every node",
                highlight=False,
            )
    err.print(f"webhook set to {hook.notification_url}", highlight=False)
    out.print(f"HYBRIDVIDEO_STREAM_WEBHOOK_SECRET={hook.secret}", highlight=False, soft_wrap=True)


def _subscribe_embedded_engine(container: Container) -> None:
    """`serve` with its own engine points the engine's webhook at itself (see delivery)."""
    from hybridvideo.delivery.webhook_secrets import subscribe_embedded_engine

    try:
        url = subscribe_embedded_engine(container)
    except HybridVideoError as exc:  # serve anyway: polling still finishes deliveries
        err.print(
            f"[yellow]warning:[/yellow] could not subscribe to the engine's webhook: "
            f"{exc.message} (deliveries finish by polling)",
            highlight=False,
        )
        return
    if url is not None:
        err.print(f"engine webhook: {url}", highlight=False)


@keys_app.command("create")
@friendly_errors
def keys_create(
    print_only: Annotated[
        bool, typer.Option("--print", help="Print the settings to store; keep nothing here.")
    ] = False,
    force: Annotated[bool, typer.Option(help="Replace a key already stored here.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Create a signing key through the Stream API and store it (or print its settings).

    The private key is shown by the API exactly once: it is written to
    DATA_DIR/signing-key.json (mode 0600), or printed with --print for a secret store.
    """
    from hybridvideo.container import build_stream, ensure_data_dir

    settings = _settings(data_dir)
    target = settings.data_dir / "signing-key.json"
    if not print_only and target.exists() and not force:
        err.print(f"[red]error:[/red] {target} already holds a key (use --force to replace it)")
        raise typer.Exit(1)
    stream = build_stream(settings)
    key = stream.create_signing_key()
    if print_only:
        out.print(f"HYBRIDVIDEO_STREAM_SIGNING_KEY_ID={key.id}", highlight=False, soft_wrap=True)
        out.print(f"HYBRIDVIDEO_STREAM_SIGNING_KEY={key.pem}", highlight=False, soft_wrap=True)
        return
    ensure_data_dir(settings)
    document = {"id": key.id, "pem": key.pem, "jwk": key.jwk}
    tmp = target.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(document, fh)
    os.replace(tmp, target)
    out.print(f"created signing key {key.id}; stored in {target}", highlight=False)


@keys_app.command("revoke")
@friendly_errors
def keys_revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID")], data_dir: DataDir = None
) -> None:
    """Revoke a signing key: every token it signed stops working."""
    from hybridvideo.container import build_stream

    build_stream(_settings(data_dir)).revoke_signing_key(key_id)
    out.print(f"revoked {key_id}", highlight=False)


@archive_app.command("import")
@friendly_errors
def archive_import(
    prefix: Annotated[str, typer.Option(help="Only keys starting with this ('' = all).")],
    collection: Annotated[str, typer.Option(help="Collection of the new videos.")] = (
        DEFAULT_COLLECTION
    ),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report only; write nothing.")] = (
        False
    ),
    limit: Annotated[
        int | None, typer.Option(min=1, help="Stop after registering this many.")
    ] = None,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Write every outcome and the totals here.")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Catalog the masters already in the archive under PREFIX, at their existing keys.

    Thumbnails beside a master (same name, .jpg/.jpeg/.png/.webp) or at
    thumbnails/<same name>.jpg are used; otherwise one is made. Safe to run again.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from hybridvideo.media.probe import probe_source
    from hybridvideo.media.reader import ArchiveReader
    from hybridvideo.media.thumbnail import make_thumbnail
    from hybridvideo.videos.importer import ArchiveImporter, ImportStatus, ImportSummary

    container = _container(_settings(data_dir))
    summary = ImportSummary()
    outcomes = []
    try:
        importer = ArchiveImporter(
            container.catalog, container.archive, probe_source, make_thumbnail, ArchiveReader
        )
        objects = importer.objects(prefix)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, console=err, transient=True) as progress:
            task = progress.add_task("importing", total=len(objects))
            for outcome in importer.scan(
                prefix,
                dry_run=dry_run,
                collection=collection,
                limit=limit,
                objects=objects,
                summary=summary,
            ):
                outcomes.append(outcome)
                progress.advance(task)
    finally:
        container.close()
    for o in outcomes:
        if o.status in (ImportStatus.NOT_A_VIDEO, ImportStatus.DUPLICATE, ImportStatus.ERROR):
            err.print(f"{o.status.value}: {o.key}: {o.reason}", highlight=False, markup=False)
    title = "archive import (dry run: nothing written)" if dry_run else "archive import"
    table = Table(title=title)
    table.add_column("outcome")
    table.add_column("objects", justify="right")
    for status in ImportStatus:
        table.add_row(status.value, str(summary.counts[status]))
    out.print(table)
    if json_file is not None:
        document = {"summary": summary.as_dict(), "outcomes": [o.as_dict() for o in outcomes]}
        json_file.write_text(json.dumps(document, indent=2) + "\n")
    if summary.counts[ImportStatus.ERROR]:
        raise typer.Exit(1)


def _jsonable(video: VideoState) -> dict[str, Any]:
    from hybridvideo.api.schemas import VideoOut

    return VideoOut.of(video).model_dump(mode="json", by_alias=True)


def _print_video(video: VideoState) -> None:
    s = video.spec
    table = Table(show_header=False, box=None)
    rows = {
        "id": video.id,
        "title": video.title,
        "collection": video.collection,
        "status": s.stream_status.value,
        "archive": f"{s.archive_bucket}/{s.archive_key}",
        "format": s.format or "-",
        "duration": f"{s.duration:.3f} s" if s.duration is not None else "-",
        "size": f"{s.size} bytes" if s.size is not None else "-",
        "picture": f"{s.width}x{s.height}" if s.width else "-",
        "sha256": s.sha256 or "-",
        "stream uid": s.stream_uid or "-",
    }
    for k, v in rows.items():
        table.add_row(k, str(v))
    out.print(table)


migrate_commands.register(app)
reconcile_commands.register(app)
playback_commands.register(app)


def main() -> None:
    app()
