"""A webhook :class:`~hybridvideo.stream.webhooks.ReplayCache` shared by every node.

Behind a load balancer each Stream delivery reaches one of several servers; a replay sent
to another node than the original would pass an in-process cache. ``SET key 1 NX PX ttl``
is the atomic "remember unless already remembered" the protocol asks for, and the key
expires by itself when the signature would be stale anyway.
"""

from __future__ import annotations

import hashlib

import redis

from hybridvideo.errors import BackendUnavailable


class RedisReplayCache:
    def __init__(
        self, redis_url: str, *, namespace: str = "hybridvideo", socket_timeout: float = 5.0
    ) -> None:
        self._redis = redis.Redis.from_url(
            redis_url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
        )
        self._prefix = f"{namespace}:webhook-seen:"

    def seen(self, key: str, ttl: float) -> bool:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        # Keys are signatures (hex) today; hashing bounds whatever a caller passes.
        name = self._prefix + hashlib.sha256(key.encode()).hexdigest()
        try:
            fresh = self._redis.set(name, b"1", nx=True, px=max(1, round(ttl * 1000)))
        except redis.RedisError as exc:
            # Refusing beats accepting a replay: the sender retries a 503 later.
            raise BackendUnavailable(
                "the webhook replay store is unreachable", detail=str(exc)
            ) from exc
        return not fresh

    def close(self) -> None:
        self._redis.close()
