"""One contract for every upload locker: the same tests in process and on a real Redis.

A backend gives "nodes": for Redis each node is its own :class:`RedisLocker` (as on separate
servers sharing one Redis), in process every node is the one locker of the process, since
that is the only sharing it supports. Crashes and freezes are real: a holder in a child
process is killed (``SIGKILL``) or frozen (``SIGSTOP``), which only means something for
locks that outlive their process, so those tests run on Redis alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hybridvideo.errors import BackendUnavailable, ConfigurationError
from hybridvideo.ingest.locks import InProcessLocker, LockHandle, RedisLocker, UploadLocker
from tests.services import free_port

TTL = 0.5  # long enough for a busy 2-core machine to heartbeat in time; short to wait for


def wait_until(cond: Callable[[], object], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@dataclass
class Backend:
    kind: str
    redis_url: str | None
    namespace: str = field(default_factory=lambda: f"t{uuid.uuid4().hex}")
    made: list[UploadLocker] = field(default_factory=list)
    _single: InProcessLocker | None = None

    @property
    def shared(self) -> bool:
        """Whether locks outlive their process and separate nodes exclude each other."""
        return self.kind == "redis"

    def node(self, ttl: float = TTL) -> UploadLocker:
        if self.redis_url is None:
            if self._single is None:
                self._single = InProcessLocker()
                self.made.append(self._single)
            return self._single
        locker = RedisLocker(self.redis_url, ttl=ttl, namespace=self.namespace)
        self.made.append(locker)
        return locker


@pytest.fixture(params=["in_process", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    b = Backend(request.param, url)
    yield b
    for locker in b.made:
        locker.close()


@pytest.fixture
def shared(redis_url: str) -> Iterator[Backend]:
    """Only Redis: these cases are about locks that outlive a process and span nodes."""
    b = Backend("redis", redis_url)
    yield b
    for locker in b.made:
        locker.close()


def uid() -> str:
    return uuid.uuid4().hex


def must(handle: LockHandle | None) -> LockHandle:
    assert handle is not None
    return handle


def acquire_within(locker: UploadLocker, upload: str, timeout: float = 5.0) -> LockHandle:
    """Poll with plain (non-waiting) acquires until the lock is free."""
    deadline = time.monotonic() + timeout
    while (handle := locker.acquire(upload)) is None:
        assert time.monotonic() < deadline, f"{upload} still locked after {timeout} s"
        time.sleep(0.02)
    return handle


def test_acquire_is_exclusive(backend: Backend) -> None:
    a, b = backend.node(), backend.node()
    upload = uid()
    held = must(a.acquire(upload))
    assert held.upload_id == upload and not held.lost and not held.release_requested
    assert b.acquire(upload) is None
    assert a.acquire(upload) is None  # not re-entrant: a second request on one node waits too
    other = must(b.acquire(uid()))  # other uploads are independent
    other.release()
    held.release()


def test_release_then_reacquire(backend: Backend) -> None:
    a, b = backend.node(), backend.node()
    upload = uid()
    with must(a.acquire(upload)) as first:
        assert b.acquire(upload) is None
    assert first.release_requested is False
    second = must(b.acquire(upload))
    assert a.acquire(upload) is None
    second.release()
    second.release()  # idempotent
    must(a.acquire(upload)).release()


def test_release_is_owner_checked(backend: Backend) -> None:
    """A stale handle's release never frees the lock of whoever holds it now."""
    a, b, c = backend.node(), backend.node(), backend.node()
    upload = uid()
    stale = must(a.acquire(upload))
    stale.release()
    current = must(b.acquire(upload))
    stale.release()  # late or repeated release by the former holder
    assert c.acquire(upload) is None
    assert not current.lost
    current.release()


def test_heartbeat_keeps_a_long_holder(backend: Backend) -> None:
    a, b = backend.node(), backend.node()
    upload = uid()
    held = must(a.acquire(upload))
    interrupted = threading.Event()
    held.on_interrupt(interrupted.set)
    time.sleep(TTL * 3)  # a long PATCH: several TTLs
    assert b.acquire(upload) is None
    assert not held.lost and not interrupted.is_set()
    held.release()
    acquire_within(b, upload).release()


def test_wait_asks_the_holder_to_release(backend: Backend) -> None:
    a, b = backend.node(), backend.node()
    upload = uid()
    held = must(a.acquire(upload))
    asked = threading.Event()
    held.on_interrupt(asked.set)

    def holder() -> None:  # what a PATCH does: notice, stop, keep its bytes, release
        if asked.wait(5):
            held.release()

    worker = threading.Thread(target=holder)
    worker.start()
    started = time.monotonic()
    taken = must(b.acquire(upload, wait=5.0))
    worker.join()
    assert held.release_requested and not held.lost
    assert time.monotonic() - started < 4.0
    taken.release()


def test_wait_gives_up_when_the_holder_keeps_it(backend: Backend) -> None:
    a, b = backend.node(), backend.node()
    upload = uid()
    held = must(a.acquire(upload))
    assert b.acquire(upload) is None
    assert not held.release_requested  # a plain (wait=0) attempt does not disturb the holder
    started = time.monotonic()
    assert b.acquire(upload, wait=0.3) is None
    assert time.monotonic() - started >= 0.3
    assert wait_until(lambda: held.release_requested)
    calls: list[str] = []
    held.on_interrupt(lambda: calls.append("late"))  # registered after the fact: runs now
    assert calls == ["late"]
    held.release()


