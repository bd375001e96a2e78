"""Cloudflare Stream webhook signatures: producing and checking ``Webhook-Signature``.

Stream POSTs the video object to our notification URL when processing ends, with
``Webhook-Signature: time=<unix>,sig1=<hex>``, where ``sig1`` is HMAC-SHA256 keyed with the
webhook secret over ``f"{time}.{raw body}"``. The webhook receiver must check it before
trusting the body, since the URL is public; the built-in engine signs its own notifications
the same way, so one receiver serves both.

What the docs leave to us, and what we chose:

* **freshness**: Cloudflare says to "discard requests with timestamps that are too old"
  without a number; we accept ``time`` within ``tolerance`` (default 5 minutes) of our
  clock in either direction, so a captured request cannot be replayed later and a
  sender with a badly wrong clock is noticed (``future``);
* **order of checks**: signature first, then time, then replay, so ``stale``/``future``/
  ``replayed`` are only ever reported for requests Cloudflare really signed (useful in
  logs: clock skew or a redelivery, not an attack), and forgeries never fill the replay
  cache;
* **secret rotation**: updating the webhook URL rotates the secret, and deliveries signed
  with the old one may still be in flight, so the verifier accepts any of several secrets;
* **parsing**: parts are split on ``,`` then on the first ``=``; whitespace and unknown
  parts (a future ``sig2``) are ignored; several ``sig1`` values pass if any matches;
  two different ``time`` values are ambiguous and refused.

Pure apart from the clock and the in-memory replay cache; no framework imports.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeAlias, runtime_checkable

from hybridvideo.errors import ConfigurationError, HybridVideoError

#: The HTTP header Stream puts the signature in.
SIGNATURE_HEADER = "Webhook-Signature"
DEFAULT_TOLERANCE = 300.0
#: Real headers are ~85 characters; anything this long is refused before it is parsed.
MAX_HEADER_LENGTH = 4096

WebhookFailure: TypeAlias = Literal[
    "missing", "malformed", "stale", "future", "bad_signature", "replayed"
]

# At most 15 digits: unix seconds until the year 31 million, and never the multi-thousand
# digit strings that make int() raise (Python refuses to convert more than 4300 digits).
_TIME = re.compile(r"[0-9]{1,15}")
_SIG1 = re.compile(r"[0-9a-fA-F]{64}")

_MESSAGES: dict[str, str] = {
    "missing": "the webhook has no Webhook-Signature header",
    "malformed": "the Webhook-Signature header is malformed",
    "stale": "the webhook signature is too old",
    "future": "the webhook signature is dated in the future",
    "bad_signature": "the webhook signature does not match",
    "replayed": "this webhook delivery was already received",
}


class InvalidWebhook(HybridVideoError):
    """A webhook request that must not be acted on; ``reason`` says why."""

    code = "INVALID_WEBHOOK"

    def __init__(
        self, reason: WebhookFailure, message: str | None = None, *, detail: str | None = None
    ) -> None:
        super().__init__(message or _MESSAGES[reason], detail=detail)
        self.reason: WebhookFailure = reason


@dataclass(frozen=True)
class WebhookSignature:
    """A parsed header: the send time (also as sent, for the HMAC) and the candidate sigs."""

    time: int
    raw_time: str
    signatures: tuple[str, ...]


def parse_signature_header(header: str | None) -> WebhookSignature:
    """Read ``time=<unix>,sig1=<hex>[,...]``; raises :class:`InvalidWebhook` (missing/malformed).

    ``sig1`` values that are not 64 hex characters are dropped (they could never match);
    signatures are returned lower-case.
    """
    if header is None or not header.strip():
        raise InvalidWebhook("missing")
    if len(header) > MAX_HEADER_LENGTH:
        raise InvalidWebhook("malformed", detail=f"header of {len(header)} characters")
    times: set[str] = set()
    sigs: list[str] = []
    for part in header.split(","):
        name, sep, value = part.partition("=")
        if not sep:
            continue
        name, value = name.strip().lower(), value.strip()
        if name == "time":
            times.add(value)
        elif name == "sig1" and _SIG1.fullmatch(value):
            sigs.append(value.lower())
    if not times:
        raise InvalidWebhook("malformed", detail="no time= part")
    if len(times) > 1:
        raise InvalidWebhook("malformed", detail="several different time= parts")
    raw_time = times.pop()
    if not _TIME.fullmatch(raw_time):
        raise InvalidWebhook("malformed", detail=f"time {raw_time[:20]!r} is not unix seconds")
    if not sigs:
        raise InvalidWebhook("malformed", detail="no sig1= part with 64 hex characters")
    return WebhookSignature(time=int(raw_time), raw_time=raw_time, signatures=tuple(sigs))


def _hex_hmac(secret: bytes, raw_time: str, body: bytes) -> str:
    return hmac.new(secret, raw_time.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def _secret_bytes(secret: object) -> bytes:
    if not isinstance(secret, str) or not secret:
        raise ConfigurationError("a webhook secret must be a non-empty string")
    # Cloudflare's samples key the HMAC with the secret's UTF-8 bytes, not its hex decoding.
    return secret.encode("utf-8")


def _body_bytes(body: object) -> bytes:
    if not isinstance(body, bytes | bytearray | memoryview):
        # A str body has already been decoded (and perhaps re-encoded) by someone: the
        # signature covers the raw bytes, so insist on them.
        raise TypeError("the webhook body must be the raw request bytes")
    return bytes(body)


def sign_webhook(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """The ``Webhook-Signature`` value for ``body``, as Cloudflare Stream would send it."""
    key = _secret_bytes(secret)
    sent = int(time.time()) if timestamp is None else timestamp
    if isinstance(sent, bool) or not isinstance(sent, int) or sent < 0:
        raise ValueError("timestamp must be a non-negative whole number of unix seconds")
    raw_time = str(sent)
    return f"time={raw_time},sig1={_hex_hmac(key, raw_time, _body_bytes(body))}"


@runtime_checkable
class ReplayCache(Protocol):
    """Remembers signatures already accepted, for ``ttl`` seconds.

    ``seen`` must be atomic: it returns True if ``key`` is already recorded and unexpired,
    otherwise records it and returns False. (A shared store, e.g. Redis ``SET NX EX``,
    makes this work across several receiving processes.)
    """

    def seen(self, key: str, ttl: float) -> bool: ...


class MemoryReplayCache:
    """A thread-safe, in-process :class:`ReplayCache` for one receiving process.

    Expired entries are pruned on every call (a heap keeps that cheap). ``max_entries``
    bounds memory; past it the entry closest to expiry is dropped first. Only requests
    with a valid signature reach the cache, so filling it needs the secret.
    """

    def __init__(
        self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def seen(self, key: str, ttl: float) -> bool:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        now = self._clock()
        with self._lock:
            self._prune(now)
            if key in self._expiry:
                return True
            expiry = now + ttl
            self._expiry[key] = expiry
            heapq.heappush(self._heap, (expiry, key))
            while len(self._expiry) > self._max_entries:
                _, oldest = heapq.heappop(self._heap)
                self._expiry.pop(oldest, None)
            return False

    def _prune(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            expiry, key = heapq.heappop(self._heap)
            if self._expiry.get(key) == expiry:
                del self._expiry[key]

    def __len__(self) -> int:
        with self._lock:
            self._prune(self._clock())
            return len(self._expiry)


class WebhookVerifier:
    """Checks ``Webhook-Signature`` headers against one or more secrets.

    Give a list of secrets while rotating (the new one and the one it replaces); any of
    them may have signed a delivery. ``tolerance`` is how far, in seconds, the signed
    ``time`` may be from our clock either way. With a ``replay_cache``, a delivery whose
    signature was already accepted within ``2 * tolerance`` seconds (the longest it could
    still pass the time check) is refused as ``replayed``.

    Caveat for callers: the signature is recorded when it is verified, so if handling then
    fails and the sender re-sends the byte-identical request, the retry is ``replayed``.
    Our webhook handling is idempotent (state moves repeat harmlessly), so a receiver that
    prefers redelivery to replay protection can simply run without a cache.
    """

    def __init__(
        self,
        secret: str | Sequence[str],
        *,
        tolerance: float = DEFAULT_TOLERANCE,
        replay_cache: ReplayCache | None = None,
    ) -> None:
        secrets = [secret] if isinstance(secret, str) else list(secret)
        if not secrets:
            raise ConfigurationError("a webhook verifier needs at least one secret")
        self._secrets = tuple(_secret_bytes(s) for s in secrets)
        if isinstance(tolerance, bool) or not tolerance > 0:
            raise ConfigurationError("the webhook time tolerance must be positive")
        self.tolerance = float(tolerance)
        self._replay_cache = replay_cache

    def verify(self, header: str | None, body: bytes, *, now: float | None = None) -> None:
        """Return if the request is authentic, fresh and new; raise :class:`InvalidWebhook`."""
        parsed = parse_signature_header(header)
        raw = _body_bytes(body)
        matched: str | None = None
        for key in self._secrets:
            expected = _hex_hmac(key, parsed.raw_time, raw)
            for candidate in parsed.signatures:
                if hmac.compare_digest(expected, candidate):
                    matched = candidate
        if matched is None:
            raise InvalidWebhook(
                "bad_signature",
                detail=f"{len(parsed.signatures)} sig1 value(s), {len(self._secrets)} secret(s)",
            )
        current = time.time() if now is None else now
        age = current - parsed.time
        if age > self.tolerance:
            raise InvalidWebhook("stale", detail=f"signed {age:.0f} s ago")
        if -age > self.tolerance:
            raise InvalidWebhook("future", detail=f"signed {-age:.0f} s ahead of our clock")
        if self._replay_cache is not None and self._replay_cache.seen(matched, 2 * self.tolerance):
            raise InvalidWebhook("replayed", detail=f"signature {matched[:12]}... seen before")


__all__ = [
    "DEFAULT_TOLERANCE",
    "SIGNATURE_HEADER",
    "InvalidWebhook",
    "MemoryReplayCache",
    "ReplayCache",
    "WebhookFailure",
    "WebhookSignature",
    "WebhookVerifier",
    "parse_signature_header",
    "sign_webhook",
]
