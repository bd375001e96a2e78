"""Cloudflare's global API rate limit, served by the engine (off unless configured).

Cloudflare allows 1,200 API requests per five minutes per user and answers the rest with
HTTP 429. A migration that must stay under that limit is only tested honestly against a
server that enforces it, so the engine can: :class:`ApiRateLimit` keeps a sliding window
(the :class:`~hybridvideo.stream.ratelimit.RateLimiter` the client side uses, through its
non-blocking :meth:`~hybridvideo.stream.ratelimit.RateLimiter.try_acquire`): no window of
``per`` seconds ever lets more than ``limit`` requests through.

What is counted (:func:`is_control_api`): every request to the control API,
``/client/v4/accounts/{acct}/stream`` and everything under it, the tus creation ``POST``
on the collection included, whoever sends it (the check runs before authentication, as at
Cloudflare's edge). Not counted: playback (``/delivery/...``), ``OPTIONS`` (CORS
preflights and tus discovery are not API calls) and tus upload URLs
(``.../stream/tus/{id}``: Cloudflare serves those from its upload host, not from
``api.cloudflare.com``, so chunk PATCHes and HEADs do not spend API quota).

The answers, decided here where Cloudflare's documentation stops:

* Over the limit: 429 in Cloudflare's envelope with code **971**, "Please wait and
  consider throttling your request speed". Cloudflare's docs name no code; 971 with this
  text is what users of its API report receiving (Terraform provider, wrangler and R2
  reports), so clients that match on it keep working.
* Headers, on every counted answer: ``x-ratelimit-limit``, ``x-ratelimit-remaining`` and
  ``x-ratelimit-reset`` (RFC 1123 date at which the next slot frees, as listed in
  shared/design/cloudflare-stream-r2.md §0), plus the IETF-draft ``Ratelimit``
  (``"default";r=<remaining>;t=<seconds>``) and ``Ratelimit-Policy``
  (``"default";q=<limit>;w=<window>``) Cloudflare added in 2025; on a 429 also
  ``Retry-After``: whole seconds until a slot frees, rounded up (at least 1).
* Refused requests are not counted, so a client that waits ``Retry-After`` gets through.
  Cloudflare documents a harsher rule (over the limit, everything is refused for the
  next five minutes); a client that honours ``Retry-After`` behaves the same against
  both, and the sliding window is what the migration's own limiter must match.
* One window per process: two engine nodes behind a balancer allow twice the limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from email.utils import formatdate

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hybridvideo.engine.shapes import envelope
from hybridvideo.stream.ratelimit import RateLimiter

#: Cloudflare's code and text for its global rate limit (see the module notes).
RATE_LIMITED_CODE = 971
RATE_LIMITED_MESSAGE = "Please wait and consider throttling your request speed"


def is_control_api(scope: Scope) -> bool:
    """True for a request the engine counts as a Stream API call (see the module notes)."""
    if scope["type"] != "http" or scope["method"] == "OPTIONS":
        return False
    # "", "client", "v4", "accounts", {acct}, "stream", then "tus" for upload URLs
    parts = scope["path"].split("/", 7)
    return (
        len(parts) >= 6
        and parts[1] == "client"
        and parts[2] == "v4"
        and parts[3] == "accounts"
        and parts[5] == "stream"
        and (len(parts) < 7 or parts[6] != "tus")
    )


def rate_limited_response(
    retry_after: float, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Cloudflare's 429: its envelope, code 971, ``Retry-After`` in whole seconds."""
    body = envelope(None, errors=[{"code": RATE_LIMITED_CODE, "message": RATE_LIMITED_MESSAGE}])
    wait = max(1, math.ceil(retry_after))
    return JSONResponse(
        body, status_code=429, headers={**(headers or {}), "Retry-After": str(wait)}
    )


class ApiRateLimit:
    """ASGI middleware: at most ``limiter.limit`` control-API requests per ``limiter.per``.

    Plain ASGI (no ``BaseHTTPMiddleware``), like the app's other middleware: it adds a
    lock and a few headers per request and nothing to a body's path.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: RateLimiter,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self._wall_clock = wall_clock
        self._policy = f'"default";q={limiter.limit};w={math.ceil(limiter.per)}'

    def _headers(self, used: int, next_free: float) -> dict[str, str]:
        remaining = max(0, self.limiter.limit - used)
        seconds = math.ceil(next_free)
        return {
            "x-ratelimit-limit": str(self.limiter.limit),
            "x-ratelimit-remaining": str(remaining),
            # An RFC 1123 date has whole seconds: round up, never announce a reset too early.
            "x-ratelimit-reset": formatdate(math.ceil(self._wall_clock() + next_free), usegmt=True),
            "Ratelimit": f'"default";r={remaining};t={seconds}',
            "Ratelimit-Policy": self._policy,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_control_api(scope):
            await self.app(scope, receive, send)
            return
        wait = self.limiter.try_acquire()
        if wait > 0:
            response = rate_limited_response(wait, self._headers(self.limiter.limit, wait))
            await response(scope, receive, send)
            return
        raw = [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in self._headers(*self.limiter.usage()).items()
        ]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *raw]
            await send(message)

        await self.app(scope, receive, send_with_headers)


__all__ = [
    "RATE_LIMITED_CODE",
    "RATE_LIMITED_MESSAGE",
    "ApiRateLimit",
    "is_control_api",
    "rate_limited_response",
]
