"""One writer per upload: the lock every tus request that changes an upload takes first.

Why a lock at all: two PATCH requests on one upload (a client that resumed before the
server noticed its dead connection, or two tabs) would both append at the same offset.
The store's offset check catches most of that, but not two writers racing between the
check and the write, and not on a store whose state is eventually consistent (S3). tusd
takes an exclusive lock per upload for the same reason (``docs/_advanced-topics/locks.md``).

The contract is small on purpose: :meth:`UploadLocker.acquire` never blocks unless asked
to, and returns a :class:`LockHandle` or ``None`` (someone else holds it: answer 423).
Two implementations:

* :class:`InProcessLocker`: a map of held ids under a ``threading.Condition``. Right for
  one process (the embedded default); its locks live and die with the process, so a
  crash frees them and there is nothing to expire.
* :class:`RedisLocker`: for several nodes behind a load balancer, which tusd lacks (its
  Redis locker is an open PR). ``SET key token NX PX ttl`` with a random token; release
  is a Lua compare-and-delete, so a holder whose lock already expired and went to someone
  else cannot free the new holder's lock; one heartbeat thread per locker re-arms the TTL
  of every lock it holds every ``ttl / 3``, so a long PATCH keeps its lock while the lock
  of a crashed (or frozen) node expires ``ttl`` after its last heartbeat.

**Losing a lock.** A Redis lock can be lost while held: the node froze past ``ttl``, Redis
was unreachable long enough, or the key was removed by hand. :attr:`LockHandle.lost`
turns true as soon as the holder can no longer be sure it holds the lock (a heartbeat
found another token, or no heartbeat was confirmed for ``ttl`` seconds), and the
:meth:`LockHandle.on_interrupt` callbacks fire. A writer must stop writing then.

**Asking the holder to release** (tusd's lock-release protocol, chosen here because it is
cheap and clean on both implementations): ``acquire(upload_id, wait=s)`` with ``s > 0``
finds the lock held, tells the holder (in process: directly; Redis: a ``PUBLISH`` of the
upload id on ``<namespace>:lock-release``, which every :class:`RedisLocker` subscribes to
on first use and re-sent every :data:`ASK_AGAIN_SECONDS`), then polls until the lock is
free or ``s`` seconds passed. The holder's handle gets :attr:`~LockHandle.release_requested`
and its callbacks fire; a PATCH holder is expected to stop reading its body, keep what it
has written, and release. A holder that ignores the request simply keeps the lock, and the
contender gets ``None`` when its wait runs out.

Blocking: ``acquire`` (Redis: always a network round trip; with ``wait``: sleeps) and
``release`` are blocking calls; async code runs them in a worker thread. Callbacks run on
a thread of the locker (or the contender's), so they must be quick and thread-safe, e.g.
``loop.call_soon_threadsafe(event.set)``.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from types import TracebackType
from typing import Protocol, runtime_checkable

import redis

from hybridvideo.errors import BackendUnavailable, ConfigurationError

log = logging.getLogger("hybridvideo.ingest")

#: How often a waiting contender re-publishes its release request (the holder may have
#: changed, or subscribed after the first request).
ASK_AGAIN_SECONDS = 1.0
#: How often a waiting contender retries ``SET NX`` on Redis.
POLL_SECONDS = 0.05

Callback = Callable[[], None]


@runtime_checkable
class LockHandle(Protocol):
    """Proof of holding one upload's lock, until :meth:`release`."""

    @property
    def upload_id(self) -> str: ...

    @property
    def lost(self) -> bool:
        """True once the lock may belong to someone else: stop writing, then release."""

    @property
    def release_requested(self) -> bool:
        """True once another request asked for this lock (``acquire(..., wait=...)``)."""

    def on_interrupt(self, callback: Callback) -> None:
        """Call ``callback`` once, on the first of lost / release requested (now if already)."""

    def release(self) -> None:
        """Give the lock back; idempotent, never raises, never frees someone else's lock."""

    def __enter__(self) -> LockHandle: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class UploadLocker(Protocol):
    """Hands out at most one :class:`LockHandle` per upload id at a time."""

    def acquire(self, upload_id: str, *, wait: float = 0.0) -> LockHandle | None:
        """The lock, or None if another holds it.

        ``wait=0`` never blocks on the holder and does not disturb it. ``wait > 0`` asks the
        holder to release and retries for up to ``wait`` seconds. Raises
        :class:`~hybridvideo.errors.BackendUnavailable` if the lock store does not answer.
        """

    def ping(self) -> None:
        """Raise :class:`~hybridvideo.errors.BackendUnavailable` unless the store answers."""

    def close(self) -> None:
        """Stop background threads and release the locks still held (best effort)."""


