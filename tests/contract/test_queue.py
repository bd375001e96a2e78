"""One contract for every queue backend: the same tests on memory, SQLite, Redis and PostgreSQL.

Jobs are plain functions that record into thread-safe structures; each test starts real worker
threads and waits with a bounded poll, never a fixed sleep longer than it needs. Timings are
shrunk (``FAST``) so the suite stays quick; the semantics are the production ones.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from huey import BlackHoleHuey
from huey.constants import EmptyData

from hybridvideo.errors import BackendUnavailable, ConfigurationError, InvalidInput
from hybridvideo.queue.base import JobSpec, Periodic, TaskQueue
from hybridvideo.queue.huey_queue import (
    HueyQueue,
    Timing,
    WorkerHandle,
    _acquire,
    _delete_if,
    libpq_dsn,
    memory_queue,
    postgres_queue,
    redis_queue,
    sqlite_queue,
)
from tests.services import free_port

FAST = Timing(tick=0.05, poll=0.1, lock_retry=0.1)

BACKENDS = [
    "memory",
    "sqlite",
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("postgres", marks=pytest.mark.postgres),
]


def wait_until(cond: Callable[[], object], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture(params=BACKENDS)
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HueyQueue]:
    # A unique queue name per test keeps tests apart on the shared Redis/PostgreSQL servers.
    name = f"t{uuid.uuid4().hex}"
    kind = request.param
    if kind == "memory":
        q = memory_queue(name, timing=FAST)
    elif kind == "sqlite":
        q = sqlite_queue(tmp_path / "queue.db", name, timing=FAST)
    elif kind == "redis":
        q = redis_queue(request.getfixturevalue("redis_url"), name, timing=FAST)
    else:
        q = postgres_queue(request.getfixturevalue("postgres_url"), name, timing=FAST)
    q.ping()
    yield q
    q.huey.flush()
    q.close()


@pytest.fixture
def start(queue: HueyQueue) -> Iterator[Callable[[int], WorkerHandle]]:
    handles: list[WorkerHandle] = []

    def _start(workers: int) -> WorkerHandle:
        handle = queue.start_background(workers)
        handles.append(handle)
        return handle

    yield _start
    for handle in handles:
        assert handle.stop(timeout=10), "worker did not stop"


class Concurrency:
    """Records which jobs ran and the most that ran at the same time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.done: list[int] = []

    def run(self, n: int, hold: float = 0.2) -> None:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        time.sleep(hold)
        with self._lock:
            self.running -= 1
            self.done.append(n)


def by_key(payload: Any) -> str:
    return str(payload["key"])


def test_is_a_task_queue(queue: HueyQueue) -> None:
    assert isinstance(queue, TaskQueue)
    assert queue.backend in ("memory", "sqlite", "redis", "postgres")


def test_job_runs_with_its_payload(queue: HueyQueue, start: Callable[[int], WorkerHandle]) -> None:
    seen: list[dict[str, Any]] = []
    queue.register(JobSpec("echo"), lambda **payload: seen.append(payload))
    payload = {"n": 1, "s": "é", "items": [1, 2], "nested": {"ok": True}, "none": None}

    first = queue.enqueue("echo", payload)
    second = queue.enqueue("echo")
    assert isinstance(first, str) and first and first != second
    assert queue.pending() == 2

    start(2)
    assert wait_until(lambda: len(seen) == 2)
    assert payload in seen and {} in seen
    assert wait_until(lambda: queue.pending() == 0)


def test_retries_back_off_then_succeed(
    queue: HueyQueue, start: Callable[[int], WorkerHandle]
) -> None:
    calls: list[float] = []

    def flaky() -> None:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise RuntimeError("transient")

    # Delays 0.25 s then 0.75 s: far enough apart that scheduler ticks cannot blur them.
    queue.register(JobSpec("flaky", retries=3, retry_delay=0.25, retry_backoff=3.0), flaky)
    queue.enqueue("flaky")
    start(2)

    assert wait_until(lambda: len(calls) >= 3)
    gap1, gap2 = calls[1] - calls[0], calls[2] - calls[1]
    assert gap1 >= 0.2
    assert gap2 > gap1 * 1.5
    time.sleep(0.3)
    assert len(calls) == 3  # success ends the retries


def test_retries_are_bounded(queue: HueyQueue, start: Callable[[int], WorkerHandle]) -> None:
    attempts: list[float] = []

    def broken() -> None:
        attempts.append(time.monotonic())
        raise RuntimeError("permanent")

    queue.register(JobSpec("broken", retries=2, retry_delay=0.05, retry_backoff=1.0), broken)
    queue.enqueue("broken")
    start(2)

    assert wait_until(lambda: len(attempts) >= 3)
    time.sleep(0.5)
    assert len(attempts) == 3  # retries + 1


