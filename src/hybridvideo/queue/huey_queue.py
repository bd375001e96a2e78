"""The task queue on huey: one library, four storages, the same job code on all of them.

Why huey: it has an embedded SQLite storage (one file, no extra service: right for a single
machine), Redis and PostgreSQL storages for several machines, and a memory storage for tests,
all behind one API, so switching backends changes a constructor, not the jobs. Retries with a
delay and backoff, scheduled (delayed) runs, cron-like periodic jobs and locks are built in.
Its worker is a pool of plain threads, which fits this synchronous stack and lets the server
run jobs in a background thread of its own process.

Limits to design jobs around:

* Periodic jobs have minute resolution, and their crontab fields are read in UTC. Every
  running worker has a scheduler; the first to claim a minute enqueues that minute's
  periodic jobs and the others skip it (:func:`_once_per_minute`).
* Delays, retries and lock waits become runnable on the scheduler's next pass
  (:attr:`Timing.tick`), so they are never early but may be up to one tick late.
* A job can run more than once (a retry after a failure that came after some side effects,
  a periodic job enqueued by two schedulers), so handlers must be idempotent. huey removes a
  job from the queue before running it and has no acknowledgement: a job in flight when its
  worker process is killed (not stopped) is not delivered again. A lock it held is broken
  once older than the job's ``lock_ttl`` (or by hand, :meth:`HueyQueue.release_lock`).
* So a job that runs longer than its ``lock_ttl`` is taken for dead, and another job with
  the same key may start alongside it: set ``lock_ttl`` well above the longest run. Each
  lock value names its owner, so the overrun job's release leaves the new owner's lock in
  place (:func:`_delete_if`), and only one of several workers breaking one stale lock
  takes it.
* Locks need an atomic compare-and-delete written per storage: huey's memory, SQLite,
  Redis and PostgreSQL storages are supported; any other is refused at construction.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from huey import MemoryHuey, PostgresHuey, RedisHuey, SqliteHuey, crontab
from huey import signals as huey_signals
from huey.api import Huey, TaskWrapper
from huey.constants import EmptyData
from huey.consumer import Consumer
from huey.exceptions import RetryTask
from huey.storage import MemoryStorage, PostgresStorage, RedisStorage, SqliteStorage
from huey.utils import normalize_time

from hybridvideo.errors import BackendUnavailable, ConfigurationError, InvalidInput
from hybridvideo.queue.base import Handler, JobSpec

log = logging.getLogger("hybridvideo.queue")

#: How often ``run_worker`` replaces worker threads that died (huey's own default).
HEALTH_CHECK_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Timing:
    """How promptly work is picked up; the defaults suit production, tests shrink them.

    ``tick``: seconds between scheduler passes, which move due delayed, retried and
    lock-deferred jobs into the queue (huey's default is 1 s and allows no less; a shorter
    tick costs one cheap storage query per pass). ``poll``: the longest an idle worker waits
    before it looks at the queue again, and so how long stopping can take.
    ``lock_retry``: how long a job whose lock key is taken waits before trying again.
    """

    tick: float = 1.0
    poll: float = 1.0
    lock_retry: float = 1.0

    def __post_init__(self) -> None:
        # A zero poll would make Redis's BRPOP block forever and the worker unstoppable.
        if min(self.tick, self.poll, self.lock_retry) <= 0:
            raise ValueError("queue timings must be positive")


class _ThreadConsumer(Consumer):  # type: ignore[misc]  # huey is untyped
    """huey's consumer, adjusted to run inside a host process rather than be the process.

    ``Consumer.start`` ends by installing SIGINT/SIGTERM/SIGHUP handlers, which Python only
    allows in the main thread and which belong to the host anyway (the CLI sets its own,
    uvicorn has its own). The scheduler interval is also set from :attr:`Timing.tick`,
    because huey clamps it to whole seconds of at least 1.
    """

    def __init__(self, huey: Huey, *, tick: float, **options: Any) -> None:
        self._tick = tick
        super().__init__(huey, **options)

    def _create_scheduler(self) -> Any:
        scheduler = super()._create_scheduler()
        scheduler.interval = self._tick
        scheduler.enqueue_periodic_tasks = _once_per_minute(
            self.huey, scheduler.enqueue_periodic_tasks
        )
        return scheduler

    def _set_signal_handlers(self) -> None:
        pass


def _once_per_minute(huey: Huey, enqueue: Callable[[Any], None]) -> Callable[[Any], None]:
    """Let only one of the workers sharing a queue enqueue each minute's periodic jobs.

    Every huey scheduler checks the periodic schedule once a minute; with several workers
    on one Redis or PostgreSQL queue each would enqueue the same runs. The first scheduler
    to claim ``<queue>.periodic:<UTC minute>`` (``put_if_empty``, atomic on every storage)
    enqueues; the others skip. Claims from a few minutes back are deleted as we go.
    """

    def claimed_enqueue(now: Any = None) -> None:
        stamp = now or huey._get_timestamp()
        prefix = f"{huey.name}.periodic:"
        if not huey.put_if_empty(prefix + stamp.strftime("%Y%m%d%H%M"), "1"):
            log.debug("periodic jobs for this minute already enqueued by another worker")
            return
        huey.delete(prefix + (stamp - timedelta(minutes=5)).strftime("%Y%m%d%H%M"))
        enqueue(stamp)

    return claimed_enqueue


class WorkerHandle:
    """A worker running in a daemon thread (the embedded server's worker)."""

    def __init__(self, thread: threading.Thread, stop_event: threading.Event) -> None:
        self._thread = thread
        self._stop = stop_event

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the worker to finish its running jobs and stop; True if it did within ``timeout``."""
        self._stop.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()


class HueyQueue:
    """:class:`~hybridvideo.queue.base.TaskQueue` over one huey instance.

    Build it with :func:`memory_queue`, :func:`sqlite_queue`, :func:`redis_queue` or
    :func:`postgres_queue`. The SQL storages create their tables on first use rather than in
    the constructor, so a server can start while its queue is down and report it through
    :meth:`ping` instead of failing to boot. A huey storage other than those four is
    refused with :class:`~hybridvideo.errors.ConfigurationError`: locks need an atomic
    compare-and-delete, written here for each of them.
    """

    def __init__(
        self,
        huey: Huey,
        *,
        backend: str,
        timing: Timing | None = None,
        outages: tuple[type[BaseException], ...] = (),
        prepare: Callable[[], None] | None = None,
        probe: Callable[[], object] | None = None,
    ) -> None:
        if type(huey.storage) not in _DELETE_IF:
            raise ConfigurationError(
                f"huey storage {type(huey.storage).__name__} is not supported: job locks "
                "need a compare-and-delete, written for "
                + ", ".join(sorted(t.__name__ for t in _DELETE_IF))
            )
        self._huey = huey
        self._backend = backend
        self._timing = timing or Timing()
        self._outages = outages
        self._prepare = prepare
        self._prepared = prepare is None
        self._prepare_lock = threading.Lock()
        self._probe = probe
        self._tasks: dict[str, TaskWrapper] = {}
        self._register_lock = threading.Lock()
        huey.signal(huey_signals.SIGNAL_ERROR)(self._log_failure)

    @property
    def backend(self) -> str:
        return self._backend

    @property
    def huey(self) -> Huey:
        """The underlying huey instance, for diagnostics and tests."""
        return self._huey

    # -- registering and enqueueing -------------------------------------------------------

    def register(self, spec: JobSpec, handler: Handler) -> None:
        if spec.retries < 0 or spec.retry_delay < 0 or spec.retry_backoff < 0:
            raise ValueError(f"job {spec.name!r}: retries and delays must not be negative")
        run = self._runner(spec, handler)
        options: dict[str, Any] = {
            "name": spec.name,
            "retries": spec.retries,
            "retry_delay": spec.retry_delay,
            "retry_backoff": spec.retry_backoff,
        }
        with self._register_lock:
            if spec.name in self._tasks:
                raise ValueError(f"job {spec.name!r} is already registered")
            if spec.periodic is None:
                wrapper = self._huey.task(**options)(run)
            else:
                p = spec.periodic
                schedule = crontab(p.minute, p.hour, p.day, p.month, p.day_of_week, strict=True)
                wrapper = self._huey.periodic_task(schedule, **options)(run)
            self._tasks[spec.name] = wrapper

    def _runner(self, spec: JobSpec, handler: Handler) -> Callable[..., Any]:
        """The function huey runs: the handler, inside the job's per-key lock if it has one.

        The lock is huey's storage key ``<queue>.lock.<job>:<key>`` (the key ``lock_task``
        uses), taken with ``put_if_empty`` (:func:`_acquire`) and released in ``finally``,
        so a handler that raises still frees it. The release deletes the key only if it
        still holds this run's value (:func:`_delete_if`): a run that outlived its
        ``lock_ttl`` may have had its lock broken and taken by another, which it must not
        free. ``lock_task`` itself is not used because it records every lock name in a set
        on the huey instance that is never pruned, which grows without bound with one name
        per video, and because it releases unconditionally. A job that finds its key taken
        raises ``RetryTask``:
        huey adds one to its retries before spending one, so its failure budget and retry
        delay are untouched, and it goes back on the schedule rather than being dropped.
        """
        lock_key = spec.lock_key
        if lock_key is None:

            def run_unlocked(**payload: Any) -> Any:
                return handler(**payload)

            return run_unlocked

        huey = self._huey
        lock_retry = self._timing.lock_retry

        def run_locked(**payload: Any) -> Any:
            name = f"{huey.name}.lock.{spec.name}:{lock_key(payload)}"
            mine = _acquire(huey, name, spec.lock_ttl)
            if mine is None:
                log.debug("job %s deferred: its lock key is taken", spec.name)
                raise RetryTask(delay=lock_retry)
            try:
                return handler(**payload)
            finally:
                if not _delete_if(huey, name, mine):
                    log.warning(
                        "job %s finished after losing its lock (ran longer than lock_ttl "
                        "%.0f s, or released by hand); the current holder's lock is kept",
                        spec.name,
                        spec.lock_ttl,
                    )

        return run_locked

    def enqueue(
        self,
        name: str,
        payload: Mapping[str, Any] | None = None,
        *,
        delay: float | None = None,
        eta: datetime | None = None,
    ) -> str:
        wrapper = self._tasks.get(name)
        if wrapper is None:
            raise InvalidInput(f"unknown job {name!r}")
        kwargs = _json_payload(payload)
        when = _run_at(delay, eta)
        task = wrapper.task_class((), kwargs, eta=when)
        with self._available():
            if when is None:
                self._huey.enqueue(task)
            else:
                # Straight onto the schedule: huey.enqueue would put it in the queue first,
                # where pending() would count it until a worker moved it to the schedule.
                self._huey.add_schedule(task)
        return str(task.id)

    def pending(self) -> int:
        with self._available():
            return int(self._huey.pending_count())

    def lock_holders(self) -> list[str]:
        """Lock names (``<job>:<key>``) held right now: to find one a killed worker left."""
        with self._available():
            prefix = f"{self._huey.name}.lock."
            keys = self._huey.storage.result_items()
        return sorted(
            key[len(prefix) :]
            for key in (k.decode() if isinstance(k, bytes) else k for k in keys)
            if key.startswith(prefix)
        )

    def release_lock(self, lock_name: str) -> bool:
        """Free a lock left behind by a worker that was killed mid-job; True if it was held."""
        with self._available():
            return bool(self._huey.delete(f"{self._huey.name}.lock.{lock_name}"))

    # -- health ---------------------------------------------------------------------------

    def ping(self) -> None:
        try:
            self._ensure_prepared()
            if self._probe is not None:
                self._probe()
        except BackendUnavailable:
            raise
        except Exception as exc:  # any failure to answer means "not available"
            raise self._unavailable(exc) from exc

    def close(self) -> None:
        """Release the storage's connection (the calling thread's, for PostgreSQL)."""
        self._huey.storage.close()

    # -- workers --------------------------------------------------------------------------

    def run_worker(self, *, workers: int, stop: threading.Event) -> None:
        """Run ``workers`` threads plus the scheduler until ``stop`` is set.

        Safe in any thread. On stop, running jobs finish before this returns (huey's
        graceful stop); jobs still queued stay queued for the next worker.
        """
        if workers < 1:
            raise ValueError("workers must be at least 1")
        with self._available():
            pass  # the SQL storages' tables must exist before the workers poll them
        poll = self._timing.poll
        consumer = _ThreadConsumer(
            self._huey,
            tick=self._timing.tick,
            workers=workers,
            worker_type="thread",
            periodic=True,
            initial_delay=min(0.1, poll),
            max_delay=poll,
        )
        consumer.start()
        log.info(
            "queue worker started",
            extra={"queue": self._backend, "workers": workers},
        )
        try:
            while not stop.wait(HEALTH_CHECK_SECONDS):
                consumer.check_worker_health()
        finally:
            consumer.stop(graceful=True)
            log.info("queue worker stopped", extra={"queue": self._backend})

    def start_background(self, workers: int) -> WorkerHandle:
        """Run :meth:`run_worker` in a daemon thread; stop it with ``handle.stop(timeout)``."""
        stop_event = threading.Event()

        def target() -> None:
            try:
                self.run_worker(workers=workers, stop=stop_event)
            except Exception:
                log.exception("queue worker failed", extra={"queue": self._backend})

        thread = threading.Thread(target=target, name="hybridvideo-queue", daemon=True)
        thread.start()
        return WorkerHandle(thread, stop_event)

    # -- internals ------------------------------------------------------------------------

    def _log_failure(self, signal: str, task: Any, exc: BaseException | None = None) -> None:
        """Log a failed attempt by job name and id; never the payload, it may hold secrets."""
        extra = {"job": task.name, "job_id": task.id, "retries_left": task.retries}
        if task.retries:
            log.warning(
                "job %s (id %s) failed, %d retries left",
                task.name,
                task.id,
                task.retries,
                exc_info=exc,
                extra=extra,
            )
        else:
            log.error(
                "job %s (id %s) failed, giving up", task.name, task.id, exc_info=exc, extra=extra
            )

    def _ensure_prepared(self) -> None:
        if self._prepared:
            return
        with self._prepare_lock:
            if not self._prepared and self._prepare is not None:
                self._prepare()
                self._prepared = True

    @contextmanager
    def _available(self) -> Iterator[None]:
        """Run storage calls, turning the driver's connection errors into BackendUnavailable."""
        try:
            self._ensure_prepared()
            yield
        except self._outages as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: BaseException) -> BackendUnavailable:
        return BackendUnavailable(
            f"the {self._backend} queue is unreachable", detail=f"{type(exc).__name__}: {exc}"
        )