class _Handle:
    """Flags and interrupt callbacks shared by both implementations' handles."""

    def __init__(self, upload_id: str, on_release: Callable[[_Handle], None]) -> None:
        self._upload_id = upload_id
        self._on_release = on_release
        self._state = threading.Lock()
        self._lost = False
        self._release_requested = False
        self._released = False
        self._callbacks: list[Callback] = []

    @property
    def upload_id(self) -> str:
        return self._upload_id

    @property
    def lost(self) -> bool:
        return self._lost

    @property
    def release_requested(self) -> bool:
        return self._release_requested

    @property
    def released(self) -> bool:
        return self._released

    def on_interrupt(self, callback: Callback) -> None:
        with self._state:
            if not (self._lost or self._release_requested):
                self._callbacks.append(callback)
                return
        _call(callback, self._upload_id)

    def release(self) -> None:
        with self._state:
            if self._released:
                return
            self._released = True
            self._callbacks.clear()
        self._on_release(self)

    def __enter__(self) -> _Handle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def _interrupt(self, *, lost: bool) -> None:
        """Mark lost or release-requested; fire the callbacks on the first interrupt only."""
        with self._state:
            if self._released:
                return
            if lost:
                self._lost = True
            else:
                self._release_requested = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            _call(callback, self._upload_id)


def _call(callback: Callback, upload_id: str) -> None:
    try:
        callback()
    except Exception:  # a failing callback must not kill the locker's thread
        log.exception("upload lock interrupt callback failed", extra={"upload_id": upload_id})


def _check_wait(wait: float) -> None:
    if isinstance(wait, bool) or not wait >= 0:
        raise ValueError("wait must be a non-negative number of seconds")