def test_delay_and_eta_run_later_not_sooner(
    queue: HueyQueue, start: Callable[[int], WorkerHandle]
) -> None:
    ran: dict[str, float] = {}
    queue.register(JobSpec("later"), lambda which: ran.setdefault(which, time.monotonic()))

    began = time.monotonic()
    queue.enqueue("later", {"which": "delay"}, delay=1.0)
    queue.enqueue("later", {"which": "eta"}, eta=datetime.now(UTC) + timedelta(seconds=1))
    assert queue.pending() == 0  # scheduled jobs are not waiting to run *now*

    start(2)
    assert wait_until(lambda: len(ran) == 2)
    assert ran["delay"] - began >= 0.95
    assert ran["eta"] - began >= 0.95


def test_periodic_job(queue: HueyQueue, start: Callable[[int], WorkerHandle]) -> None:
    ticks: list[float] = []
    queue.register(JobSpec("tick", periodic=Periodic()), lambda: ticks.append(time.monotonic()))
    queue.register(JobSpec("nightly", periodic=Periodic(minute="30", hour="2")), lambda: None)

    def due(when: datetime) -> list[str]:
        return sorted(task.name for task in queue.huey.read_periodic(when))

    assert due(datetime(2024, 1, 1, 2, 30)) == ["nightly", "tick"]
    assert due(datetime(2024, 1, 1, 2, 31)) == ["tick"]

    # The scheduler enqueues due periodic jobs on its first pass, then once a minute.
    start(1)
    assert wait_until(lambda: ticks)


def test_same_lock_key_runs_one_at_a_time(
    queue: HueyQueue, start: Callable[[int], WorkerHandle]
) -> None:
    tracker = Concurrency()
    # retries=0: waiting for the lock must not spend failure retries, or jobs would be lost.
    queue.register(JobSpec("serial", retries=0, lock_key=by_key), lambda n, key: tracker.run(n))
    for n in range(4):
        queue.enqueue("serial", {"n": n, "key": "same"})

    start(4)
    assert wait_until(lambda: len(tracker.done) == 4)
    assert tracker.peak == 1
    time.sleep(0.3)
    assert sorted(tracker.done) == [0, 1, 2, 3]  # all ran, none twice
    assert queue.lock_holders() == []


def test_different_lock_keys_run_in_parallel(
    queue: HueyQueue, start: Callable[[int], WorkerHandle]
) -> None:
    tracker = Concurrency()
    queue.register(JobSpec("per_key", lock_key=by_key), lambda n, key: tracker.run(n))
    for n in range(4):
        queue.enqueue("per_key", {"n": n, "key": f"k{n}"})

    start(4)
    assert wait_until(lambda: len(tracker.done) == 4)
    assert tracker.peak > 1


def test_failing_handler_releases_its_lock(
    queue: HueyQueue, start: Callable[[int], WorkerHandle]
) -> None:
    attempts: list[bool] = []

    def guarded(fail: bool, key: str) -> None:
        attempts.append(fail)
        if fail:
            raise RuntimeError("crash while holding the lock")

    queue.register(JobSpec("guarded", retries=0, lock_key=by_key), guarded)
    start(2)
    queue.enqueue("guarded", {"fail": True, "key": "video-1"})
    assert wait_until(lambda: attempts == [True])
    queue.enqueue("guarded", {"fail": False, "key": "video-1"})
    assert wait_until(lambda: attempts == [True, False])
    assert queue.lock_holders() == []


def test_lock_holders_and_releasing_a_stale_lock(
    queue: HueyQueue, start: Callable[[int], WorkerHandle]
) -> None:
    gate = threading.Event()
    ran: list[int] = []

    def hold(n: int, key: str) -> None:
        ran.append(n)
        if n == 1:
            gate.wait(10)

    queue.register(JobSpec("hold", lock_key=by_key), hold)
    start(2)
    queue.enqueue("hold", {"n": 1, "key": "k"})
    assert wait_until(lambda: ran == [1])
    assert queue.lock_holders() == ["hold:k"]

    # Job 1 stands in for a worker killed mid-job: job 2 waits until its lock is released.
    queue.enqueue("hold", {"n": 2, "key": "k"})
    time.sleep(0.4)
    assert ran == [1]
    assert queue.release_lock("hold:k")
    assert wait_until(lambda: ran == [1, 2])
    gate.set()
    assert wait_until(lambda: queue.lock_holders() == [])
    assert not queue.release_lock("hold:k")