def _acquire(huey: Huey, name: str, ttl: float) -> bytes | None:
    """Take lock ``name``, breaking it first if its holder took it more than ``ttl`` s ago.

    Returns the value stored, as the storage holds it (the holder's proof of ownership, to
    pass to :func:`_delete_if` on release), or None if the lock is held. The value is
    ``"<unix time taken> <random owner token>"``; a bare time (the format before owner
    tokens) is read too. A worker killed mid-job never releases its locks, and huey's SQL
    and memory storages have no key expiry, so age is checked here. A stale lock is broken
    by deleting exactly the value seen, so of several workers breaking it at once only one
    deletes it, and only one then takes the lock (``put_if_empty``).
    """
    now = time.time()
    mine: bytes = huey.serializer.serialize(f"{now!r} {uuid.uuid4().hex}")
    storage = huey.storage
    if storage.put_if_empty(name, mine):
        return mine
    seen = storage.peek_data(name)
    if seen is EmptyData:  # released since our try: take it now if still free
        return mine if storage.put_if_empty(name, mine) else None
    taken_at = _taken_at(huey.serializer.deserialize(seen))
    if taken_at is None or now - taken_at <= ttl:
        return None
    if not _delete_if(huey, name, bytes(seen)):
        return None  # another worker broke it first (or it was released)
    log.warning("broke lock %s held for %.0f s (holder presumed dead)", name, now - taken_at)
    return mine if storage.put_if_empty(name, mine) else None


