"""Run a queued migration run (the admin page's "retry the failed ones") on a worker.

The admin API records the run as ``queued`` in the journal and queues this job with its
id; the job claims it (``MigrationService.resume``: queued → running, fresh heartbeat)
and executes it. The journal, not the queue, is what keeps two workers off one run: a
run someone else claimed (fresh heartbeat) or one already finished raises ``Conflict``
at the claim, and the job then does nothing. A run that ends early is recorded as such
by the runner (``failed`` with the reason, or ``interrupted``), and the catalog keeps
every video's own outcome, so nothing here needs to be transactional.

Long runs (100,000 videos at Cloudflare's 1,200 requests per 5 minutes is about a day):

* ``lock_ttl`` is two days, above any realistic run. The queue breaks a lock older than
  its ttl (it takes the holder for dead), so a shorter one would let a second job for the
  same run start beside a live one; that job would only hit the journal's ``Conflict``,
  but the lock also covers the runner's gaps in heartbeats (the first Stream listing of a
  large account). Nothing but this job enqueues a run id, so a lock left by a killed
  worker holds no other run back; ``HueyQueue.release_lock("migration.run:<id>")`` frees
  it by hand if a run id is ever queued again before then.
* huey has no per-job time limit, so nothing else cuts a run short; the run holds one
  worker thread for its whole length (its videos go out on its own thread pool).
* stopping the worker gracefully waits for running jobs, which could be hours: the host
  calls :func:`stop_runs` when it starts shutting down, the runner finishes the videos in
  flight and records the run as interrupted, and this job queues the run again so the
  next worker resumes it where it stopped. A worker *killed* outright leaves the run
  ``running`` without a heartbeat (shown as interrupted); ``hybridvideo migrate --resume``
  continues it.
* ``retries`` cover a catalog that could not be reached when claiming, and a run that
  crashed part-way (recorded as interrupted, so the retry resumes it); a run the runner
  ended as failed (bad credentials, Stream down for everyone) is not retried blindly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hybridvideo.errors import Conflict, NotFound
from hybridvideo.migrate.journal import RunState
from hybridvideo.migrate.runner import MigrationAborted
from hybridvideo.queue.base import JobSpec, TaskQueue

if TYPE_CHECKING:
    from hybridvideo.container import Container

NAME = "migration.run"
#: Above the longest run we expect (see the module docstring).
LOCK_TTL = 2 * 24 * 3600.0
#: A run stopped by a shutdown is queued again this much later (for the next worker).
RESUME_DELAY = 5.0
log = logging.getLogger("hybridvideo.migrate")


def _lock(payload: Mapping[str, Any]) -> str:
    return str(payload["run_id"])


SPEC = JobSpec(
    name=NAME, retries=3, retry_delay=60.0, retry_backoff=2.0, lock_key=_lock, lock_ttl=LOCK_TTL
)

# Runs executing in this process, by run id: (the container that runs it, its stop event).
_running: dict[str, tuple[Container, threading.Event]] = {}
_running_lock = threading.Lock()


def enqueue(queue: TaskQueue, run_id: str, *, delay: float | None = None) -> str:
    """Queue the execution of the queued (or interrupted) run ``run_id``."""
    return queue.enqueue(NAME, {"run_id": run_id}, delay=delay)


def stop_runs(container: Container) -> int:
    """Ask the runs this container executes to stop (the host is shutting down).

    Each finishes its videos in flight, is recorded as interrupted and is queued again
    for the next worker. Returns how many were asked.
    """
    with _running_lock:
        events = [stop for owner, stop in _running.values() if owner is container]
    for stop in events:
        stop.set()
    return len(events)


def run(container: Container, run_id: str) -> str:
    """Claim and execute ``run_id``; returns its final state, or why nothing was done."""
    try:
        claimed = container.migrations.resume(run_id)
    except Conflict as exc:
        log.info("migration run not taken: %s", exc.message, extra={"run_id": run_id})
        return "skipped"
    except NotFound:
        log.warning("queued migration run no longer exists", extra={"run_id": run_id})
        return "missing"
    stop = threading.Event()
    with _running_lock:
        _running[run_id] = (container, stop)
    try:
        report = container.migrations.execute(claimed, stop=stop)
    except MigrationAborted as exc:  # recorded as failed, with the reason, by the runner
        log.warning("migration run failed: %s", exc.message, extra={"run_id": run_id})
        return RunState.FAILED.value
    finally:
        with _running_lock:
            _running.pop(run_id, None)
    state = report.run.state
    if state == RunState.INTERRUPTED and stop.is_set():
        enqueue(container.queue, run_id, delay=RESUME_DELAY)
        log.info("migration run stopped by shutdown; queued again", extra={"run_id": run_id})
        return "requeued"
    return state.value


def register(container: Container) -> None:
    def handler(run_id: str) -> str:
        return run(container, run_id)

    container.queue.register(SPEC, handler)
