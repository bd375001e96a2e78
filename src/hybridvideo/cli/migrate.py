"""``hybridvideo migrate``: Phase 1 from the command line — plan, run, watch, resume.

Exit codes (for scripts and cron): 0 when every video of the run was sent or already in
Stream; 1 when some failed or were deferred, or the run stopped early (the table and
``--json`` say which); 2 for a configuration problem; 130 after Ctrl-C (the run is
recorded as interrupted: ``--resume RUN_ID`` continues it).
"""

from __future__ import annotations

import json
import signal
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from hybridvideo.cli.common import DataDir, _container, _settings, err, friendly_errors, out
from hybridvideo.domain.video import StreamStatus
from hybridvideo.errors import InvalidInput
from hybridvideo.migrate.journal import MigrationRun, Outcome, RunItem, RunState
from hybridvideo.migrate.plan import Estimate, MigrationOptions, build_scan
from hybridvideo.migrate.runner import MigrationReport

migrate_app = typer.Typer(
    invoke_without_command=True,
    no_args_is_help=False,
    help="Copy archived masters into Stream (Phase 1): plan, run, resume, status.",
)

#: Failures printed after a run; the JSON report has all of them.
SHOWN_FAILURES = 20


def register(app: typer.Typer) -> None:
    app.add_typer(migrate_app, name="migrate")


