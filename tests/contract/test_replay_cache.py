"""The webhook replay cache contract, for the in-process cache and the Redis one."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from hybridvideo.errors import BackendUnavailable
from hybridvideo.stream.replay_redis import RedisReplayCache
from hybridvideo.stream.webhooks import MemoryReplayCache, ReplayCache
from tests.services import free_port


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def cache(request: pytest.FixtureRequest) -> Iterator[ReplayCache]:
    if request.param == "memory":
        yield MemoryReplayCache()
        return
    url = request.getfixturevalue("redis_url")
    redis_cache = RedisReplayCache(url, namespace=f"t-{uuid.uuid4().hex}")
    yield redis_cache
    redis_cache.close()


def test_the_first_delivery_passes_and_a_replay_does_not(cache: ReplayCache) -> None:
    assert isinstance(cache, ReplayCache)
    key = uuid.uuid4().hex
    assert cache.seen(key, 60) is False
    assert cache.seen(key, 60) is True
    assert cache.seen(uuid.uuid4().hex, 60) is False


def test_entries_expire_after_their_ttl(cache: ReplayCache) -> None:
    key = uuid.uuid4().hex
    assert cache.seen(key, 0.2) is False
    time.sleep(0.35)
    assert cache.seen(key, 60) is False


def test_concurrent_replays_let_exactly_one_through(cache: ReplayCache) -> None:
    key = uuid.uuid4().hex
    results: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def deliver() -> None:
        barrier.wait()
        answer = cache.seen(key, 60)
        with lock:
            results.append(answer)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert sorted(results) == [False] + [True] * 7


def test_bad_ttls_are_refused(cache: ReplayCache) -> None:
    with pytest.raises(ValueError):
        cache.seen("k", 0)


def test_two_nodes_sharing_redis_see_each_others_deliveries(redis_url: str) -> None:
    namespace = f"t-{uuid.uuid4().hex}"
    a, b = (
        RedisReplayCache(redis_url, namespace=namespace),
        RedisReplayCache(redis_url, namespace=namespace),
    )
    try:
        assert a.seen("sig", 60) is False
        assert b.seen("sig", 60) is True
    finally:
        a.close()
        b.close()


def test_an_unreachable_redis_refuses_rather_than_accepts() -> None:
    cache = RedisReplayCache(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.5)
    with pytest.raises(BackendUnavailable):
        cache.seen("sig", 60)
    cache.close()