def test_threads_never_hold_one_upload_together(backend: Backend) -> None:
    nodes = [backend.node(), backend.node()]
    upload = uid()
    inside = 0
    overlaps = 0
    wins = 0
    guard = threading.Lock()

    def contend(locker: UploadLocker) -> None:
        nonlocal inside, overlaps, wins
        for _ in range(40):
            handle = locker.acquire(upload)
            if handle is None:
                time.sleep(0.001)
                continue
            with guard:
                inside += 1
                overlaps += inside > 1
                wins += 1
            time.sleep(0.002)
            with guard:
                inside -= 1
            handle.release()

    threads = [threading.Thread(target=contend, args=(nodes[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == 0
    assert wins >= 8  # the lock really changed hands


def test_separate_nodes_exclude_each_other(shared: Backend) -> None:
    a, b = shared.node(), shared.node()
    assert a is not b
    upload = uid()
    held = must(a.acquire(upload))
    assert b.acquire(upload) is None
    held.release()
    must(b.acquire(upload)).release()


# -- holders in a child process: crashed and frozen nodes ------------------------------------

HOLDER = """
import sys
from hybridvideo.ingest.locks import RedisLocker
url, namespace, upload, ttl = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
locker = RedisLocker(url, ttl=ttl, namespace=namespace)
handle = locker.acquire(upload)
print("held" if handle else "busy", flush=True)
for line in sys.stdin:
    command = line.strip()
    if command == "status":
        print(f"lost={handle.lost}", flush=True)
    elif command == "release":
        handle.release()
        print("released", flush=True)
    elif command == "exit":
        break
"""


class Holder:
    """A lock holder in its own process (another node)."""

    def __init__(self, shared: Backend, upload: str, ttl: float) -> None:
        assert shared.redis_url is not None
        src = str(Path(__file__).parents[2] / "src")
        env = {**os.environ, "PYTHONPATH": src}
        args = [shared.redis_url, shared.namespace, upload, str(ttl)]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.ask_line() == "held"

    def ask_line(self, command: str | None = None) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def holders(shared: Backend) -> Iterator[Callable[[str, float], Holder]]:
    made: list[Holder] = []

    def make(upload: str, ttl: float) -> Holder:
        holder = Holder(shared, upload, ttl)
        made.append(holder)
        return holder

    yield make
    for holder in made:
        holder.close()


def test_a_crashed_holders_lock_expires(
    shared: Backend, holders: Callable[[str, float], Holder]
) -> None:
    upload = uid()
    ttl = 0.3
    holder = holders(upload, ttl)
    survivor = shared.node()
    assert survivor.acquire(upload) is None
    holder.proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    holder.proc.wait(timeout=10)
    assert survivor.acquire(upload) is None  # the crash itself frees nothing ...
    taken = acquire_within(survivor, upload)  # ... the TTL after the last heartbeat does
    # The last heartbeat came at most ttl/3 before the kill.
    assert time.monotonic() - killed >= ttl - ttl / 3 - 0.05
    taken.release()


def test_a_frozen_holder_loses_its_lock_and_cannot_free_the_new_one(
    shared: Backend, holders: Callable[[str, float], Holder]
) -> None:
    upload = uid()
    ttl = 0.3
    holder = holders(upload, ttl)
    node = shared.node()
    holder.proc.send_signal(signal.SIGSTOP)  # a frozen VM, a long GC pause
    try:
        assert node.acquire(upload) is None
        taken = acquire_within(node, upload)
    finally:
        holder.proc.send_signal(signal.SIGCONT)
    assert holder.ask_line("status") == "lost=True"
    assert holder.ask_line("release") == "released"  # compare-and-delete: not ours any more
    third = shared.node()
    assert third.acquire(upload) is None
    time.sleep(ttl * 2)
    assert third.acquire(upload) is None and not taken.lost  # still held and refreshed
    taken.release()
    must(third.acquire(upload)).release()


def test_a_holder_learns_when_its_lock_is_gone(shared: Backend) -> None:
    """Redis lost the key (expiry after an outage, a flush): the heartbeat notices."""
    import redis

    assert shared.redis_url is not None
    upload = uid()
    held = must(shared.node().acquire(upload))
    gone = threading.Event()
    held.on_interrupt(gone.set)
    raw = redis.Redis.from_url(shared.redis_url)
    try:
        assert raw.delete(f"{shared.namespace}:lock:{upload}") == 1
    finally:
        raw.close()
    assert gone.wait(TTL * 3)
    assert held.lost and not held.release_requested
    held.release()


# -- Redis specifics -------------------------------------------------------------------------


def test_a_closed_redis_locker_refuses_work(shared: Backend) -> None:
    locker = shared.node()
    held = must(locker.acquire(uid()))
    locker.close()  # releases what it still held
    must(shared.node().acquire(held.upload_id)).release()  # at once, not after the TTL
    with pytest.raises(RuntimeError):
        locker.acquire(uid())


def test_redis_down_is_backend_unavailable() -> None:
    locker = RedisLocker(f"redis://127.0.0.1:{free_port()}/0", ttl=1.0, socket_timeout=0.5)
    try:
        with pytest.raises(BackendUnavailable):
            locker.ping()
        with pytest.raises(BackendUnavailable):
            locker.acquire(uid())
    finally:
        locker.close()


@pytest.mark.parametrize(("ttl", "refresh"), [(0, None), (-1.0, None), (1.0, 1.0), (1.0, 0)])
def test_redis_timings_are_checked(ttl: float, refresh: float | None) -> None:
    with pytest.raises(ConfigurationError):
        RedisLocker("redis://127.0.0.1:1/0", ttl=ttl, refresh_every=refresh)