def test_a_lock_older_than_its_ttl_is_broken(
    queue: HueyQueue, start: Callable[[int], WorkerHandle]
) -> None:
    ran: list[int] = []
    queue.register(
        JobSpec("ttl", retries=0, lock_key=by_key, lock_ttl=1.0), lambda n, key: ran.append(n)
    )
    # A lock left by a worker that was killed 5 s ago (the value is when it was taken).
    lock = f"{queue.huey.name}.lock.ttl:k"
    queue.huey.put(lock, repr(time.time() - 5))
    start(1)
    queue.enqueue("ttl", {"n": 1, "key": "k"})
    assert wait_until(lambda: ran == [1])
    # A fresh lock is respected: the job waits until it is released.
    queue.huey.put(lock, repr(time.time()))
    queue.enqueue("ttl", {"n": 2, "key": "k"})
    time.sleep(0.4)
    assert ran == [1]
    queue.release_lock("ttl:k")
    assert wait_until(lambda: ran == [1, 2])


def test_a_job_that_lost_its_lock_leaves_the_new_owners_lock(
    queue: HueyQueue, start: Callable[[int], WorkerHandle]
) -> None:
    gate = threading.Event()
    ran: list[int] = []
    finished: list[int] = []

    def hold(n: int, key: str) -> None:
        ran.append(n)
        if n == 1:
            gate.wait(10)
        finished.append(n)

    queue.register(JobSpec("overrun", retries=0, lock_key=by_key), hold)
    start(2)
    queue.enqueue("overrun", {"n": 1, "key": "k"})
    assert wait_until(lambda: ran == [1])
    # Job 1 outlived its lock_ttl: another worker broke its lock and took the key.
    lock = f"{queue.huey.name}.lock.overrun:k"
    theirs = f"{time.time()!r} {uuid.uuid4().hex}"
    queue.huey.put(lock, theirs)
    gate.set()
    assert wait_until(lambda: finished == [1])
    time.sleep(0.1)  # the release runs just after the handler returns
    assert queue.huey.get(lock, peek=True) == theirs  # job 1 did not free the new owner's lock
    # ...so the key is still taken: a job with it waits until the new owner releases.
    queue.enqueue("overrun", {"n": 2, "key": "k"})
    time.sleep(0.4)
    assert ran == [1]
    assert _delete_if(queue.huey, lock, queue.huey.get_raw(lock, peek=True))
    assert wait_until(lambda: finished == [1, 2])
    assert wait_until(lambda: queue.lock_holders() == [])


