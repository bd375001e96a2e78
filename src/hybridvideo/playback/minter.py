"""Stream playback tokens for the playback endpoint: signed here, reused for a moment.

Signing locally with the Stream signing key (``stream/tokens.py``, RS256) is what
Cloudflare recommends for volume: its ``/token`` endpoint is rate limited and meant for a
few hundred tokens a day, so it is only the fallback when no key is configured.

An RSA signature costs ~0.3 ms of CPU; a burst (a page of 50 thumbnails, a live premiere)
asks for the same video with the same rules many times. Tokens are stateless and valid
until ``exp``, so one minted token may serve every identical request for a short while:
the cache key is everything that goes into the token (video uid, access rules,
``downloadable``), never the viewer (who is authorized before this point). An entry lives
at most ``cache_seconds`` and never longer than a tenth of the lifetime, so a viewer
always gets at least 90% of the configured lifetime, and ``expires_at`` reported with a
token is that token's own ``exp``.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hybridvideo.errors import ConfigurationError
from hybridvideo.stream.tokens import MAX_TOKEN_LIFETIME, AccessRule, SigningKey, sign_token

log = logging.getLogger("hybridvideo.playback")

#: Entries kept at most (distinct videos x rule sets); the oldest go first.
MAX_CACHE_ENTRIES = 10_000
#: A cached token is reused for at most this fraction of its lifetime.
CACHE_FRACTION = 0.1


@dataclass(frozen=True)
class MintedToken:
    token: str
    #: Unix seconds: the token's own ``exp``.
    expires_at: int
    #: True when this token came from the cache (tests and benchmarks read it).
    cached: bool = False


def ip_rules(client_ip: str) -> tuple[AccessRule, ...]:
    """Allow this address, block every other: a token that plays only where it was asked."""
    return (
        AccessRule(type="ip.src", action="allow", ip=(client_ip,)),
        AccessRule(type="any", action="block"),
    )


class TokenMinter:
    def __init__(
        self,
        *,
        key: SigningKey | None,
        remote: Callable[[str, int], str] | None = None,
        lifetime: int = 3600,
        cache_seconds: float = 60.0,
        downloadable: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 60 <= lifetime <= MAX_TOKEN_LIFETIME:
            raise ConfigurationError("a playback token lifetime must be 60 s to 24 h")
        self.key = key
        self._remote = remote
        self.lifetime = lifetime
        self.cache_ttl = min(cache_seconds, lifetime * CACHE_FRACTION)
        self.downloadable = downloadable
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str, bool], tuple[float, MintedToken]] = OrderedDict()

    def mint(self, uid: str, rules: Sequence[AccessRule] = ()) -> MintedToken:
        minted = self._mint(uid, rules, local_only=False)
        if minted is None:  # pragma: no cover - only local_only answers None
            raise RuntimeError("unreachable: a remote mint never answers None")
        return minted

    def mint_local(self, uid: str, rules: Sequence[AccessRule] = ()) -> MintedToken | None:
        """:meth:`mint` when it needs no network (a cached token or the local key), else
        None: the event loop may call this, never the Stream ``/token`` fallback."""
        return self._mint(uid, rules, local_only=True)

    def _mint(
        self, uid: str, rules: Sequence[AccessRule], *, local_only: bool
    ) -> MintedToken | None:
        rules_key = json.dumps([r.to_json() for r in rules]) if rules else "[]"
        cache_key = (uid, rules_key, self.downloadable)
        now = self._clock()
        if self.cache_ttl > 0:
            with self._lock:
                hit = self._cache.get(cache_key)
                if hit is not None and now - hit[0] < self.cache_ttl:
                    return MintedToken(hit[1].token, hit[1].expires_at, cached=True)
        if local_only and self.key is None:
            return None
        minted = self._sign(uid, rules, now)
        if self.cache_ttl > 0:
            with self._lock:
                self._cache[cache_key] = (now, minted)
                self._cache.move_to_end(cache_key)
                while len(self._cache) > MAX_CACHE_ENTRIES:
                    self._cache.popitem(last=False)
        return minted

    def _sign(self, uid: str, rules: Sequence[AccessRule], now: float) -> MintedToken:
        issued = int(now)
        if self.key is not None:
            token = sign_token(
                self.key,
                uid,
                expires_in=self.lifetime,
                downloadable=self.downloadable,
                access_rules=rules,
                now=issued,
            )
            return MintedToken(token, issued + self.lifetime)
        if self._remote is None:
            raise ConfigurationError(
                "no Stream signing key is configured: run `hybridvideo keys create`",
            )
        if rules or self.downloadable:
            raise ConfigurationError(
                "access rules and downloadable tokens need a local signing key "
                "(`hybridvideo keys create`)"
            )
        token = self._remote(uid, self.lifetime)
        return MintedToken(token, _exp_of(token, default=issued + self.lifetime))


def _exp_of(token: str, *, default: int) -> int:
    """The ``exp`` of a token the service minted (we trust our own API's answer)."""

    try:
        payload = token.split(".")[1]
        claims: Any = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return int(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return default


__all__ = ["MAX_CACHE_ENTRIES", "MintedToken", "TokenMinter", "ip_rules"]
