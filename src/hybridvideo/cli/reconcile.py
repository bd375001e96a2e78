"""``hybridvideo reconcile``: compare the catalog with the Stream account, repair on request.

The work is :class:`~hybridvideo.delivery.reconcile.Reconciler`'s; this module is options,
progress, a summary and the exit code. Shared CLI parts come from :mod:`hybridvideo.cli.common`
(not ``main``, which imports this module to register the command).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress as Bar
from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from hybridvideo.cli.common import DataDir, _container, _settings, err, friendly_errors, out
from hybridvideo.delivery.reconcile import (
    Action,
    Finding,
    Progress,
    ReconcileOptions,
    Reconciler,
    ReconcileReport,
)

#: Findings printed per list; the JSON report has them all.
SHOWN = 50

_PHASES = {
    "catalog": "reading the catalog",
    "stream": "listing Stream",
    "confirm": "checking copies the listing lacked",
    "orphans": "classifying orphans",
}


@friendly_errors
def reconcile(
    stuck_after: Annotated[
        int,
        typer.Option(
            "--stuck-after",
            min=0,
            metavar="MINUTES",
            help="PROCESSING for longer than this counts as stuck.",
        ),
    ] = 30,
    fix_missing: Annotated[
        bool,
        typer.Option(
            "--fix-missing",
            help="Record videos whose Stream copy is gone as ERROR (migrate re-sends them).",
        ),
    ] = False,
    delete_orphans: Annotated[
        bool,
        typer.Option(
            "--delete-orphans",
            help="Delete our orphaned copies (duplicates, copies of videos no longer in the "
            "catalog) older than the grace period. Adoptable copies are kept.",
        ),
    ] = False,
    include_foreign: Annotated[
        bool,
        typer.Option(
            "--include-foreign",
            help="DANGEROUS: with --delete-orphans, also delete Stream videos without a "
            "hybridvideo video id (another system's videos on the same account).",
        ),
    ] = False,
    grace_minutes: Annotated[
        int,
        typer.Option("--grace-minutes", min=0, help="Orphans younger than this are never deleted."),
    ] = 60,
    missing_limit: Annotated[
        int,
        typer.Option(
            "--missing-limit",
            min=0,
            help="Above this many missing copies nothing is recorded (a wrong account "
            "makes every copy look missing).",
        ),
    ] = 500,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Write the full report here.")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Find videos stuck in processing, catalog copies gone from Stream, and Stream videos
    no catalog row points to; settle stuck ones from Stream's state, and fix or delete the
    rest only when asked.

    One listing of the Stream account (1,000 videos a request) and one catalog pass; a GET
    only for copies the listing lacks. The archive is never touched.

    Exit codes: 0 consistent; 1 problems left unfixed (missing copies, orphans of ours,
    a run stopped early, an unreachable service) so cron or CI can alert; 2 bad options
    or configuration.
    """
    if include_foreign and not delete_orphans:
        raise typer.BadParameter(
            "--include-foreign only applies with --delete-orphans", param_hint="--include-foreign"
        )
    options = ReconcileOptions(
        stuck_after=timedelta(minutes=stuck_after),
        fix_missing=fix_missing,
        delete_orphans=delete_orphans,
        include_foreign=include_foreign,
        grace=timedelta(minutes=grace_minutes),
        missing_limit=missing_limit,
    )
    container = _container(_settings(data_dir))
    try:
        columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
        with Bar(*columns, console=err, transient=True) as bar:
            task = bar.add_task("starting")

            def show(p: Progress) -> None:
                bar.update(task, description=_describe(p))

            reconciler = Reconciler(container.catalog, container.stream, container.delivery)
            report = reconciler.run(options, progress=show)
    finally:
        container.close()
    _print_report(report)
    if json_file is not None:
        json_file.write_text(report.to_json())
    if not report.consistent:
        raise typer.Exit(1)


def _describe(p: Progress) -> str:
    label = _PHASES.get(p.phase, p.phase)
    if p.phase == "stream":
        return f"{label}: page {p.pages}, {p.items:,} videos seen"
    if p.total is not None:
        return f"{label}: {p.items:,}/{p.total:,}"
    return f"{label}: {p.items:,}"


def _print_report(report: ReconcileReport) -> None:
    summary = Table(title="reconcile", show_header=False)
    summary.add_column("what")
    summary.add_column("count", justify="right")
    kinds = report.orphan_counts()
    rows = [
        ("Stream videos listed", report.stream_videos),
        ("catalog videos with a copy", report.catalog_copies),
        ("stuck", len(report.stuck)),
        ("  settled from Stream's state", report.changed(Action.APPLIED)),
        ("missing from Stream", len(report.missing)),
        ("  recorded as ERROR", report.changed(Action.RECORDED_ERROR)),
        ("orphans", len(report.orphans)),
        *((f"  {kind}", count) for kind, count in kinds.items()),
        ("  deleted", report.changed(Action.DELETED)),
        ("Stream API requests", report.requests.total),
        ("problems left", report.problems),
    ]
    for what, count in rows:
        summary.add_row(what, str(count))
    out.print(summary)
    findings = [f for f in report.findings if f.problem or f.action is not Action.NONE]
    if findings:
        out.print(_findings_table(findings[:SHOWN]))
        if len(findings) > SHOWN:
            out.print(f"... and {len(findings) - SHOWN} more (see --json)", highlight=False)
    for note in report.notes:
        err.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    if report.stopped is not None:
        err.print(f"[red]stopped early:[/red] {report.stopped}", highlight=False)
    if report.consistent:
        out.print("consistent", highlight=False)
        return
    hints = []
    if any(f.kind == "missing" and f.problem for f in report.findings):
        hints.append("--fix-missing records missing copies as ERROR")
    if any(f.kind in ("duplicate", "video_gone") and f.problem for f in report.orphans):
        hints.append("--delete-orphans deletes our leftover copies")
    if any(f.kind == "adoptable" and f.problem for f in report.orphans):
        hints.append("`hybridvideo migrate` adopts the adoptable copies")
    err.print(
        f"[red]{report.problems} problem(s) left[/red]"
        + (f" ({'; '.join(hints)})" if hints else ""),
        highlight=False,
    )


def _findings_table(findings: list[Finding]) -> Table:
    table = Table()
    for column in ("kind", "uid", "video", "state", "created", "action", "reason"):
        table.add_column(column, no_wrap=column in ("uid", "video"), overflow="fold")
    for f in findings:
        table.add_row(
            f.kind,
            f.uid,
            f.video_id or "-",
            f.state,
            f.created.strftime("%Y-%m-%d %H:%M") if f.created else "-",
            f.action.value,
            f.reason,
        )
    return table


def register(app: typer.Typer) -> None:
    """Add ``reconcile`` to the ``hybridvideo`` command line."""
    app.command("reconcile")(reconcile)