def _taken_at(value: object) -> float | None:
    """When a lock was taken, from its value; None if the value is not a lock's."""
    if not isinstance(value, str):
        return None
    try:
        return float(value.split(" ", 1)[0])
    except ValueError:
        return None


def _delete_if(huey: Huey, key: str, expected: bytes) -> bool:
    """Delete ``key`` only if it holds ``expected``, atomically; True if it was deleted.

    ``expected`` is the value as the storage holds it (serialized), byte for byte: the
    bytes given to ``put_if_empty`` or read with ``peek_data``, never a re-serialization
    (a compressing serializer need not give the same bytes twice).
    """
    return _DELETE_IF[type(huey.storage)](huey.storage, key, expected)


def _delete_if_memory(storage: Any, key: str, expected: bytes) -> bool:
    # MemoryStorage.put_if_empty checks and sets under this same lock.
    with storage._lock:
        if storage._results.get(key) != expected:
            return False
        del storage._results[key]
        return True


# KEYS[1]: huey's kv hash (``huey.results.<queue>``); ARGV: field, expected value.
# Lua scripts run atomically, and string comparison in Lua is byte for byte.
_REDIS_DELETE_IF = """\
if redis.call('hget', KEYS[1], ARGV[1]) == ARGV[2] then
    return redis.call('hdel', KEYS[1], ARGV[1])
end
return 0"""


