"""The Stream rate limiter, retry policy and rate-limited client wrapper.

Time is a fake clock whose ``sleep`` moves it forward, so nothing here sleeps except the
one multi-thread test (bounded, real threads need a real clock). The scripted provider
stands in for Cloudflare's API, which cannot run here.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hybridvideo.config import load_settings
from hybridvideo.errors import (
    BackendUnavailable,
    ConfigurationError,
    Conflict,
    HybridVideoError,
    InvalidInput,
    NotFound,
)
from hybridvideo.stream.base import (
    KeyMaterial,
    RateLimited,
    StorageUsage,
    StreamAuthError,
    StreamProvider,
    StreamVideo,
    WebhookConfig,
)
from hybridvideo.stream.ratelimit import RateLimitedStream, RateLimiter, RetryPolicy


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "the limiter must never ask for a zero or negative sleep"
        self.slept.append(seconds)
        self.now += seconds


def limiter(limit: int, per: float, clock: FakeClock) -> RateLimiter:
    return RateLimiter(limit, per, clock=clock, sleep=clock.sleep)


def assert_windows_hold(times: list[float], limit: int, per: float) -> None:
    """No half-open window of ``per`` seconds holds more than ``limit`` grants."""
    assert times == sorted(times)
    for i in range(len(times) - limit):
        assert times[i + limit] >= times[i] + per, (i, times[i], times[i + limit])


# -- RateLimiter ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_no_window_ever_holds_more_than_limit_and_no_request_waits_needlessly(
    seed: int,
) -> None:
    rng = random.Random(seed)
    limit, per = rng.choice([(1, 1.0), (3, 2.0), (10, 5.0), (50, 300.0)])
    clock = FakeClock()
    rl = limiter(limit, per, clock)
    grants: list[float] = []
    for _ in range(limit * 12):
        # Bursts (no gap), short gaps and idle stretches longer than a window.
        clock.now += rng.choice(
            [0.0, 0.0, 0.0, rng.uniform(0, per / limit), rng.uniform(0, 2 * per)]
        )
        arrival = clock.now
        granted = rl.acquire()
        assert granted == clock.now and granted >= arrival
        # Work-conserving: it waits exactly until the request `limit` back is `per` old.
        earliest = max(arrival, grants[-limit] + per) if len(grants) >= limit else arrival
        assert granted == pytest.approx(earliest, abs=1e-5)
        grants.append(granted)
    assert_windows_hold(grants, limit, per)
    stats = rl.stats()
    assert stats.requests == len(grants)
    assert stats.waited == pytest.approx(sum(clock.slept))


def test_a_window_boundary_does_not_let_twice_the_limit_through() -> None:
    """A token bucket refilled at t=per would let 2×limit out within ~2 ms here."""
    clock = FakeClock(start=0.0)
    rl = limiter(5, 10.0, clock)
    rl.acquire()  # t=0, then idle almost a whole window
    clock.now = 9.999
    burst = [rl.acquire() for _ in range(4)]  # the window [0, 10) is now full
    assert burst == [9.999] * 4
    clock.now = 10.001
    after_edge = [rl.acquire() for _ in range(5)]
    # Only the t=0 request has aged out: one goes at once, the rest wait for the burst's.
    assert after_edge[0] == 10.001
    assert all(t >= 19.999 for t in after_edge[1:])
    assert_windows_hold([0.0, *burst, *after_edge], 5, 10.0)


def test_penalize_stops_everyone_until_the_deadline() -> None:
    clock = FakeClock(start=0.0)
    rl = limiter(100, 1.0, clock)
    rl.acquire()
    rl.penalize(30.0)
    rl.penalize(5.0)  # a shorter, later 429 does not shorten the pause
    assert rl.acquire() == pytest.approx(30.0)
    assert rl.acquire() == pytest.approx(30.0)  # after the pause, the window rules again
    rl.pause_until(45.0)
    assert rl.acquire() == pytest.approx(45.0)
    stats = rl.stats()
    assert stats.penalties == 2 and stats.requests == 4
    assert stats.waited == pytest.approx(45.0)


def test_penalize_is_seen_by_a_thread_already_waiting() -> None:
    """A thread asleep for the window wakes, sees the pause, and sleeps again."""
    clock = FakeClock(start=0.0)
    woke: list[float] = []

    def sleep(seconds: float) -> None:
        woke.append(clock.now)
        if len(woke) == 1:
            rl.penalize(100.0)  # another thread got a 429 while we slept
        clock.sleep(seconds)

    rl = RateLimiter(1, 1.0, clock=clock, sleep=sleep)
    rl.acquire()
    assert rl.acquire() == pytest.approx(100.0)  # penalized at t=0 for 100 s


def test_limiter_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0, 1.0)
    with pytest.raises(ValueError):
        RateLimiter(1, 0.0)


def test_many_threads_share_one_window() -> None:
    """Real threads, real clock: 200 acquisitions at 50 per 0.5 s take ≥ 1.5 s, < 3 s."""
    rl = RateLimiter(50, 0.5)
    grants: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(25):
            t = rl.acquire()
            with lock:
                grants.append(t)

    started = time.monotonic()
    threads = [threading.Thread(target=work) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=5)
    elapsed = time.monotonic() - started
    assert not any(th.is_alive() for th in threads)
    assert len(grants) == 200
    assert_windows_hold(sorted(grants), 50, 0.5)
    assert 1.5 <= elapsed < 3.0
    assert rl.stats().requests == 200


# -- RetryPolicy ---------------------------------------------------------------------------


def test_full_jitter_stays_within_the_exponential_ceiling() -> None:
    policy = RetryPolicy(attempts=8, base=2.0, cap=30.0, jitter=1.0, rng=random.Random(7))
    ceilings = [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    for attempt, ceiling in enumerate(ceilings, start=1):
        delays = [policy.delay(attempt) for _ in range(300)]
        assert all(0.0 <= d <= ceiling for d in delays)
        # Full jitter really spreads: both halves of the range are used.
        assert min(delays) < ceiling * 0.2 and max(delays) > ceiling * 0.8


def test_partial_and_no_jitter() -> None:
    half = RetryPolicy(attempts=3, base=1.0, cap=10.0, jitter=0.5, rng=random.Random(1))
    assert all(2.0 <= half.delay(3) <= 4.0 for _ in range(200))
    none = RetryPolicy(attempts=3, base=1.0, cap=10.0, jitter=0.0)
    assert [none.delay(a) for a in (1, 2, 3, 4, 5, 99)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_retry_after_wins_when_longer_and_is_capped() -> None:
    policy = RetryPolicy(attempts=3, base=1.0, cap=10.0, jitter=1.0, max_retry_after=600.0)
    assert all(policy.delay(1, retry_after=42.0) == 42.0 for _ in range(50))
    assert policy.delay(1, retry_after=10_000.0) == 600.0
    fixed = RetryPolicy(attempts=3, base=8.0, cap=8.0, jitter=0.0)
    assert fixed.delay(1, retry_after=3.0) == 8.0  # the backoff is longer: it wins
    assert fixed.delay(1, retry_after=0.0) == 8.0


@pytest.mark.parametrize(
    ("exc", "verdict"),
    [
        (RateLimited("429", retry_after=3.0), "retry"),
        (BackendUnavailable("503"), "retry"),
        (InvalidInput("bad url"), "permanent"),
        (NotFound("gone"), "permanent"),
        (StreamAuthError("bad token"), "permanent"),
        (Conflict("clash"), "permanent"),
        (RuntimeError("bug"), "permanent"),
    ],
)
def test_classify(exc: Exception, verdict: str) -> None:
    assert RetryPolicy.classify(exc) == verdict


# -- RateLimitedStream ---------------------------------------------------------------------


def video(uid: str, created: datetime | None = None) -> StreamVideo:
    return StreamVideo(
        uid=uid,
        state="ready",
        pct_complete=100.0,
        ready_to_stream=True,
        error_code=None,
        error_text=None,
        duration=1.0,
        width=64,
        height=64,
        size=10,
        require_signed_urls=False,
        thumbnail=None,
        hls=None,
        dash=None,
        creator=None,
        created=created,
    )


class ScriptedStream:
    """A StreamProvider that fails with scripted errors, then answers (a stand-in for
    Cloudflare's API). Records every call it receives."""

    def __init__(
        self, errors: Sequence[HybridVideoError] = (), on_call: Callable[[], None] | None = None
    ) -> None:
        self.errors = list(errors)
        self.calls: list[str] = []
        self.on_call = on_call
        self.videos = [
            video(f"v{i}", datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=i))
            for i in range(5)
        ]

    def _hit(self, what: str) -> None:
        self.calls.append(what)
        if self.on_call:
            self.on_call()
        if self.errors:
            raise self.errors.pop(0)

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
        self._hit(f"copy {url} {name} {dict(meta or {})} {require_signed_urls} {creator}")
        return video("copied")

    def get(self, uid: str) -> StreamVideo:
        self._hit(f"get {uid}")
        return video(uid)

    def list(
        self,
        *,
        status: str | None = None,
        creator: str | None = None,
        search: str | None = None,
        after: datetime | None = None,
        limit: int = 1000,
    ) -> Iterator[StreamVideo]:
        # Like the real client: pages of `limit`, one request each, lazily.
        cursor = after
        while True:
            self._hit(f"list after={cursor.minute if cursor else None}")
            page = [v for v in self.videos if cursor is None or (v.created and v.created > cursor)]
            page = page[:limit]
            yield from page
            if len(page) < limit:
                return
            cursor = page[-1].created

    def edit(self, uid: str, **changes: Any) -> StreamVideo:
        self._hit(f"edit {uid} {changes}")
        return video(uid)

    def delete(self, uid: str) -> None:
        self._hit(f"delete {uid}")

    def create_signing_key(self) -> KeyMaterial:
        self._hit("create key")
        return KeyMaterial(id="k", pem="p", jwk="j", created=None)

    def revoke_signing_key(self, key_id: str) -> None:
        self._hit(f"revoke {key_id}")

    def create_token(self, uid: str, *, expires_in: int = 3600) -> str:
        self._hit(f"token {uid} {expires_in}")
        return "tok"

    def set_webhook(self, url: str) -> WebhookConfig:
        self._hit(f"set webhook {url}")
        return WebhookConfig(notification_url=url, secret="s", modified=None)

    def get_webhook(self) -> WebhookConfig | None:
        self._hit("get webhook")
        return None

    def storage_usage(self) -> StorageUsage:
        self._hit("usage")
        return StorageUsage(total_minutes=1.0, limit_minutes=None, video_count=1)

    def ping(self) -> None:
        self._hit("ping")


