"""Job types, one per module; :func:`register_jobs` is the one list of them.

Every job's handler is a plain function of its payload. Handlers must be idempotent: a job
may run again after a failure that came after some of its side effects. And a job in flight
when its worker process is killed is not redelivered (huey has no acknowledgement), so work
that must survive crashes keeps its own progress in the catalog and is resumable from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hybridvideo.jobs import (
    deliver_video,
    delivery_poll,
    engine_ingest,
    engine_sweep,
    engine_upload_sweep,
    engine_webhook,
    ingest_finish,
    ingest_hook,
    ingest_sweep,
    migration_run,
    verify_master,
)

if TYPE_CHECKING:
    from hybridvideo.container import Container

JOB_MODULES = (
    ingest_finish,
    ingest_sweep,
    verify_master,
    engine_ingest,
    engine_webhook,
    engine_sweep,
    engine_upload_sweep,
    deliver_video,
    delivery_poll,
    ingest_hook,
    migration_run,
)


def register_jobs(container: Container) -> None:
    for module in JOB_MODULES:
        module.register(container)
