"""TokenMinter: local signing, the short cache (hit vs miss), lifetime bounds, fallback."""

from __future__ import annotations

import pytest

from hybridvideo.errors import ConfigurationError
from hybridvideo.playback.minter import MAX_CACHE_ENTRIES, TokenMinter, ip_rules
from hybridvideo.stream.tokens import SigningKey, verify_token

KEY = SigningKey.generate()


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_cache_hit_within_ttl_then_miss() -> None:
    clock = Clock()
    minter = TokenMinter(key=KEY, lifetime=3600, cache_seconds=60, clock=clock)
    first = minter.mint("uid1")
    assert not first.cached
    clock.now += 59
    again = minter.mint("uid1")
    assert again.cached and again.token == first.token and again.expires_at == first.expires_at
    # The remaining lifetime stays at least 90% of the configured one while cached.
    assert again.expires_at - clock.now >= 0.9 * 3600
    clock.now += 2
    fresh = minter.mint("uid1")
    assert not fresh.cached and fresh.token != first.token
    assert fresh.expires_at == int(clock.now) + 3600
    claims = verify_token(fresh.token, keys={KEY.id: KEY.public_key}, now=clock.now)
    assert claims.exp == fresh.expires_at


def test_cache_key_separates_videos_and_rules() -> None:
    minter = TokenMinter(key=KEY, cache_seconds=60, clock=Clock())
    a = minter.mint("uid1")
    assert not minter.mint("uid2").cached
    bound = minter.mint("uid1", ip_rules("192.0.2.1"))
    assert not bound.cached and bound.token != a.token
    assert minter.mint("uid1", ip_rules("192.0.2.1")).cached
    assert not minter.mint("uid1", ip_rules("192.0.2.2")).cached


def test_cache_ttl_is_at_most_a_tenth_of_the_lifetime() -> None:
    assert TokenMinter(key=KEY, lifetime=300, cache_seconds=60).cache_ttl == 30
    assert TokenMinter(key=KEY, lifetime=3600, cache_seconds=60).cache_ttl == 60


def test_cache_off_signs_every_time() -> None:
    clock = Clock()
    minter = TokenMinter(key=KEY, cache_seconds=0, clock=clock)
    assert not minter.mint("uid1").cached
    assert not minter.mint("uid1").cached


def test_cache_is_bounded() -> None:
    clock = Clock()
    minter = TokenMinter(key=KEY, cache_seconds=60, clock=clock)
    minter._cache.update(  # fill without signing 10,000 tokens
        {(f"u{i}", "[]", False): (clock.now, minter.mint("seed")) for i in range(MAX_CACHE_ENTRIES)}
    )
    minter.mint("one-more")
    assert len(minter._cache) == MAX_CACHE_ENTRIES


def test_downloadable_and_ip_rules_are_signed_in() -> None:
    minter = TokenMinter(key=KEY, downloadable=True, clock=Clock())
    token = minter.mint("uid1", ip_rules("2001:db8::1")).token
    claims = verify_token(token, keys={KEY.id: KEY.public_key}, now=Clock().now)
    assert claims.downloadable
    assert claims.allows(client_ip="2001:db8::1", country=None)
    assert not claims.allows(client_ip="2001:db8::2", country=None)


@pytest.mark.parametrize("lifetime", [59, 86_401])
def test_lifetime_bounds(lifetime: int) -> None:
    with pytest.raises(ConfigurationError):
        TokenMinter(key=KEY, lifetime=lifetime)


def test_remote_fallback_only_without_a_key() -> None:
    calls: list[tuple[str, int]] = []
    remote_token = SigningKey.generate()

    def remote(uid: str, seconds: int) -> str:
        calls.append((uid, seconds))
        from hybridvideo.stream.tokens import sign_token

        return sign_token(remote_token, uid, expires_in=seconds, now=Clock().now)

    minter = TokenMinter(key=None, remote=remote, lifetime=600, clock=Clock())
    minted = minter.mint("uid1")
    assert calls == [("uid1", 600)] and minted.expires_at == int(Clock().now) + 600
    assert minter.mint("uid1").cached and len(calls) == 1
    with pytest.raises(ConfigurationError, match="signing key"):
        minter.mint("uid2", ip_rules("192.0.2.1"))
    with pytest.raises(ConfigurationError, match="keys create"):
        TokenMinter(key=None, clock=Clock()).mint("uid1")
