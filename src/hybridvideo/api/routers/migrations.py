"""Migration runs for the admin page: list them, read one's outcomes, retry its failures.

``GET /api/v1/migrations`` and ``GET /api/v1/migrations/{id}`` show what ``hybridvideo
migrate`` (and earlier retries) did, with counts by outcome and the *effective* state: a
run recorded as running whose heartbeat stopped shows ``interrupted``, since a killed
process writes nothing (:meth:`MigrationRun.effective_state`). ``.../items`` pages through
one run's videos (the page asks for ``outcome=failed``) with each video's title and
current delivery status, looked up in one catalog query per page.

``POST /api/v1/migrations/{id}/retry`` records a *queued* run of the videos that run
failed and queues the ``migration.run`` job for a worker: the request answers 202 at once
and never waits on Stream. It answers 409 when there is nothing to retry (no failed
videos, or none still undelivered) or a retry of that run is already queued or running:
the request is well formed but clashes with the recorded state, which is what
``Conflict`` means (400 is for requests that are wrong whatever the state). The admin
token guards every route.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from hybridvideo.api.deps import AdminDep, ContainerDep
from hybridvideo.api.schemas import _Wire
from hybridvideo.domain.video import MAX_OFFSET, StreamStatus, VideoScan, VideoState
from hybridvideo.errors import Conflict, HybridVideoError
from hybridvideo.jobs import migration_run as migration_job
from hybridvideo.migrate.journal import MigrationRun, Outcome, RunItem, RunJournal, RunState
from hybridvideo.migrate.plan import MigrationOptions, retry_scan

router = APIRouter(prefix="/api/v1/migrations", tags=["migrations"], dependencies=[AdminDep])

#: Run ids are the journal's UUIDs; anything else is refused before it reaches the database.
RunId = Annotated[str, Path(pattern=r"^[0-9A-Za-z-]{1,36}$")]
MAX_RUNS_PAGE = 100
MAX_ITEMS_PAGE = 500
#: Runs looked at (newest first) when checking for a retry already on its way.
_RETRY_SCAN_PAGE = 200
_RETRY_SCAN_PAGES = 10
_ACTIVE = frozenset({RunState.QUEUED, RunState.RUNNING})


class RunCounts(_Wire):
    copied: int
    present: int
    failed: int
    deferred: int


class RunOut(_Wire):
    id: str
    #: What the run is now: ``running`` only while its heartbeat is fresh.
    state: RunState
    #: What the journal says (``running`` for a run killed without a word).
    recorded_state: RunState
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    total: int
    done: int
    counts: RunCounts
    error: str | None
    parent_id: str | None
    filters: dict[str, Any]
    options: dict[str, Any]

    @classmethod
    def of(cls, run: MigrationRun, now: datetime) -> RunOut:
        return cls(
            id=run.id,
            state=run.effective_state(now),
            recorded_state=run.state,
            created_at=run.created_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
            heartbeat_at=run.heartbeat_at,
            total=run.total,
            done=run.done,
            counts=RunCounts(**{o.value: int(run.counts.get(o.value, 0)) for o in Outcome}),
            error=run.error,
            parent_id=run.parent_id,
            filters=dict(run.filters),
            options=dict(run.options),
        )


class RunList(_Wire):
    items: list[RunOut]
    limit: int
    offset: int
    has_more: bool


class ItemOut(_Wire):
    video_id: str
    #: None when the video is no longer in the catalog.
    title: str | None
    #: The video's delivery status now (it may have changed since the run).
    stream_status: StreamStatus | None
    outcome: Outcome
    code: str | None
    message: str | None
    stream_uid: str | None
    requests: int
    updated_at: datetime | None


class ItemList(_Wire):
    run_id: str
    outcome: Outcome | None
    items: list[ItemOut]
    #: Items of the run with this outcome (all of them without one).
    total: int
    limit: int
    offset: int


def _now() -> datetime:
    return datetime.now(UTC)


@router.get("", response_model=RunList, response_model_by_alias=True)
def list_runs(
    container: ContainerDep,
    limit: Annotated[int, Query(ge=1, le=MAX_RUNS_PAGE)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> RunList:
    """Runs, newest first; one more than asked is read to say whether more follow."""
    runs = container.runs.list_runs(limit=limit + 1, offset=offset)
    now = _now()
    return RunList(
        items=[RunOut.of(r, now) for r in runs[:limit]],
        limit=limit,
        offset=offset,
        has_more=len(runs) > limit,
    )


@router.get("/{run_id}", response_model=RunOut, response_model_by_alias=True)
def show_run(run_id: RunId, container: ContainerDep) -> RunOut:
    return RunOut.of(container.runs.get_run(run_id), _now())


@router.get("/{run_id}/items", response_model=ItemList, response_model_by_alias=True)
def run_items(
    run_id: RunId,
    container: ContainerDep,
    outcome: Outcome | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ITEMS_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> ItemList:
    run = container.runs.get_run(run_id)
    items = container.runs.items(run_id, outcome=outcome, limit=limit, offset=offset)
    videos: dict[str, VideoState] = {}
    if items:
        ids = frozenset(i.video_id for i in items)
        found = container.catalog.scan_videos(VideoScan(video_ids=ids), limit=len(ids))
        videos = {v.id: v for v in found}
    total = run.done if outcome is None else int(run.counts.get(outcome.value, 0))
    return ItemList(
        run_id=run.id,
        outcome=outcome,
        items=[_item(i, videos.get(i.video_id)) for i in items],
        total=total,
        limit=limit,
        offset=offset,
    )


def _item(item: RunItem, video: VideoState | None) -> ItemOut:
    return ItemOut(
        video_id=item.video_id,
        title=None if video is None else video.title,
        stream_status=None if video is None else video.spec.stream_status,
        outcome=item.outcome,
        code=item.error_code,
        message=item.error_message,
        stream_uid=item.stream_uid,
        requests=item.requests,
        updated_at=item.updated_at,
    )


@router.post(
    "/{run_id}/retry", status_code=202, response_model=RunOut, response_model_by_alias=True
)
def retry_failed(run_id: RunId, container: ContainerDep, response: Response) -> RunOut:
    """A queued run of the videos ``run_id`` failed, and the job that will run it."""
    journal = container.runs
    run = journal.get_run(run_id)
    if not run.counts.get(Outcome.FAILED.value):
        raise Conflict(f"migration run {run_id} has no failed videos to retry")
    if container.migrations.plan(retry_scan(run_id), MigrationOptions()).summary.count == 0:
        raise Conflict(f"the failed videos of migration run {run_id} were all delivered since")
    now = _now()
    pending = _pending_retry(journal, run, now)
    if pending is not None:
        raise Conflict(
            f"a retry of migration run {run_id} is already {pending.effective_state(now).value}:"
            f" run {pending.id}"
        )
    queued = container.migrations.retry_failed(run_id, queued=True)
    try:
        migration_job.enqueue(container.queue, queued.id)
    except HybridVideoError:
        # Without its job nobody would ever pick the run up: say so on the run itself, so
        # the page shows why and the failed videos can be retried again.
        journal.finish_run(
            queued.id, RunState.FAILED, error="the run could not be queued for a worker"
        )
        raise
    response.headers["Location"] = f"/api/v1/migrations/{queued.id}"
    return RunOut.of(queued, _now())


def _pending_retry(journal: RunJournal, parent: MigrationRun, now: datetime) -> MigrationRun | None:
    """A queued or running retry of ``parent``: it is newer than the parent, so the newest
    runs are read until one older than the parent shows up (a bounded number of pages)."""
    for page in range(_RETRY_SCAN_PAGES):
        runs = journal.list_runs(limit=_RETRY_SCAN_PAGE, offset=page * _RETRY_SCAN_PAGE)
        for run in runs:
            if run.created_at < parent.created_at:
                return None
            if run.parent_id == parent.id and run.effective_state(now) in _ACTIVE:
                return run
        if len(runs) < _RETRY_SCAN_PAGE:
            return None
    return None
