"""Keep Stream API traffic under the account's limit, and retry what may pass.

Cloudflare allows 1,200 API requests per 5 minutes per user, counted over the *whole*
window and shared with the dashboard and every other client of that user. A migration's
worker threads would overrun it in seconds, and each 429 costs a round trip and a wait.

* :class:`RateLimiter` is a sliding-window log: it remembers when the last ``limit``
  requests went out and lets a new one go only once the oldest of them is ``per`` seconds
  old. Unlike a token bucket (which can let ``2 × limit`` through around a refill
  boundary) no window of ``per`` seconds ever holds more than ``limit`` requests, which is
  how Cloudflare counts. One 429's ``Retry-After`` pauses every thread (:meth:`penalize`),
  since the limit is per user, not per thread.
* :class:`RetryPolicy` is full-jitter exponential backoff that never waits less than the
  server's ``Retry-After``, and says which domain errors are worth another attempt.
* :class:`RateLimitedStream` wraps any :class:`~hybridvideo.stream.base.StreamProvider`:
  every API call waits for the limiter, rate limits and outages are retried per the
  policy, permanent refusals are raised at once, and requests are counted (the
  migration's "API requests per video").

Framework-free and thread-safe; time is injectable so tests never sleep. Give the wrapped
client few or no retries of its own (``CloudflareStream(max_retries=0)``): requests the
SDK retries internally are invisible to the limiter and to the counts.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from typing import Any, Literal, TypeVar

from hybridvideo.errors import BackendUnavailable
from hybridvideo.stream.base import (
    KeyMaterial,
    RateLimited,
    StorageUsage,
    StreamProvider,
    StreamVideo,
    WebhookConfig,
)

#: Cloudflare's global API limit: 1,200 requests per 5 minutes per user.
CLOUDFLARE_LIMIT = 1200
CLOUDFLARE_WINDOW = 300.0
#: One step of a ``created`` cursor (Python datetimes count microseconds).
_TICK = timedelta(microseconds=1)
#: The smallest wait: a float deadline minus "now" can round to a step that does not move a
#: clock forward, and a limiter must never spin on it.
_MIN_WAIT = 1e-6

T = TypeVar("T")
Verdict = Literal["retry", "permanent"]


@dataclass(frozen=True, slots=True)
class LimiterStats:
    requests: int
    """Requests let through."""
    waited: float
    """Seconds spent waiting, summed over every thread."""
    penalties: int
    """Times a server's ``Retry-After`` paused everyone."""
    paused_until: float
    """Clock value before which nothing goes out (in the past when not paused)."""