def _delete_if_redis(storage: Any, key: str, expected: bytes) -> bool:
    deleted = storage.conn.eval(_REDIS_DELETE_IF, 1, storage.result_key, key, expected)
    return bool(deleted)


def _delete_if_sqlite(storage: Any, key: str, expected: bytes) -> bool:
    with storage.db(commit=True) as curs:
        curs.execute(
            "delete from kv where queue = ? and key = ? and value = ?",
            (storage.name, key, storage.to_blob(expected)),
        )
        return bool(curs.rowcount == 1)


def _delete_if_postgres(storage: Any, key: str, expected: bytes) -> bool:
    table = storage.table_kv  # "<prefix>_kv", the prefix stripped to [A-Za-z0-9_] by huey
    with storage.db() as curs:
        curs.execute(
            f"delete from {table} where queue = %s and key = %s and value = %s",
            (storage.name, key, expected),
        )
        return bool(curs.rowcount == 1)


#: Compare-and-delete per huey storage class, matched exactly: subclasses may store data
#: elsewhere (``RedisExpireStorage`` keeps values in separate keys, not in the hash).
_DELETE_IF: dict[type, Callable[[Any, str, bytes], bool]] = {
    MemoryStorage: _delete_if_memory,
    SqliteStorage: _delete_if_sqlite,
    RedisStorage: _delete_if_redis,
    PostgresStorage: _delete_if_postgres,
}


