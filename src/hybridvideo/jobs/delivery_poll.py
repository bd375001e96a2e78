"""Every two minutes, ask Stream about videos PROCESSING for over a minute.

Webhooks are best effort: none is configured yet, our server was down when Stream sent it,
or it was refused. Polling (``DeliveryService.poll_processing``) is the safety net that
makes every delivery end READY or ERROR anyway. A round asks about at most
:data:`POLL_LIMIT` videos, so a large backlog (a migration) costs a bounded number of API
calls per round, and rounds take the backlog in turn.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from hybridvideo.errors import BackendUnavailable
from hybridvideo.queue.base import JobSpec, Periodic

if TYPE_CHECKING:
    from hybridvideo.container import Container

NAME = "delivery.poll"
POLL_LIMIT = 50
# One round at a time (a slow round and the next scheduled one would ask twice).
SPEC = JobSpec(
    name=NAME,
    retries=0,
    periodic=Periodic(minute="*/2"),
    lock_key=lambda _payload: "round",
    lock_ttl=600.0,
)
log = logging.getLogger("hybridvideo.delivery")


def register(container: Container) -> None:
    def handler() -> int:
        try:
            report = container.delivery.poll_processing(POLL_LIMIT)
        except BackendUnavailable as exc:  # the catalog is down: the next round tries again
            log.warning("delivery poll skipped", extra={"code": exc.code, "detail": exc.detail})
            return 0
        if report.changed:
            log.info("delivery poll", extra={"checked": report.checked, "changed": report.changed})
        return report.changed

    container.queue.register(SPEC, handler)
