"""Deliver one upload notification: POST it signed, retry with backoff, give up after N.

Queued by :class:`hybridvideo.ingest.hooks.HookSender`. Each run is one attempt: a 2xx
answer ends it; anything else (a non-2xx status, a refused connection, a timeout) queues
the next attempt ``first_delay * backoff**(n-1)`` seconds later, until ``attempts`` are
spent, and then it is logged as given up. The attempt number travels in the payload
rather than in huey's retry counter so the job knows when it is the last one (and logs
the give-up once, with the event and upload id); there is no delivery table as the
engine has, since nothing but this log needs the history.

The URL and secret are read from the settings when the attempt runs, not stored in the
queue: a secret has no business in a queue's storage, and a corrected URL applies to
notifications already waiting. With no URL configured any more, waiting notifications
are dropped (logged). The body is signed afresh on every attempt, since receivers reject
signatures older than their tolerance.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import httpx

from hybridvideo.ingest.hooks import HOOK_JOB
from hybridvideo.queue.base import JobSpec, TaskQueue
from hybridvideo.stream.webhooks import SIGNATURE_HEADER, sign_webhook

if TYPE_CHECKING:
    from hybridvideo.config import Settings
    from hybridvideo.container import Container

NAME = HOOK_JOB
log = logging.getLogger("hybridvideo.ingest")

Outcome = Literal["delivered", "retrying", "failed", "disabled"]


@dataclass(frozen=True)
class HookTarget:
    """Where notifications go, and the secret they are signed with."""

    url: str
    secret: str

    @classmethod
    def from_settings(cls, settings: Settings) -> HookTarget | None:
        secret = settings.upload_hook_secret
        if not settings.upload_hook_url or secret is None:
            return None
        return cls(settings.upload_hook_url, secret.get_secret_value())


@dataclass(frozen=True)
class HookPolicy:
    """How hard to try: by default 8 attempts, 2 s, 4 s ... 128 s apart (~4 minutes)."""

    attempts: int = 8
    first_delay: float = 2.0
    backoff: float = 2.0
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.first_delay < 0 or self.backoff < 1 or self.timeout <= 0:
            raise ValueError("hook policy: attempts >= 1, delays >= 0, backoff >= 1, timeout > 0")

    def delay_after(self, attempt: int) -> float:
        """Seconds between attempt ``attempt`` (1-based) and the next."""
        return float(self.first_delay * self.backoff ** (attempt - 1))


@dataclass(frozen=True)
class PostResult:
    """One POST: the HTTP status if an answer came, else the error's type name."""

    status: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def post_signed(
    url: str,
    secret: str,
    body: bytes,
    *,
    client: httpx.Client | None = None,
    timeout: float = 10.0,
) -> PostResult:
    """POST ``body`` as JSON with a Cloudflare-style ``Webhook-Signature``; never raises.

    Redirects are not followed (a 3xx is a failed attempt): a signed notification goes
    to the configured URL or nowhere.
    """
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign_webhook(secret, body)}
    try:
        http = client or httpx.Client(timeout=timeout)
        try:
            response = http.post(url, content=body, headers=headers)
        finally:
            if client is None:
                http.close()
    except Exception as exc:  # any failure to reach the receiver is one failed attempt
        return PostResult(error=type(exc).__name__)
    if 200 <= response.status_code < 300:
        return PostResult(status=response.status_code)
    return PostResult(status=response.status_code, error=f"HTTP {response.status_code}")


def deliver(
    queue: TaskQueue,
    target: HookTarget | None,
    hook: Mapping[str, Any],
    *,
    attempt: int = 1,
    policy: HookPolicy | None = None,
    client: httpx.Client | None = None,
) -> Outcome:
    """One attempt at delivering ``hook``; queues the next one itself when it fails."""
    policy = policy or HookPolicy()
    context = {
        "hook_id": hook.get("id"),
        "event": hook.get("event"),
        "upload_id": (hook.get("upload") or {}).get("id"),
        "attempt": attempt,
    }
    if target is None:
        log.info("upload hook dropped: no hook URL is configured any more", extra=context)
        return "disabled"
    body = json.dumps(hook, separators=(",", ":")).encode()
    result = post_signed(target.url, target.secret, body, client=client, timeout=policy.timeout)
    if result.ok:
        return "delivered"
    context["error"] = result.error
    if attempt >= policy.attempts:
        log.warning("upload hook given up after %d attempts", attempt, extra=context)
        return "failed"
    delay = policy.delay_after(attempt)
    queue.enqueue(NAME, {"hook": dict(hook), "attempt": attempt + 1}, delay=delay)
    log.info("upload hook failed, retrying in %.0f s", delay, extra=context)
    return "retrying"


def register_with(
    queue: TaskQueue, target: HookTarget | None, policy: HookPolicy | None = None
) -> None:
    """Make ``queue`` run hook deliveries to ``target`` (tests pass their own policy).

    huey's own retries stay as a safety net for the one failure :func:`deliver` cannot
    handle itself: the queue being unreachable when it enqueues the next attempt.
    """
    policy = policy or HookPolicy()

    def handler(hook: dict[str, Any], attempt: int = 1) -> Outcome:
        return deliver(queue, target, hook, attempt=attempt, policy=policy)

    spec = JobSpec(name=NAME, retries=2, retry_delay=max(1.0, policy.first_delay))
    queue.register(spec, handler)


def register(container: Container) -> None:
    register_with(container.queue, HookTarget.from_settings(container.settings))


__all__ = [
    "NAME",
    "HookPolicy",
    "HookTarget",
    "PostResult",
    "deliver",
    "post_signed",
    "register",
    "register_with",
]
