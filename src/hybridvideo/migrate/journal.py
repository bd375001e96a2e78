"""The run journal: what each migration run did, kept in the catalog database.

An operator moving 100,000 videos needs to know, days later and from any machine, which
runs happened, how far each got and why some videos failed. The journal records that;
the *catalog* stays the truth about each video (its stream uid and status), so a journal
entry lost with a killed process never loses a video: the next run finds it again.

* a :class:`MigrationRun` is one invocation (or one admin "retry the failed ones"), with
  the filters and options it ran with, so ``--resume`` can run it again unchanged;
* a :class:`RunItem` is one video's outcome in that run (recorded once per video, updated
  when a resumed run reaches it again), so counts are a ``GROUP BY`` and never drift;
* a run still ``running`` whose heartbeat stopped is shown as interrupted
  (:meth:`MigrationRun.effective_state`): SIGKILL leaves no chance to write anything.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable


class RunState(enum.StrEnum):
    QUEUED = "queued"
    """Made by the admin page; a worker picks it up."""
    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"
    """Stopped early (Ctrl-C, SIGTERM, or no heartbeat any more): resume it."""
    FAILED = "failed"
    """Could not go on (the catalog or the Stream credentials failed); ``error`` says why."""


class Outcome(enum.StrEnum):
    COPIED = "copied"
    """A new Stream copy was requested for the video."""
    PRESENT = "present"
    """Stream already had it: delivered before, or a copy with its meta was adopted."""
    FAILED = "failed"
    """A permanent error, recorded on the video (ERROR) with the reason; not retried."""
    DEFERRED = "deferred"
    """Still rate limited or unreachable after every retry: left for the next run."""


#: A run whose heartbeat is older than this is not running any more, whatever it says.
HEARTBEAT_TIMEOUT = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class MigrationRun:
    id: str
    state: RunState
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    #: The filters (``VideoScan`` fields as JSON) and options (concurrency ...) used.
    filters: Mapping[str, Any]
    options: Mapping[str, Any]
    #: Videos the run set out to handle (counted when it started or resumed).
    total: int
    counts: Mapping[str, int]
    error: str | None = None
    #: The run whose failed videos this one retries.
    parent_id: str | None = None
    #: A token per start or claim: heartbeats and the finish of an executor that lost
    #: the run to a newer claim are refused, so two processes never both drive it.
    owner: str | None = None

    def effective_state(self, now: datetime) -> RunState:
        """``running`` only while the heartbeat is fresh; a killed run shows interrupted."""
        if self.state == RunState.RUNNING:
            beat = self.heartbeat_at or self.started_at or self.created_at
            if now - beat > HEARTBEAT_TIMEOUT:
                return RunState.INTERRUPTED
        return self.state

    @property
    def done(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class RunItem:
    video_id: str
    outcome: Outcome
    stream_uid: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    #: Stream API requests this video cost (retries included).
    requests: int = 0
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class NewRun:
    filters: Mapping[str, Any]
    options: Mapping[str, Any] = field(default_factory=dict)
    total: int = 0
    state: RunState = RunState.RUNNING
    parent_id: str | None = None


@runtime_checkable
class RunJournal(Protocol):
    def start_run(self, new: NewRun) -> MigrationRun:
        """Record a new run (``running`` with a fresh heartbeat, or ``queued``)."""

    def get_run(self, run_id: str) -> MigrationRun:
        """The run with its counts, or ``NotFound``."""

    def list_runs(self, *, limit: int = 20, offset: int = 0) -> list[MigrationRun]:
        """Newest first."""

    def claim_run(self, run_id: str, *, total: int) -> MigrationRun:
        """Make a queued or interrupted run ``running`` again (a worker, or ``--resume``).

        ``Conflict`` if it is running with a fresh heartbeat (someone else has it) or
        finished; ``NotFound`` if absent.
        """

    def heartbeat(self, run_id: str, *, owner: str | None = None) -> None:
        """Mark the run alive; ``Conflict`` when ``owner`` no longer holds it."""

    def record_items(self, run_id: str, items: Sequence[RunItem]) -> None:
        """Insert or replace the outcome of each video in the run, in one transaction."""

    def finish_run(
        self,
        run_id: str,
        state: RunState,
        *,
        error: str | None = None,
        owner: str | None = None,
    ) -> MigrationRun:
        """End the run as ``finished``, ``interrupted`` or ``failed``; ``Conflict`` when
        ``owner`` no longer holds it (the new holder finishes it)."""

    def items(
        self, run_id: str, *, outcome: Outcome | None = None, limit: int = 100, offset: int = 0
    ) -> list[RunItem]:
        """The run's items, in the order they were first recorded."""