class RateLimiter:
    """At most ``limit`` requests in any ``per`` seconds, shared by every thread."""

    def __init__(
        self,
        limit: int,
        per: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if per <= 0:
            raise ValueError("per must be positive")
        self.limit = limit
        self.per = float(per)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        # When the last `limit` requests went out, oldest first.
        self._sent: deque[float] = deque(maxlen=limit)
        self._paused_until = float("-inf")
        self._requests = 0
        self._waited = 0.0
        self._penalties = 0

    def acquire(self) -> float:
        """Block until one request may go out; returns the clock value it was let through."""
        while True:
            with self._lock:
                now = self._clock()
                if now < self._paused_until:
                    wait = self._paused_until - now
                elif len(self._sent) < self.limit or now >= self._sent[0] + self.per:
                    self._sent.append(now)  # maxlen drops the oldest
                    self._requests += 1
                    return now
                else:
                    wait = self._sent[0] + self.per - now
                wait = max(wait, _MIN_WAIT)
                self._waited += wait
            # Sleep outside the lock; on waking, re-check (another thread may have taken the
            # slot, or a 429 may have paused everyone meanwhile).
            self._sleep(wait)

    def try_acquire(self) -> float:
        """Take one slot now if the window has one, never waiting (a server's check).

        Returns 0.0 when the request is let through (and recorded, as :meth:`acquire`
        would), else the seconds until a slot frees (or the pause ends), recording
        nothing: a refused request does not count against the window, so a client that
        waits that long is let through. Shares the window with :meth:`acquire`.
        """
        with self._lock:
            now = self._clock()
            if now < self._paused_until:
                return max(self._paused_until - now, _MIN_WAIT)
            self._expire(now)
            if len(self._sent) < self.limit:
                self._sent.append(now)
                self._requests += 1
                return 0.0
            return max(self._sent[0] + self.per - now, _MIN_WAIT)

    def usage(self) -> tuple[int, float]:
        """``(requests in the current window, seconds until the oldest of them leaves
        it)``; ``(0, 0.0)`` for an empty window. For rate-limit headers: the remaining
        quota is ``limit - used``, and one more slot frees after the second value."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            if not self._sent:
                return 0, 0.0
            return len(self._sent), max(self._sent[0] + self.per - now, 0.0)

    def _expire(self, now: float) -> None:
        """Forget requests that left the window (caller holds the lock). Consistent with
        :meth:`acquire`, which lets a request through once the oldest is ``per`` old."""
        while self._sent and now >= self._sent[0] + self.per:
            self._sent.popleft()

    def pause_until(self, deadline: float) -> None:
        """Let nothing out before clock value ``deadline`` (a later pause wins)."""
        with self._lock:
            self._paused_until = max(self._paused_until, deadline)

    def penalize(self, retry_after: float) -> None:
        """The server said 429 with ``Retry-After: retry_after``: every thread waits it out."""
        with self._lock:
            self._penalties += 1
            self._paused_until = max(self._paused_until, self._clock() + max(0.0, retry_after))

    def stats(self) -> LimiterStats:
        with self._lock:
            return LimiterStats(
                requests=self._requests,
                waited=self._waited,
                penalties=self._penalties,
                paused_until=self._paused_until,
            )


class RetryPolicy:
    """Full-jitter exponential backoff (``base · 2^(attempt-1)``, at most ``cap``).

    ``attempts`` counts every try, the first included. ``jitter`` is the share of the
    backoff that is random: 1.0 is "full jitter" (uniform in ``[0, backoff]``, which
    spreads many threads' retries best), 0.0 is plain exponential. A server's
    ``Retry-After`` wins when it is longer, capped at ``max_retry_after`` so a
    misbehaving header cannot park a worker for days.
    """

    def __init__(
        self,
        attempts: int = 5,
        base: float = 1.0,
        cap: float = 60.0,
        jitter: float = 1.0,
        *,
        max_retry_after: float = 3600.0,
        rng: random.Random | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        if base <= 0 or cap < base:
            raise ValueError("need 0 < base <= cap")
        if not 0.0 <= jitter <= 1.0:
            raise ValueError("jitter must be within [0, 1]")
        self.attempts = attempts
        self.base = base
        self.cap = cap
        self.jitter = jitter
        self.max_retry_after = max_retry_after
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()

    def backoff(self, attempt: int) -> float:
        """The un-jittered delay after failed attempt ``attempt`` (1-based)."""
        exponent = min(max(0, attempt - 1), 62)  # 2**62 · base is beyond any cap
        return min(self.cap, self.base * 2.0**exponent)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` before the next one."""
        ceiling = self.backoff(attempt)
        with self._rng_lock:
            u = self._rng.random()
        wait = ceiling * (1.0 - self.jitter * u)
        if retry_after is not None and retry_after > 0:
            wait = max(wait, min(retry_after, self.max_retry_after))
        return wait

    @staticmethod
    def classify(exc: BaseException) -> Verdict:
        """``retry`` for rate limits and outages (5xx, timeouts, refused connections), else
        ``permanent``: a refused request, a missing video, bad credentials or a conflict
        will fail the same way every time, and so would an unexpected bug."""
        return "retry" if isinstance(exc, BackendUnavailable) else "permanent"


@dataclass(slots=True)
class RequestCount:
    """API requests made inside one :meth:`RateLimitedStream.counting` block."""

    requests: int = 0
    retries: int = 0


class RateLimitedStream:
    """A :class:`StreamProvider` whose every API call waits for ``limiter`` and is retried
    per ``policy``.

    A 429 pauses *all* threads for its ``Retry-After`` (or the backoff when none came);
    a 5xx or timeout delays only the thread that saw it. After ``policy.attempts`` the
    last error is raised as it came, so callers (the delivery job) still see its
    ``retry_after``. ``copy_from_url`` is retried only after a 429: retrying a timed-out
    copy could create a second one when the first POST did land, so that failure goes
    back to the caller, which looks for the copy by ``meta`` before asking again.
    """

    def __init__(
        self,
        provider: StreamProvider,
        limiter: RateLimiter,
        policy: RetryPolicy,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._provider = provider
        self._limiter = limiter
        self._policy = policy
        self._sleep = sleep
        self._lock = threading.Lock()
        self._requests = 0
        self._retries = 0
        self._local = threading.local()

    @property
    def provider(self) -> StreamProvider:
        return self._provider

    @property
    def requests(self) -> int:
        """API requests made through this wrapper (retries included), all threads."""
        with self._lock:
            return self._requests

    @property
    def retries(self) -> int:
        with self._lock:
            return self._retries

    @contextlib.contextmanager
    def counting(self) -> Iterator[RequestCount]:
        """Count this thread's requests inside the block (one video's, in a worker)."""
        count = RequestCount()
        stack: list[RequestCount] = self._local.__dict__.setdefault("stack", [])
        stack.append(count)
        try:
            yield count
        finally:
            stack.remove(count)

    def _note(self, *, retry: bool) -> None:
        with self._lock:
            self._requests += 1
            self._retries += retry
        for count in self._local.__dict__.get("stack", ()):
            count.requests += 1
            count.retries += retry

    def _call(self, fn: Callable[[], T], *, creates: bool = False) -> T:
        """``creates``: the call makes something at the service (a copy), so only a 429 —
        which makes nothing — is retried here; after a 5xx, timeout or dropped connection
        the request may have landed, and the caller must look before trying again."""
        attempt = 1
        while True:
            self._limiter.acquire()
            self._note(retry=attempt > 1)
            try:
                return fn()
            except Exception as exc:
                unsafe = creates and not isinstance(exc, RateLimited)
                if (
                    unsafe
                    or self._policy.classify(exc) == "permanent"
                    or attempt >= self._policy.attempts
                ):
                    raise
                retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
                wait = self._policy.delay(attempt, retry_after)
                if isinstance(exc, RateLimited):
                    # The limit is per user: every thread holds off, not only this one.
                    self._limiter.penalize(wait)
                else:
                    self._sleep(wait)
                attempt += 1

    # -- StreamProvider ------------------------------------------------------------------

    def copy_from_url(
        self,
        url: str,
        *,
        name: str | None = None,
        meta: Mapping[str, Any] | None = None,
        require_signed_urls: bool = False,
        allowed_origins: Sequence[str] | None = None,
        thumbnail_timestamp_pct: float | None = None,
        creator: str | None = None,
    ) -> StreamVideo:
        return self._call(
            lambda: self._provider.copy_from_url(
                url,
                name=name,
                meta=meta,
                require_signed_urls=require_signed_urls,
                allowed_origins=allowed_origins,
                thumbnail_timestamp_pct=thumbnail_timestamp_pct,
                creator=creator,
            ),
            creates=True,
        )

    def get(self, uid: str) -> StreamVideo:
        return self._call(lambda: self._provider.get(uid))

    def list(
        self,
        *,
        status: str | None = None,
        creator: str | None = None,
        search: str | None = None,
        after: datetime | None = None,
        limit: int = 1000,
    ) -> Iterator[StreamVideo]:
        """Pages here, one limiter slot per page: the inner client is asked for exactly one
        page at a time (``islice`` never pulls the item that would fetch the next page).

        The cursor is ``created`` and ``after`` is exclusive, so videos sharing the last
        item's timestamp would be skipped: the next page starts a microsecond earlier and
        the ones already given are dropped. Only when more than a page shares one instant
        does the cursor jump past it (the rest of that instant is then lost).
        """
        cursor = after
        given_at_boundary: set[str] = set()

        def page() -> list[StreamVideo]:
            inner = self._provider.list(
                status=status, creator=creator, search=search, after=cursor, limit=limit
            )
            return list(islice(inner, limit))

        while True:
            items = self._call(page)
            fresh = [v for v in items if v.uid not in given_at_boundary]
            yield from fresh
            last = items[-1].created if items else None
            if len(items) < limit or last is None:
                return
            at_last = {v.uid for v in items if v.created == last}
            if not fresh:  # a whole page at one instant: step over it
                cursor, given_at_boundary = last, set()
                continue
            given_at_boundary = at_last | (given_at_boundary if cursor == last - _TICK else set())
            cursor = last - _TICK

    def edit(self, uid: str, **changes: Any) -> StreamVideo:
        return self._call(lambda: self._provider.edit(uid, **changes))

    def delete(self, uid: str) -> None:
        self._call(lambda: self._provider.delete(uid))

    def create_signing_key(self) -> KeyMaterial:
        return self._call(self._provider.create_signing_key)

    def revoke_signing_key(self, key_id: str) -> None:
        self._call(lambda: self._provider.revoke_signing_key(key_id))

    def create_token(self, uid: str, *, expires_in: int = 3600) -> str:
        return self._call(lambda: self._provider.create_token(uid, expires_in=expires_in))

    def set_webhook(self, url: str) -> WebhookConfig:
        return self._call(lambda: self._provider.set_webhook(url))

    def get_webhook(self) -> WebhookConfig | None:
        return self._call(self._provider.get_webhook)

    def storage_usage(self) -> StorageUsage:
        return self._call(self._provider.storage_usage)

    def ping(self) -> None:
        self._call(self._provider.ping)


__all__ = [
    "CLOUDFLARE_LIMIT",
    "CLOUDFLARE_WINDOW",
    "LimiterStats",
    "RateLimitedStream",
    "RateLimiter",
    "RequestCount",
    "RetryPolicy",
]