def _json_payload(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """The payload as JSON gives it back, so handlers see the same types on every storage."""
    if payload is None:
        return {}
    if not isinstance(payload, Mapping) or not all(isinstance(k, str) for k in payload):
        raise InvalidInput("a job payload must be a mapping with string keys")
    try:
        text = json.dumps(dict(payload), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"a job payload must be JSON-compatible: {exc}") from None
    result: dict[str, Any] = json.loads(text)
    return result


def _run_at(delay: float | None, eta: datetime | None) -> datetime | None:
    """When to run, as huey stores it (naive UTC), or None for now."""
    if delay is not None and eta is not None:
        raise InvalidInput("give either delay or eta, not both")
    if delay is not None:
        if (
            isinstance(delay, bool)
            or not isinstance(delay, int | float)
            or not math.isfinite(delay)
        ):
            raise InvalidInput("delay must be a finite number of seconds")
        when: datetime = normalize_time(delay=max(0.0, float(delay)), utc=True)
        return when
    if eta is not None:
        if eta.utcoffset() is None:
            raise InvalidInput("eta must be timezone-aware")
        when = normalize_time(eta=eta, utc=True)
        return when
    return None


# -- constructors -----------------------------------------------------------------------------


def memory_queue(name: str, *, timing: Timing | None = None) -> HueyQueue:
    """Jobs in this process's memory: for tests and throwaway runs, lost on exit."""
    return HueyQueue(MemoryHuey(name, results=False), backend="memory", timing=timing)


def sqlite_queue(
    path: Path, name: str = "hybridvideo", *, timing: Timing | None = None
) -> HueyQueue:
    """The embedded queue: one SQLite file, shared by every process on this machine."""
    timing = timing or Timing()
    huey = SqliteHuey(name, results=False, filename=str(path), create_tables=False)

    def prepare() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        huey.storage.initialize_schema()

    return HueyQueue(
        huey,
        backend="sqlite",
        timing=timing,
        outages=(sqlite3.Error, OSError),
        prepare=prepare,
        probe=lambda: huey.storage.sql("select 1", results=True),
    )


def redis_queue(url: str, name: str = "hybridvideo", *, timing: Timing | None = None) -> HueyQueue:
    """Jobs in Redis, shared by workers on any number of machines."""
    import redis

    timing = timing or Timing()
    pool = redis.ConnectionPool.from_url(url, socket_connect_timeout=5)
    huey = RedisHuey(name, results=False, connection_pool=pool, read_timeout=timing.poll)
    return HueyQueue(
        huey,
        backend="redis",
        timing=timing,
        outages=(redis.exceptions.RedisError, OSError),
        probe=huey.storage.conn.ping,
    )


def postgres_queue(
    url: str, name: str = "hybridvideo", *, timing: Timing | None = None
) -> HueyQueue:
    """Jobs in PostgreSQL tables (``huey_*``): shared workers without running Redis."""
    import psycopg

    timing = timing or Timing()
    dsn = libpq_dsn(url)
    params: dict[str, Any] = {} if "connect_timeout" in dsn else {"connect_timeout": 5}
    huey = PostgresHuey(
        name, results=False, dsn=dsn, read_timeout=timing.poll, create_tables=False, **params
    )
    return HueyQueue(
        huey,
        backend="postgres",
        timing=timing,
        outages=(psycopg.OperationalError, psycopg.InterfaceError, OSError),
        prepare=huey.storage.initialize_schema,
        probe=lambda: huey.storage.sql("select 1", results=True),
    )


def libpq_dsn(url: str) -> str:
    """``postgresql+psycopg://u:p@h/db`` (SQLAlchemy) as the ``postgresql://`` URI libpq reads.

    Only the scheme changes: both use the same percent-encoding for the rest.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+", 1)[0] not in ("postgresql", "postgres"):
        raise ConfigurationError("the PostgreSQL queue needs a postgresql:// URL")
    return f"postgresql://{rest}"


__all__ = [
    "HueyQueue",
    "Timing",
    "WorkerHandle",
    "libpq_dsn",
    "memory_queue",
    "postgres_queue",
    "redis_queue",
    "sqlite_queue",
]