def test_only_one_of_concurrent_breakers_takes_a_stale_lock(
    queue: HueyQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = f"{queue.huey.name}.lock.race:k"
    breakers = 4
    storage = queue.huey.storage
    peek = storage.peek_data

    def slow_peek(key: str) -> Any:
        # A slow read lets every breaker see the stale value before any of them acts on it.
        value = peek(key)
        time.sleep(0.01)
        return value

    monkeypatch.setattr(storage, "peek_data", slow_peek)

    def breaker(barrier: threading.Barrier, won: list[bytes | None]) -> None:
        barrier.wait(5)
        won.append(_acquire(queue.huey, lock, 10.0))

    for _ in range(20):
        queue.huey.put(lock, f"{time.time() - 60!r} {uuid.uuid4().hex}")  # a dead holder's
        barrier = threading.Barrier(breakers)
        won: list[bytes | None] = []
        threads = [threading.Thread(target=breaker, args=(barrier, won)) for _ in range(breakers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        winners = [value for value in won if value is not None]
        assert len(won) == breakers and len(winners) == 1
        assert queue.huey.get_raw(lock, peek=True) == winners[0]
        assert _delete_if(queue.huey, lock, winners[0])


def test_compare_and_delete_only_deletes_the_expected_value(queue: HueyQueue) -> None:
    huey = queue.huey
    lock = f"{huey.name}.lock.cad:k"
    mine = _acquire(huey, lock, 10.0)
    assert mine is not None
    assert _acquire(huey, lock, 10.0) is None  # held, and fresh
    for wrong in (
        huey.serializer.serialize(f"{time.time()!r} {uuid.uuid4().hex}"),
        mine[:-1],
        mine + b"x",
        b"",
    ):
        assert not _delete_if(huey, lock, wrong)
        assert huey.get_raw(lock, peek=True) == mine
    assert not _delete_if(huey, f"{lock}-other", mine)  # same value, other key
    assert _delete_if(huey, lock, mine)
    assert huey.get_raw(lock, peek=True) is EmptyData
    assert not _delete_if(huey, lock, mine)  # already gone


def test_a_storage_without_compare_and_delete_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        HueyQueue(BlackHoleHuey("t"), backend="memory")


def test_each_minute_of_periodic_jobs_is_enqueued_once(
    queue: HueyQueue, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from hybridvideo.queue.huey_queue import _once_per_minute

    if queue.backend == "redis":
        other = redis_queue(request.getfixturevalue("redis_url"), queue.huey.name, timing=FAST)
    elif queue.backend == "postgres":
        other = postgres_queue(
            request.getfixturevalue("postgres_url"), queue.huey.name, timing=FAST
        )
    elif queue.backend == "sqlite":
        other = sqlite_queue(tmp_path / "queue.db", queue.huey.name, timing=FAST)
    else:
        other = queue  # memory: one process, one storage
    calls: list[tuple[str, datetime]] = []
    first = _once_per_minute(queue.huey, lambda now: calls.append(("a", now)))
    second = _once_per_minute(other.huey, lambda now: calls.append(("b", now)))
    minute = datetime(2026, 11, 23, 12, 0, 5)
    first(minute)
    second(minute.replace(second=40))  # the other worker's check, later in the same minute
    assert calls == [("a", minute)]
    second(minute + timedelta(minutes=1))
    first(minute + timedelta(minutes=1, seconds=30))
    assert [who for who, _ in calls] == ["a", "b"]
    if other is not queue:
        other.close()


def test_failures_are_logged_by_name_and_id_not_payload(
    queue: HueyQueue, start: Callable[[int], WorkerHandle], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    def boom(token: str) -> None:
        raise RuntimeError("boom")

    queue.register(JobSpec("boom", retries=0), boom)
    job_id = queue.enqueue("boom", {"token": "s3cr3t-token"})
    start(1)

    def failure_logged() -> list[logging.LogRecord]:
        return [
            r
            for r in caplog.records
            if r.name == "hybridvideo.queue" and r.levelno == logging.ERROR
        ]

    assert wait_until(failure_logged)
    message = failure_logged()[0].getMessage()
    assert "boom" in message and job_id in message
    assert "s3cr3t-token" not in caplog.text


def test_rejects_bad_input(queue: HueyQueue) -> None:
    queue.register(JobSpec("job"), lambda **payload: None)

    with pytest.raises(InvalidInput):
        queue.enqueue("no-such-job", {})
    for bad in ({"x": object()}, {"x": {1, 2}}, {"x": float("nan")}, {1: "int key"}, ["x"]):
        with pytest.raises(InvalidInput):
            queue.enqueue("job", bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        queue.enqueue("job", {}, delay=1, eta=datetime.now(UTC))
    with pytest.raises(InvalidInput):
        queue.enqueue("job", {}, eta=datetime.now())  # naive: whose clock?
    with pytest.raises(ValueError):
        queue.register(JobSpec("job"), lambda **payload: None)
    with pytest.raises(ValueError):
        queue.register(JobSpec("bad-cron", periodic=Periodic(minute="61")), lambda: None)
    assert queue.pending() == 0


def test_ping_ok(queue: HueyQueue) -> None:
    queue.ping()


@pytest.mark.parametrize("kind", ["sqlite", "redis", "postgres"])
def test_unreachable_backend_is_reported(kind: str, tmp_path: Path) -> None:
    closed_port = free_port()
    if kind == "sqlite":
        not_a_dir = tmp_path / "file"
        not_a_dir.write_text("")
        q = sqlite_queue(not_a_dir / "queue.db")
    elif kind == "redis":
        q = redis_queue(f"redis://:hunter2@127.0.0.1:{closed_port}/0")
    else:
        q = postgres_queue(f"postgresql+psycopg://u:hunter2@127.0.0.1:{closed_port}/db")
    q.register(JobSpec("job"), lambda: None)

    for call in (q.ping, q.pending, lambda: q.enqueue("job")):
        with pytest.raises(BackendUnavailable) as info:
            call()
        assert kind in info.value.message
        assert "hunter2" not in info.value.message


def test_run_worker_in_a_thread_stops_gracefully(queue: HueyQueue) -> None:
    started, finished = threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        time.sleep(0.5)
        finished.set()

    queue.register(JobSpec("slow"), slow)
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            queue.run_worker(workers=2, stop=stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    try:
        queue.enqueue("slow")
        assert started.wait(10)
    finally:
        began = time.monotonic()
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - began < 3
    assert errors == []
    assert finished.is_set()  # the running job finished before the worker returned


def test_postgres_url_becomes_a_libpq_dsn() -> None:
    assert libpq_dsn("postgresql+psycopg://u:p%40ss@h:5432/db?sslmode=require") == (
        "postgresql://u:p%40ss@h:5432/db?sslmode=require"
    )
    assert libpq_dsn("postgres://h/db") == "postgresql://h/db"
    with pytest.raises(ConfigurationError):
        libpq_dsn("mysql://h/db")


def test_timings_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Timing(poll=0)