def _moment(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"--{name}: {value!r} is not an ISO 8601 date or time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _statuses(values: list[str] | None) -> frozenset[StreamStatus] | None:
    if not values:
        return None
    chosen = set()
    for value in values:
        try:
            chosen.add(StreamStatus(value.upper()))
        except ValueError:
            names = ", ".join(s.value for s in StreamStatus)
            raise InvalidInput(f"--status: {value!r} is not one of {names}") from None
    return frozenset(chosen)


@migrate_app.callback()
@friendly_errors
def migrate(
    ctx: typer.Context,
    collection: Annotated[str | None, typer.Option(help="Only this collection.")] = None,
    prefix: Annotated[
        str | None, typer.Option("--prefix", help="Only masters whose archive key starts so.")
    ] = None,
    created_after: Annotated[
        str | None,
        typer.Option(help="Only videos cataloged after this ISO time (UTC if no zone)."),
    ] = None,
    created_before: Annotated[
        str | None, typer.Option(help="Only videos cataloged before this ISO time.")
    ] = None,
    status: Annotated[
        list[str] | None,
        typer.Option(
            help="Delivery status to send (repeatable): NOT_DELIVERED (default), ERROR, EVICTED."
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many videos.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Videos in flight.")] = 8,
    attempts: Annotated[
        int, typer.Option(min=1, max=100, help="Tries per video on rate limits and outages.")
    ] = 6,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Show what would be copied and its cost; send nothing."),
    ] = False,
    resume: Annotated[
        str | None, typer.Option(help="Continue this interrupted run with its own filters.")
    ] = None,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Write the full report here.")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Send every catalog video matching the filters to Stream, once.

    Safe to stop and run again: videos already sent are skipped, copies whose answer was
    lost are found again by their meta, and nothing is copied twice.
    """
    if ctx.invoked_subcommand is not None:
        return
    if resume is not None and (
        collection or prefix or created_after or created_before or status or limit
    ):
        raise InvalidInput("--resume runs with the run's own filters: give no other filters")
    options = MigrationOptions(concurrency=concurrency, attempts=attempts, limit=limit)
    scan = build_scan(
        collection=collection,
        key_prefix=prefix,
        created_after=_moment(created_after, "created-after"),
        created_before=_moment(created_before, "created-before"),
        statuses=_statuses(status),
    )
    container = _container(_settings(data_dir))
    try:
        service = container.migrations
        if dry_run:
            if resume is not None:
                raise InvalidInput("--dry-run and --resume do not go together")
            plan = service.plan(scan, options)
            _print_plan(plan)
            if json_file is not None:
                json_file.write_text(json.dumps(plan.to_json(), indent=2) + "\n")
            return
        run = service.resume(resume) if resume is not None else service.start(scan, options)
        report = _run_with_progress(container.migrations.execute, run)
    finally:
        container.close()
    _print_report(report)
    if json_file is not None:
        json_file.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    if report.run.state == RunState.INTERRUPTED:
        err.print(f"interrupted: continue with `hybridvideo migrate --resume {report.run.id}`")
        raise typer.Exit(130)
    if report.run.state != RunState.FINISHED or any(
        i.outcome in (Outcome.FAILED, Outcome.DEFERRED) for i in report.items
    ):
        raise typer.Exit(1)


def _run_with_progress(
    execute: Callable[..., MigrationReport], run: MigrationRun
) -> MigrationReport:
    stop = threading.Event()
    previous: dict[int, Any] = {}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():  # a second Ctrl-C: stop waiting for the videos in flight
            signal.signal(signum, previous.get(signum, signal.SIG_DFL))
            raise KeyboardInterrupt
        err.print("stopping: finishing the videos in flight (Ctrl-C again to quit now)")
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, on_signal)
    try:
        with _Bar() as bar:
            return execute(run, sink=bar, stop=stop)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


class _Bar:
    """The rich progress bar: rate, ETA and counts by outcome (a :class:`ProgressSink`)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[counts]}"),
            console=err,
            transient=False,
        )
        self.task: TaskID | None = None

    def __enter__(self) -> _Bar:
        self.progress.__enter__()
        self.task = self.progress.add_task("listing Stream", total=None, rate="", counts="")
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def listing(self, videos: int) -> None:
        assert self.task is not None
        self.progress.update(self.task, counts=f"{videos} Stream videos listed")

    def started(self, total: int) -> None:
        assert self.task is not None
        self.progress.reset(self.task, total=total, description="migrating", rate="", counts="")

    def advanced(self, item: RunItem) -> None:
        assert self.task is not None
        self.counts[item.outcome.value] += 1
        task = self.progress.tasks[self.task]
        rate = f"{task.speed:.1f}/s" if task.speed else ""
        shown = " ".join(f"{o.value} {self.counts[o.value]}" for o in Outcome if self.counts[o])
        self.progress.update(self.task, advance=1, rate=rate, counts=shown)


def _print_plan(plan: Estimate) -> None:
    table = Table(title="migrate (dry run: nothing sent)", show_header=False)
    s = plan.summary
    table.add_row("videos", str(s.count))
    table.add_row("minutes", f"{plan.minutes:,.1f}")
    if s.unknown_duration:
        table.add_row("without a known duration", str(s.unknown_duration))
    table.add_row("masters", f"{s.size_bytes / 1e9:,.2f} GB")
    table.add_row(
        "Stream storage", f"${plan.storage_usd_per_month:,.2f} / month ($5 per 1,000 min)"
    )
    table.add_row(
        "one full view each", f"${plan.delivery_usd_per_full_view:,.2f} ($1 per 1,000 min)"
    )
    out.print(table)
    if plan.sample:
        sample = Table(title=f"first {len(plan.sample)} of {s.count}")
        sample.add_column("id")
        sample.add_column("archive key")
        for video in plan.sample:
            sample.add_row(video.id, video.spec.archive_key)
        out.print(sample)


def _print_report(report: MigrationReport) -> None:
    run = report.run
    table = Table(title=f"migration run {run.id}: {run.state.value}")
    table.add_column("outcome")
    table.add_column("this pass", justify="right")
    table.add_column("whole run", justify="right")
    for outcome in Outcome:
        table.add_row(
            outcome.value,
            str(len(report.by_outcome(outcome))),
            str(run.counts.get(outcome.value, 0)),
        )
    out.print(table)
    per_video = report.requests / len(report.items) if report.items else 0.0
    out.print(
        f"{len(report.items)} videos in {report.elapsed:.1f} s, {report.requests} Stream API "
        f"requests ({per_video:.2f} per video); {report.stream_videos} Stream videos listed",
        highlight=False,
    )
    if run.error:
        err.print(f"[red]stopped:[/red] {run.error}", highlight=False)
    problems = report.by_outcome(Outcome.FAILED) + report.by_outcome(Outcome.DEFERRED)
    for item in problems[:SHOWN_FAILURES]:
        err.print(
            f"{item.outcome.value}: {item.video_id}: {item.error_code}: {item.error_message}",
            highlight=False,
            markup=False,
        )
    if len(problems) > SHOWN_FAILURES:
        err.print(f"... and {len(problems) - SHOWN_FAILURES} more (see --json)")


@migrate_app.command("status")
@friendly_errors
def status(
    run_id: Annotated[str | None, typer.Argument(help="One run in detail.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200, help="Runs listed.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    data_dir: DataDir = None,
) -> None:
    """The migration runs: state, counts by outcome, errors (and one run's failures)."""
    container = _container(_settings(data_dir))
    try:
        journal = container.runs
        runs = [journal.get_run(run_id)] if run_id else journal.list_runs(limit=limit)
        failures = journal.items(run_id, outcome=Outcome.FAILED, limit=1000) if run_id else []
        deferred = journal.items(run_id, outcome=Outcome.DEFERRED, limit=1000) if run_id else []
    finally:
        container.close()
    now = datetime.now(UTC)
    if as_json:
        document: dict[str, Any] = {"runs": [_run_json(r, now) for r in runs]}
        if run_id:
            document["failed"] = [_item_json(i) for i in failures]
            document["deferred"] = [_item_json(i) for i in deferred]
        out.print_json(json.dumps(document))
        return
    if not runs:
        out.print("no migration runs yet (start one with `hybridvideo migrate --dry-run`)")
        return
    table = Table(title="migration runs")
    for name in ("run", "state", "started", "finished", "total", *[o.value for o in Outcome]):
        table.add_column(name, justify="right" if name not in ("run", "state") else "left")
    for run in runs:
        table.add_row(
            run.id,
            run.effective_state(now).value,
            _when(run.started_at),
            _when(run.finished_at),
            str(run.total),
            *[str(run.counts.get(o.value, 0)) for o in Outcome],
        )
    out.print(table)
    for run in runs:
        if run.error:
            err.print(f"{run.id}: {run.error}", highlight=False, markup=False)
    for item in (failures + deferred)[: SHOWN_FAILURES * 5]:
        err.print(
            f"{item.outcome.value}: {item.video_id}: {item.error_code}: {item.error_message}",
            highlight=False,
            markup=False,
        )


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def _run_json(run: MigrationRun, now: datetime) -> dict[str, Any]:
    return {
        "id": run.id,
        "state": run.effective_state(now).value,
        "recorded_state": run.state.value,
        "created_at": run.created_at.isoformat(),
        "started_at": None if run.started_at is None else run.started_at.isoformat(),
        "finished_at": None if run.finished_at is None else run.finished_at.isoformat(),
        "heartbeat_at": None if run.heartbeat_at is None else run.heartbeat_at.isoformat(),
        "total": run.total,
        "counts": dict(run.counts),
        "filters": dict(run.filters),
        "options": dict(run.options),
        "error": run.error,
        "parent_id": run.parent_id,
    }


def _item_json(item: RunItem) -> dict[str, Any]:
    return {
        "video_id": item.video_id,
        "outcome": item.outcome.value,
        "code": item.error_code,
        "message": item.error_message,
        "stream_uid": item.stream_uid,
        "requests": item.requests,
    }