def wrap(
    provider: StreamProvider, clock: FakeClock, *, attempts: int = 4, limit: int = 100
) -> tuple[RateLimitedStream, RateLimiter]:
    rl = limiter(limit, 300.0, clock)
    policy = RetryPolicy(attempts=attempts, base=1.0, cap=8.0, jitter=1.0, rng=random.Random(3))
    return RateLimitedStream(provider, rl, policy, sleep=clock.sleep), rl


def test_it_is_a_stream_provider_and_delegates_every_method() -> None:
    clock = FakeClock()
    inner = ScriptedStream()
    stream, rl = wrap(inner, clock)
    assert isinstance(stream, StreamProvider)
    assert (
        stream.copy_from_url("http://a/v.mp4", name="n", meta={"id": "1"}, creator="c").uid
        == "copied"
    )
    assert stream.get("u1").uid == "u1"
    assert stream.edit("u1", require_signed_urls=True).uid == "u1"
    stream.delete("u1")
    assert stream.create_signing_key().id == "k"
    stream.revoke_signing_key("k")
    assert stream.create_token("u1", expires_in=60) == "tok"
    assert stream.set_webhook("http://hook").notification_url == "http://hook"
    assert stream.get_webhook() is None
    assert stream.storage_usage().video_count == 1
    stream.ping()
    assert inner.calls == [
        "copy http://a/v.mp4 n {'id': '1'} False c",
        "get u1",
        "edit u1 {'require_signed_urls': True}",
        "delete u1",
        "create key",
        "revoke k",
        "token u1 60",
        "set webhook http://hook",
        "get webhook",
        "usage",
        "ping",
    ]
    assert stream.requests == rl.stats().requests == 11
    assert stream.retries == 0


