"""``RateLimiter.try_acquire`` and ``usage``: the non-blocking side a server uses.

The engine's API rate limit answers 429 instead of waiting, so it needs "take a slot if
there is one, else say how long until there is" without recording refusals. Time is a
fake clock; the one threaded test uses real threads but never sleeps.
"""

from __future__ import annotations

import random
import threading

import pytest

from hybridvideo.stream.ratelimit import RateLimiter


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        raise AssertionError("try_acquire must never sleep")


def limiter(limit: int, per: float, clock: FakeClock) -> RateLimiter:
    return RateLimiter(limit, per, clock=clock, sleep=clock.sleep)


def assert_windows_hold(times: list[float], limit: int, per: float) -> None:
    """No half-open window of ``per`` seconds holds more than ``limit`` grants."""
    assert times == sorted(times)
    for i in range(len(times) - limit):
        assert times[i + limit] >= times[i] + per, (i, times[i], times[i + limit])


def test_lets_the_limit_through_then_says_when_the_oldest_leaves() -> None:
    clock = FakeClock(start=0.0)
    rl = limiter(3, 10.0, clock)
    assert [rl.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    clock.now = 4.0
    assert rl.try_acquire() == pytest.approx(6.0)  # the t=0 requests leave at t=10
    assert rl.try_acquire() == pytest.approx(6.0)  # refusals record nothing
    clock.now = 10.0
    assert rl.try_acquire() == 0.0
    assert rl.try_acquire() == 0.0
    assert rl.try_acquire() == 0.0
    assert rl.try_acquire() == pytest.approx(10.0)  # now the t=10 requests fill it
    assert rl.stats().requests == 6


def test_refused_requests_do_not_count_against_the_window() -> None:
    """A client that waits the answer it got is let through, however often it was refused."""
    clock = FakeClock(start=0.0)
    rl = limiter(2, 1.0, clock)
    rl.try_acquire()
    rl.try_acquire()
    for step in range(50):  # hammering inside the window
        clock.now = step * 0.01
        wait = rl.try_acquire()
        assert wait == pytest.approx(1.0 - clock.now)
    clock.now += wait
    assert rl.try_acquire() == 0.0


@pytest.mark.parametrize("seed", range(6))
def test_random_traffic_never_overfills_a_window(seed: int) -> None:
    rng = random.Random(seed)
    limit, per = rng.choice([(1, 1.0), (5, 1.0), (10, 5.0), (1200, 300.0)])
    clock = FakeClock()
    rl = limiter(limit, per, clock)
    grants: list[float] = []
    for _ in range(limit * 8):
        clock.now += rng.choice([0.0, 0.0, rng.uniform(0, per / limit), rng.uniform(0, per)])
        wait = rl.try_acquire()
        if wait == 0.0:
            grants.append(clock.now)
            continue
        assert wait > 0
        # The promised moment is exactly when the request `limit` grants back ages out.
        assert len(grants) >= limit
        assert clock.now + wait == pytest.approx(grants[-limit] + per, abs=1e-6)
        clock.now += wait
        assert rl.try_acquire() == 0.0
        grants.append(clock.now)
    assert_windows_hold(grants, limit, per)
    assert rl.stats().requests == len(grants)


def test_shares_its_window_with_acquire() -> None:
    clock = FakeClock(start=0.0)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    rl = RateLimiter(2, 5.0, clock=clock, sleep=sleep)
    assert rl.acquire() == 0.0
    assert rl.try_acquire() == 0.0
    assert rl.try_acquire() == pytest.approx(5.0)
    assert rl.acquire() == pytest.approx(5.0)  # blocks until the first ages out
    assert slept == [pytest.approx(5.0)]
    # Both t=0 grants left at t=5: the window holds only acquire's t=5 grant.
    assert rl.try_acquire() == 0.0
    assert rl.try_acquire() == pytest.approx(5.0)


def test_a_pause_refuses_until_its_deadline() -> None:
    clock = FakeClock(start=0.0)
    rl = limiter(100, 1.0, clock)
    rl.penalize(30.0)
    assert rl.try_acquire() == pytest.approx(30.0)
    clock.now = 29.5
    assert rl.try_acquire() == pytest.approx(0.5)
    clock.now = 30.0
    assert rl.try_acquire() == 0.0


def test_usage_reports_what_is_left_and_when_the_next_slot_frees() -> None:
    clock = FakeClock(start=0.0)
    rl = limiter(3, 10.0, clock)
    assert rl.usage() == (0, 0.0)
    rl.try_acquire()
    clock.now = 2.0
    rl.try_acquire()
    assert rl.usage() == (2, pytest.approx(8.0))
    clock.now = 10.0  # the t=0 request just left
    assert rl.usage() == (1, pytest.approx(2.0))
    clock.now = 12.0
    assert rl.usage() == (0, 0.0)


def test_threads_together_never_get_more_than_the_limit() -> None:
    clock = FakeClock(start=0.0)  # frozen: every grant lands in one window
    rl = limiter(25, 60.0, clock)
    granted: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def hammer() -> None:
        start.wait()
        mine = sum(1 for _ in range(100) if rl.try_acquire() == 0.0)
        with lock:
            granted.append(mine)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert sum(granted) == 25 and rl.stats().requests == 25
