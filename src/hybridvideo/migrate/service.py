"""Start, resume and retry migration runs: what the CLI, the admin page and the worker call.

The runner does the sending; this module decides *which* run: a new one for the given
filters, an interrupted one again (same filters, same journal entry), or a new run made
of the videos an earlier run failed (the admin page's "retry the failed ones", queued for
a worker so the page never waits on Stream).
"""

from __future__ import annotations

import threading

from hybridvideo.catalog.base import Catalog
from hybridvideo.domain.video import VideoScan
from hybridvideo.errors import Conflict, InvalidInput
from hybridvideo.migrate.journal import MigrationRun, NewRun, Outcome, RunJournal, RunState
from hybridvideo.migrate.plan import (
    Estimate,
    MigrationOptions,
    estimate,
    retry_scan,
    scan_from_json,
    scan_to_json,
)
from hybridvideo.migrate.runner import MigrationReport, MigrationRunner, ProgressSink


class MigrationService:
    def __init__(self, *, catalog: Catalog, journal: RunJournal, runner: MigrationRunner) -> None:
        self._catalog = catalog
        self._journal = journal
        self._runner = runner

    @property
    def journal(self) -> RunJournal:
        return self._journal

    def plan(self, scan: VideoScan, options: MigrationOptions) -> Estimate:
        """The dry run: nothing is sent and nothing is recorded."""
        return estimate(self._catalog, scan, limit=options.limit)

    def start(
        self,
        scan: VideoScan,
        options: MigrationOptions,
        *,
        queued: bool = False,
        parent_id: str | None = None,
    ) -> MigrationRun:
        """Record a new run; ``queued`` leaves it for a worker (:meth:`claim_queued`)."""
        total = self.plan(scan, options).summary.count
        return self._journal.start_run(
            NewRun(
                filters=scan_to_json(scan),
                options=options.to_json(),
                total=total,
                state=RunState.QUEUED if queued else RunState.RUNNING,
                parent_id=parent_id,
            )
        )

    def resume(self, run_id: str) -> MigrationRun:
        """Take an interrupted, failed or queued run up again with its own filters."""
        run = self._journal.get_run(run_id)
        scan = scan_from_json(run.filters)
        options = MigrationOptions.from_json(run.options)
        settled = sum(n for outcome, n in run.counts.items() if outcome != Outcome.DEFERRED)
        left = None if options.limit is None else max(0, options.limit - settled)
        remaining = 0 if left == 0 else estimate(self._catalog, scan, limit=left).summary.count
        return self._journal.claim_run(run_id, total=settled + remaining)

    def retry_failed(self, run_id: str, *, queued: bool = True) -> MigrationRun:
        """A new run of the videos ``run_id`` failed (still undelivered), for a worker."""
        run = self._journal.get_run(run_id)
        if not run.counts.get(Outcome.FAILED.value):
            raise InvalidInput(f"migration run {run_id} has no failed videos")
        options = MigrationOptions.from_json({**run.options, "limit": None})
        return self.start(retry_scan(run_id), options, queued=queued, parent_id=run_id)

    def execute(
        self,
        run: MigrationRun,
        *,
        sink: ProgressSink | None = None,
        stop: threading.Event | None = None,
    ) -> MigrationReport:
        if run.state != RunState.RUNNING:
            raise Conflict(f"migration run {run.id} is {run.state.value}, not running")
        return self._runner.execute(run, sink=sink, stop=stop)