def test_a_429_pauses_everyone_then_the_call_succeeds() -> None:
    clock = FakeClock(start=0.0)
    inner = ScriptedStream([RateLimited("429", retry_after=20.0)])
    stream, rl = wrap(inner, clock)
    assert stream.get("u1").uid == "u1"
    assert inner.calls == ["get u1", "get u1"]
    assert clock.now == pytest.approx(20.0)  # Retry-After beat the ≤1 s backoff
    assert rl.stats().penalties == 1
    # The pause was the limiter's: any other thread's call would have waited too.
    assert rl.stats().paused_until == pytest.approx(20.0)
    assert stream.requests == 2 and stream.retries == 1


def test_outages_are_retried_with_backoff_on_this_thread_only() -> None:
    clock = FakeClock(start=0.0)
    inner = ScriptedStream([BackendUnavailable("503"), BackendUnavailable("timeout")])
    stream, rl = wrap(inner, clock)
    stream.delete("u1")
    assert inner.calls == ["delete u1"] * 3
    assert len(clock.slept) == 2 and 0 < clock.slept[0] <= 1.0 and 0 < clock.slept[1] <= 2.0
    assert rl.stats().penalties == 0


def test_gives_up_after_the_attempts_with_the_last_error() -> None:
    clock = FakeClock(start=0.0)
    last = RateLimited("still 429", retry_after=7.0)
    inner = ScriptedStream([BackendUnavailable("503"), RateLimited("429", retry_after=1.0), last])
    stream, _ = wrap(inner, clock, attempts=3)
    with pytest.raises(RateLimited) as info:
        stream.get("u1")
    assert info.value is last and info.value.retry_after == 7.0
    assert len(inner.calls) == 3