class InProcessLocker:
    """:class:`UploadLocker` for one process: the embedded default."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held: dict[str, _Handle] = {}

    def acquire(self, upload_id: str, *, wait: float = 0.0) -> LockHandle | None:
        _check_wait(wait)
        deadline = time.monotonic() + wait
        asked: set[int] = set()
        while True:
            with self._cond:
                holder = self._held.get(upload_id)
                if holder is None:
                    handle = _Handle(upload_id, self._release)
                    self._held[upload_id] = handle
                    return handle
                if wait <= 0 or time.monotonic() >= deadline:
                    return None
                ask = id(holder) not in asked
                if not ask:
                    self._cond.wait_for(
                        partial(self._moved_on, upload_id, holder),
                        timeout=deadline - time.monotonic(),
                    )
                    continue
            # Outside the condition: the holder's callback may release right away.
            asked.add(id(holder))
            holder._interrupt(lost=False)

    def _moved_on(self, upload_id: str, holder: _Handle) -> bool:
        return self._held.get(upload_id) is not holder

    def _release(self, handle: _Handle) -> None:
        with self._cond:
            if self._held.get(handle.upload_id) is handle:
                del self._held[handle.upload_id]
                self._cond.notify_all()

    def held(self) -> list[str]:
        """Upload ids locked right now (diagnostics and tests)."""
        with self._cond:
            return sorted(self._held)

    def ping(self) -> None:
        return None

    def close(self) -> None:
        with self._cond:
            handles = list(self._held.values())
        for handle in handles:
            handle.release()


# KEYS[1]: the lock key; ARGV[1]: the holder's token; ARGV[2]: the TTL in milliseconds.
_REFRESH = """\
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0"""

_RELEASE = """\
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0"""


class _RedisHandle(_Handle):
    def __init__(
        self,
        upload_id: str,
        key: str,
        token: str,
        confirmed: float,
        ttl: float,
        on_release: Callable[[_Handle], None],
    ) -> None:
        super().__init__(upload_id, on_release)
        self.key = key
        self.token = token
        #: ``time.monotonic()`` just before the last command that set or re-armed the TTL.
        self.confirmed = confirmed
        self._ttl = ttl

    @property
    def lost(self) -> bool:
        # Checked live, not only by the heartbeat: a stalled heartbeat must not let a
        # writer carry on past the moment the key may have expired on the server.
        return self._lost or (not self.released and time.monotonic() - self.confirmed >= self._ttl)


class RedisLocker:
    """:class:`UploadLocker` shared by every node using the same Redis and ``namespace``.

    ``ttl`` is how long a lock outlives its holder's last heartbeat: the delay before an
    upload whose node crashed can be resumed elsewhere, and the longest Redis may be
    unreachable before holders count their locks as lost. Heartbeats run every
    ``refresh_every`` seconds (default ``ttl / 3``). Nothing connects until the first
    :meth:`acquire` or :meth:`ping`, so a server can start while Redis is down.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        ttl: float = 30.0,
        refresh_every: float | None = None,
        namespace: str = "hybridvideo:tus",
        socket_timeout: float = 5.0,
    ) -> None:
        if isinstance(ttl, bool) or not ttl > 0:
            raise ConfigurationError("the upload lock TTL must be positive")
        refresh = ttl / 3 if refresh_every is None else refresh_every
        if not 0 < refresh < ttl:
            raise ConfigurationError("the upload lock heartbeat must be shorter than its TTL")
        self._ttl = float(ttl)
        self._ttl_ms = max(1, round(ttl * 1000))
        self._refresh_every = float(refresh)
        self._prefix = f"{namespace}:lock:"
        self._channel = f"{namespace}:lock-release"
        self._redis = redis.Redis.from_url(
            redis_url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
        )
        self._refresh = self._redis.register_script(_REFRESH)
        self._delete = self._redis.register_script(_RELEASE)
        self._mine: dict[str, _RedisHandle] = {}  # by token
        self._state = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pubsub: redis.client.PubSub | None = None

    @property
    def ttl(self) -> float:
        return self._ttl

    # -- the contract ---------------------------------------------------------------------

    def acquire(self, upload_id: str, *, wait: float = 0.0) -> LockHandle | None:
        _check_wait(wait)
        self._start()
        deadline = time.monotonic() + wait
        next_ask = 0.0
        while True:
            handle = self._try(upload_id)
            if handle is not None:
                return handle
            now = time.monotonic()
            if wait <= 0 or now >= deadline:
                return None
            if now >= next_ask:
                with _unavailable():
                    self._redis.publish(self._channel, upload_id)
                next_ask = now + ASK_AGAIN_SECONDS
            time.sleep(min(POLL_SECONDS, max(0.0, deadline - now)))

    def ping(self) -> None:
        with _unavailable():
            self._redis.ping()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        with self._state:
            handles = list(self._mine.values())
        for handle in handles:
            handle.release()
        if self._pubsub is not None:
            self._pubsub.close()
        self._redis.close()

    # -- internals ------------------------------------------------------------------------

    def _try(self, upload_id: str) -> _RedisHandle | None:
        token = secrets.token_hex(16)
        key = self._prefix + upload_id
        sent = time.monotonic()
        with _unavailable():
            taken = self._redis.set(key, token, nx=True, px=self._ttl_ms)
        if not taken:
            return None
        handle = _RedisHandle(upload_id, key, token, sent, self._ttl, self._forget)
        with self._state:
            self._mine[token] = handle
        return handle

    def _forget(self, handle: _Handle) -> None:
        assert isinstance(handle, _RedisHandle)
        with self._state:
            self._mine.pop(handle.token, None)
        try:
            self._delete(keys=[handle.key], args=[handle.token])
        except redis.RedisError as exc:
            # The key expires within ttl anyway; a release must not fail a request.
            log.warning(
                "upload lock release failed; it expires by itself",
                extra={"upload_id": handle.upload_id, "error": type(exc).__name__},
            )

    def _start(self) -> None:
        """Subscribe to release requests and start the heartbeat, once.

        The subscription is confirmed before the first lock is taken, so no request to
        release a lock of ours can be published before we listen.
        """
        if self._stop.is_set():
            raise RuntimeError("this upload locker is closed")
        if self._threads:
            return
        with self._state:
            if self._threads:
                return
            pubsub = self._redis.pubsub()  # type: ignore[no-untyped-call]  # untyped in redis-py
            with _unavailable():
                pubsub.subscribe(self._channel)
                deadline = time.monotonic() + 5.0
                while True:
                    message = pubsub.get_message(timeout=0.2)
                    if message is not None and message.get("type") == "subscribe":
                        break
                    if time.monotonic() > deadline:
                        pubsub.close()
                        raise redis.TimeoutError("no subscribe confirmation")
            self._pubsub = pubsub
            self._threads = [
                threading.Thread(target=self._heartbeat, name="upload-lock-heartbeat"),
                threading.Thread(target=self._listen, name="upload-lock-release"),
            ]
            for thread in self._threads:
                thread.daemon = True
                thread.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self._refresh_every):
            with self._state:
                handles = list(self._mine.values())
            for handle in handles:
                self._refresh_one(handle)

    def _refresh_one(self, handle: _RedisHandle) -> None:
        sent = time.monotonic()
        try:
            kept = self._refresh(keys=[handle.key], args=[handle.token, self._ttl_ms])
        except redis.RedisError as exc:
            if handle.lost:  # no confirmation for a whole ttl: the key may be gone
                log.warning(
                    "upload lock lost: Redis unreachable for its whole TTL",
                    extra={"upload_id": handle.upload_id, "error": type(exc).__name__},
                )
                self._lose(handle)
            return
        if kept:
            handle.confirmed = sent
            return
        log.warning(
            "upload lock lost: it expired or was taken", extra={"upload_id": handle.upload_id}
        )
        self._lose(handle)

    def _lose(self, handle: _RedisHandle) -> None:
        with self._state:
            self._mine.pop(handle.token, None)
        handle._interrupt(lost=True)

    def _listen(self) -> None:
        pubsub = self._pubsub
        assert pubsub is not None
        while not self._stop.is_set():
            try:
                message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            except redis.RedisError:
                # redis-py reconnects and re-subscribes on the next call.
                self._stop.wait(0.2)
                continue
            if message is None or message.get("type") != "message":
                continue
            data = message.get("data")
            upload_id = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
            with self._state:
                asked = [h for h in self._mine.values() if h.upload_id == upload_id]
            for handle in asked:
                handle._interrupt(lost=False)


@contextmanager
def _unavailable() -> Iterator[None]:
    """Turn redis-py's errors into :class:`BackendUnavailable` at this adapter's edge."""
    try:
        yield
    except redis.RedisError as exc:
        raise BackendUnavailable(
            "the upload lock store is unreachable", detail=f"{type(exc).__name__}: {exc}"
        ) from exc


__all__ = [
    "InProcessLocker",
    "LockHandle",
    "RedisLocker",
    "UploadLocker",
]
