"""Where the Stream webhook secret comes from, and where a new one is kept.

Cloudflare hands out the secret when the webhook URL is set (``PUT /stream/webhook``) and
rotates it whenever the URL changes. It reaches us two ways:

* ``HYBRIDVIDEO_STREAM_WEBHOOK_SECRET``: for several nodes behind a load balancer, each
  given the same value (``hybridvideo stream webhook set URL`` prints it);
* the data dir's ``stream-webhook-secret`` file (mode 0600), written by that command and by
  ``serve`` when it subscribes itself to its embedded engine.

The file keeps the newest secret and the one before it: deliveries signed just before a
rotation may still be in flight (the engine retries for minutes), and the verifier accepts
any of the secrets given. The file is read per request, so a running server picks up a
rotation made by the CLI without a restart.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from hybridvideo.config import Settings

if TYPE_CHECKING:
    from hybridvideo.container import Container

log = logging.getLogger("hybridvideo.delivery")

FILE_NAME = "stream-webhook-secret"
#: The route Stream posts to, relative to the public URL.
WEBHOOK_PATH = "/webhooks/stream"
_KEEP = 2
_MAX_SECRET = 512


class WebhookSecretStore:
    """The secrets a webhook may be signed with: the configured one, then the file's."""

    def __init__(self, path: Path, *, configured: str | None = None) -> None:
        self.path = path
        self._configured = configured or None

    @classmethod
    def for_settings(cls, settings: Settings) -> WebhookSecretStore:
        configured = settings.stream_webhook_secret
        return cls(
            settings.data_dir / FILE_NAME,
            configured=configured.get_secret_value() if configured else None,
        )

    def secrets(self) -> list[str]:
        """Every secret to accept, newest first; empty when none is configured."""
        found = [self._configured] if self._configured else []
        for line in self._stored():
            if line not in found:
                found.append(line)
        return found

    def remember(self, secret: str) -> bool:
        """Make ``secret`` the newest (keeping the previous one); False if it already was."""
        secret = secret.strip()
        if not secret or len(secret) > _MAX_SECRET or any(c.isspace() for c in secret):
            raise ValueError("a webhook secret is one non-empty word")
        stored = self._stored()
        if stored and stored[0] == secret:
            return False
        kept = [secret, *(s for s in stored if s != secret)][:_KEEP]
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(kept) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)  # readers see the old file or the new one, never half
        return True

    def _stored(self) -> list[str]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        lines = [line.strip() for line in text.splitlines()]
        return [line for line in lines if line and len(line) <= _MAX_SECRET][:_KEEP]


def webhook_url(settings: Settings) -> str:
    return f"{settings.resolved_public_url}{WEBHOOK_PATH}"


def subscribe_embedded_engine(container: Container) -> str | None:
    """Point this process's engine at our own webhook route; keep its secret in the data dir.

    Called by ``serve`` before it listens, so it talks to the engine's store directly (its
    HTTP API is not up yet). Setting the URL it already has keeps the secret; a new URL
    rotates it. Returns the URL, or None when this process runs no engine.
    """
    rt = container.engine
    if rt is None:
        return None
    url = webhook_url(container.settings)
    hook = rt.store.put_webhook(rt.account_id, url)
    if WebhookSecretStore.for_settings(container.settings).remember(hook.secret):
        log.info("subscribed to the embedded engine's webhooks", extra={"url": url})
    return url