@pytest.mark.parametrize(
    "error",
    [InvalidInput("bad url"), NotFound("gone"), StreamAuthError("bad token"), Conflict("x")],
)
def test_permanent_errors_are_never_retried(error: HybridVideoError) -> None:
    clock = FakeClock(start=0.0)
    inner = ScriptedStream([error])
    stream, rl = wrap(inner, clock)
    with pytest.raises(type(error)) as info:
        stream.copy_from_url("http://a/v.mp4")
    assert info.value is error
    assert len(inner.calls) == 1 and clock.slept == [] and rl.stats().penalties == 0


def test_a_copy_is_retried_after_a_429_but_never_after_a_failure_that_may_have_landed() -> None:
    clock = FakeClock(start=0.0)
    inner = ScriptedStream([RateLimited("429", retry_after=2.0)])
    stream, rl = wrap(inner, clock)
    assert stream.copy_from_url("http://a/v.mp4").uid
    assert len(inner.calls) == 2 and rl.stats().penalties == 1  # 429 made nothing: retried
    for error in (BackendUnavailable("timed out"), BackendUnavailable("500")):
        inner = ScriptedStream([error])
        stream, _ = wrap(inner, clock)
        with pytest.raises(BackendUnavailable) as info:
            stream.copy_from_url("http://a/v.mp4")
        assert info.value is error and len(inner.calls) == 1


def test_every_call_waits_for_the_limiter() -> None:
    clock = FakeClock(start=0.0)
    stream, _ = wrap(ScriptedStream(), clock, limit=2)
    times = []
    for _ in range(5):
        stream.get("u")
        times.append(clock.now)
    assert times == [0.0, 0.0, 300.0, 300.0, 600.0]


def test_list_takes_one_slot_per_page_and_retries_a_page() -> None:
    clock = FakeClock(start=0.0)
    inner = ScriptedStream()
    stream, rl = wrap(inner, clock)
    inner.errors = [RateLimited("429", retry_after=2.0)]
    uids = [v.uid for v in stream.list(limit=2)]
    assert uids == ["v0", "v1", "v2", "v3", "v4"]
    # pages: (429, retry) 0-1, 2-3, 4 — never a request for the page after a full page
    # until it is needed, and never one per item.
    # Each page starts a microsecond before the last item seen (ties are not skipped), so
    # pages overlap by one item.
    assert inner.calls == [
        "list after=None",
        "list after=None",
        "list after=0",
        "list after=1",
        "list after=2",
        "list after=3",
    ]
    assert stream.requests == rl.stats().requests == 6


def test_list_never_skips_videos_that_share_the_last_items_instant() -> None:
    clock = FakeClock(start=0.0)
    inner = ScriptedStream()
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    inner.videos = [video(f"v{i}", t0 + timedelta(seconds=i // 2)) for i in range(8)]
    stream, _ = wrap(inner, clock)
    assert [v.uid for v in stream.list(limit=3)] == [f"v{i}" for i in range(8)]
    # More than a page at one instant: the cursor steps over it rather than spin.
    inner.videos = [video(f"w{i}", t0) for i in range(5)] + [video("later", t0 + timedelta(1))]
    assert [v.uid for v in stream.list(limit=2)] == ["w0", "w1", "later"]


def test_counting_gives_one_threads_requests() -> None:
    clock = FakeClock(start=0.0)
    inner = ScriptedStream()
    stream, _ = wrap(inner, clock)
    other_done = threading.Event()

    def other() -> None:
        stream.get("elsewhere")
        other_done.set()

    with stream.counting() as mine:
        inner.errors = [BackendUnavailable("503")]
        stream.get("first")
        stream.get("copied")
        th = threading.Thread(target=other)
        th.start()
        th.join(timeout=5)
    assert other_done.is_set()
    assert (mine.requests, mine.retries) == (3, 1)
    assert stream.requests == 4
    stream.get("after")
    assert mine.requests == 3


def test_settings_default_to_cloudflares_limit_and_are_configurable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = load_settings()
    assert (s.stream_rate_limit, s.stream_rate_window) == (1200, 300.0)
    monkeypatch.setenv("HYBRIDVIDEO_STREAM_RATE_LIMIT", "600")
    monkeypatch.setenv("HYBRIDVIDEO_STREAM_RATE_WINDOW", "60")
    s = load_settings()
    assert (s.stream_rate_limit, s.stream_rate_window) == (600, 60.0)
    monkeypatch.setenv("HYBRIDVIDEO_STREAM_RATE_LIMIT", "0")
    with pytest.raises(ConfigurationError, match="HYBRIDVIDEO_STREAM_RATE_LIMIT"):
        load_settings()
