"""The queue contract: name a job, give it a payload, and a worker runs it.

Job code is plain functions registered with a :class:`JobSpec`; it never sees the queue
library, so the same handler runs on the embedded backend (SQLite file, one machine) and on
Redis (many workers). Payloads are JSON-compatible keyword arguments.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

Handler = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Periodic:
    """A cron-like schedule (minute resolution), each field in crontab syntax."""

    minute: str = "*"
    hour: str = "*"
    day: str = "*"
    month: str = "*"
    day_of_week: str = "*"


@dataclass(frozen=True, slots=True)
class JobSpec:
    """How a job type is run.

    ``retries`` extra attempts after a failure, the first after ``retry_delay`` seconds and
    each next one ``retry_backoff`` times later. ``lock_key`` maps a payload to a key: at
    most one job with that key runs at a time; a job that finds the key taken is retried
    later (not lost, not run twice in parallel); a lock older than ``lock_ttl`` seconds is
    taken to belong to a worker that was killed, and is broken. ``periodic`` makes the job
    run on a schedule (with no payload), once per scheduled minute however many workers run.
    """

    name: str
    retries: int = 3
    retry_delay: float = 1.0
    retry_backoff: float = 2.0
    lock_key: Callable[[Mapping[str, Any]], str] | None = None
    lock_ttl: float = 3600.0
    periodic: Periodic | None = None


class WorkerHandle(Protocol):
    @property
    def running(self) -> bool:
        """True while the worker thread is alive."""

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the worker to finish its running jobs; True if it stopped within ``timeout``."""


@runtime_checkable
class TaskQueue(Protocol):
    @property
    def backend(self) -> str:
        """``memory``, ``sqlite``, ``redis`` or ``postgres``: shown by ``doctor``."""

    def register(self, spec: JobSpec, handler: Handler) -> None:
        """Make ``handler`` runnable under ``spec.name``; registering a name twice is an error."""

    def enqueue(
        self,
        name: str,
        payload: Mapping[str, Any] | None = None,
        *,
        delay: float | None = None,
        eta: datetime | None = None,
    ) -> str:
        """Queue a run of job ``name`` and return its id; ``delay``/``eta`` schedule it later."""

    def pending(self) -> int:
        """Jobs waiting to run now (not counting scheduled ones)."""

    def run_worker(self, *, workers: int, stop: threading.Event) -> None:
        """Run jobs with ``workers`` threads until ``stop`` is set (blocks)."""

    def start_background(self, workers: int) -> WorkerHandle:
        """Run :meth:`run_worker` in a daemon thread (the embedded server's worker)."""

    def ping(self) -> None:
        """Raise ``BackendUnavailable`` unless the backend answers."""

    def close(self) -> None:
        """Release connections; the queue is not used afterwards."""
