"""Test mode: make the engine's control API fail like a flaky, rate-limited Cloudflare.

A migration must survive 429s, 5xx answers, timeouts and dropped connections without ever
making two Stream videos for one master. The dangerous cases are the ones where Stream
*did* the work and the answer was lost; a test can only provoke them against a server
that loses answers on purpose. ``HYBRIDVIDEO_ENGINE_FAULTS`` (empty: off) names the
faults and their probabilities, for example::

    429=0.1,500=0.05,500after=0.05,timeout=0.05,drop=0.05,seed=7,retry_after=1,hold=3

Each control-API request (the same requests :func:`hybridvideo.engine.limits.is_control_api`
counts) draws one number from a seeded RNG and gets at most one fault:

* ``429``: refused before it is handled, 429 with ``Retry-After: retry_after`` (whole
  seconds, default 1) in the body Cloudflare's rate limit sends. Nothing happens.
* ``500``: refused before it is handled, 500 in Cloudflare's envelope. Nothing happens.
* ``500after``: handled (a copy makes its video), then answered 500 instead.
* ``timeout``: handled, then the answer is held ``hold`` seconds (default 35: longer than
  the Stream client's default 30 s timeout) before it is sent.
* ``drop``: handled, then the connection is cut mid-answer: the status line, the headers
  (with the full ``Content-Length``) and half the body are sent, then the app returns
  unfinished and uvicorn closes the socket (it logs "ASGI callable returned without
  completing response", which is the point). The client sees a broken connection
  (httpx ``RemoteProtocolError``), never a clean error status.

``seed`` makes a run repeatable for a client that sends its requests in the same order
(default: a random seed, logged at start so a run can be replayed). Probabilities are in
[0, 1] and add up to at most 1. A bad spec is a :class:`ConfigurationError` at start that
names the part at fault. Every injected fault is logged as one structured warning line
(logger ``hybridvideo.engine.faults``: fault, method, path, request id).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import secrets
import threading
from dataclasses import dataclass

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hybridvideo.engine.limits import is_control_api, rate_limited_response
from hybridvideo.engine.shapes import envelope
from hybridvideo.errors import ConfigurationError

log = logging.getLogger("hybridvideo.engine.faults")

VARIABLE = "HYBRIDVIDEO_ENGINE_FAULTS"
#: Fault kinds, in the order their probabilities are stacked on the RNG's [0, 1) draw.
KINDS: tuple[str, ...] = ("429", "500", "500after", "timeout", "drop")
#: Kinds that let the request do its work before the answer is lost.
AFTER_KINDS = frozenset({"500after", "timeout", "drop"})
DEFAULT_RETRY_AFTER = 1.0
DEFAULT_HOLD = 35.0
_OPTIONS = ("seed", "retry_after", "hold")
#: Cloudflare's generic internal-error code (as the engine's own 500s use).
INTERNAL = 10001


@dataclass(frozen=True)
class FaultSpec:
    """A parsed ``HYBRIDVIDEO_ENGINE_FAULTS``: per-kind probabilities and options."""

    rates: tuple[tuple[str, float], ...]
    seed: int
    retry_after: float = DEFAULT_RETRY_AFTER
    hold: float = DEFAULT_HOLD

    def describe(self) -> str:
        """The spec as it is applied (the seed filled in), to log and to replay."""
        parts = [f"{kind}={rate:g}" for kind, rate in self.rates]
        parts += [f"seed={self.seed}", f"retry_after={self.retry_after:g}", f"hold={self.hold:g}"]
        return ",".join(parts)


def _bad(part: str, why: str) -> ConfigurationError:
    return ConfigurationError(f"{VARIABLE}: {why} in {part!r}")


def _number(part: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _bad(part, f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise _bad(part, f"{text!r} is not a finite number")
    return value


def parse_faults(text: str) -> FaultSpec | None:
    """Parse the spec (see the module notes); ``None`` when it is empty (faults off)."""
    if not text.strip():
        return None
    rates: dict[str, float] = {}
    options: dict[str, float] = {}
    seed: int | None = None
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        key, sep, value = (s.strip() for s in part.partition("="))
        key = key.lower()
        if not sep or not key or not value:
            raise _bad(part, "expected key=value")
        if key in rates or key in options or (key == "seed" and seed is not None):
            raise _bad(part, f"{key!r} is given twice")
        if key in KINDS:
            rate = _number(part, value)
            if not 0.0 <= rate <= 1.0:
                raise _bad(part, "a probability must be between 0 and 1")
            rates[key] = rate
        elif key == "seed":
            try:
                seed = int(value)
            except ValueError:
                raise _bad(part, "seed must be an integer") from None
        elif key in ("retry_after", "hold"):
            number = _number(part, value)
            if number < 0 or (key == "hold" and number == 0):
                raise _bad(part, f"{key} must be {'positive' if key == 'hold' else '>= 0'}")
            options[key] = number
        else:
            known = ", ".join((*KINDS, *_OPTIONS))
            raise _bad(part, f"unknown key {key!r} (known: {known})")
    total = sum(rates.values())
    if total > 1.0 + 1e-9:
        raise ConfigurationError(f"{VARIABLE}: the probabilities add up to {total:g}, over 1")
    return FaultSpec(
        rates=tuple((kind, rates[kind]) for kind in KINDS if rates.get(kind)),
        seed=secrets.randbits(32) if seed is None else seed,
        retry_after=options.get("retry_after", DEFAULT_RETRY_AFTER),
        hold=options.get("hold", DEFAULT_HOLD),
    )


class FaultPicker:
    """One seeded draw per request; thread-safe (one lock around the RNG)."""

    def __init__(self, spec: FaultSpec) -> None:
        self._rng = random.Random(spec.seed)
        self._lock = threading.Lock()
        self._bounds: list[tuple[float, str]] = []
        upper = 0.0
        for kind, rate in spec.rates:
            upper += rate
            self._bounds.append((upper, kind))

    def pick(self) -> str | None:
        """The fault for the next request, or ``None`` (always one draw, so the sequence
        depends only on the seed and the order of requests)."""
        with self._lock:
            draw = self._rng.random()
        for upper, kind in self._bounds:
            if draw < upper:
                return kind
        return None


def internal_error() -> JSONResponse:
    body = envelope(None, errors=[{"code": INTERNAL, "message": "Internal error"}])
    return JSONResponse(body, status_code=500)


class FaultInjection:
    """ASGI middleware applying a :class:`FaultSpec` to the control API (plain ASGI)."""

    def __init__(self, app: ASGIApp, *, spec: FaultSpec) -> None:
        self.app = app
        self.spec = spec
        self.picker = FaultPicker(spec)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_control_api(scope):
            await self.app(scope, receive, send)
            return
        kind = self.picker.pick()
        if kind is None:
            await self.app(scope, receive, send)
            return
        log.warning(
            "engine fault injected",
            extra={
                "fault": kind,
                "method": scope["method"],
                "path": scope["path"],
                "request_id": scope.get("state", {}).get("request_id"),
            },
        )
        if kind == "429":
            await rate_limited_response(self.spec.retry_after)(scope, receive, send)
            return
        if kind == "500":
            await internal_error()(scope, receive, send)
            return
        # The "after" kinds: the request is handled in full, its answer kept back.
        held: list[Message] = []

        async def keep(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, keep)
        if kind == "500after":
            await internal_error()(scope, receive, send)
        elif kind == "timeout":
            await asyncio.sleep(self.spec.hold)
            for message in held:
                await send(message)
        else:
            await _cut(held, send)


async def _cut(held: list[Message], send: Send) -> None:
    """Send the answer's start and half its body, then stop: the server closes the socket.

    ``Content-Length`` announces the whole body (at least one byte, so even an empty
    answer is visibly cut short).
    """
    start = next((m for m in held if m["type"] == "http.response.start"), None)
    if start is None:  # the app sent nothing: nothing to cut, let the server say 500
        return
    body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
    headers = [
        (name, value)
        for name, value in start.get("headers", ())
        if name.lower() not in (b"content-length", b"transfer-encoding")
    ]
    headers.append((b"content-length", str(max(1, len(body))).encode()))
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})


__all__ = [
    "AFTER_KINDS",
    "KINDS",
    "VARIABLE",
    "FaultInjection",
    "FaultPicker",
    "FaultSpec",
    "parse_faults",
]
