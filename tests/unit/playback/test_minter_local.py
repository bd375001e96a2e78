"""``TokenMinter.mint_local``: never the network (the event loop calls it)."""

from __future__ import annotations

from hybridvideo.playback.minter import TokenMinter
from hybridvideo.stream.tokens import SigningKey

KEY = SigningKey.generate()


def test_signs_locally_with_a_key() -> None:
    minted = TokenMinter(key=KEY, cache_seconds=0).mint_local("uid1")
    assert minted is not None and not minted.cached


def test_without_a_key_only_the_cache_answers() -> None:
    calls: list[str] = []

    def remote(uid: str, lifetime: int) -> str:
        calls.append(uid)
        return "header.eyJleHAiOiA0MTAyNDQ0ODAwfQ.signature"  # {"exp": 4102444800}

    minter = TokenMinter(key=None, remote=remote, cache_seconds=60)
    assert minter.mint_local("uid1") is None
    assert calls == []
    first = minter.mint("uid1")
    assert calls == ["uid1"] and first.expires_at == 4102444800
    again = minter.mint_local("uid1")
    assert again is not None and again.cached and again.token == first.token
    assert calls == ["uid1"]
    assert TokenMinter(key=None, remote=remote, cache_seconds=0).mint_local("uid1") is None
