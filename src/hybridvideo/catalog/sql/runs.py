"""The migration :class:`~hybridvideo.migrate.journal.RunJournal` on the catalog's database.

Same rules as the catalog repository: one short transaction per call, frozen domain values
out, driver errors translated once. Counts are computed from the items on every read, so
a resumed run that reaches a video again replaces its outcome instead of counting it twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from hybridvideo.catalog.sql.engine import Transactions
from hybridvideo.catalog.sql.models import MigrationItemRow, MigrationRunRow, new_id, utcnow
from hybridvideo.errors import Conflict, InvalidInput, NotFound
from hybridvideo.migrate.journal import (
    MigrationRun,
    NewRun,
    Outcome,
    RunItem,
    RunState,
)

MAX_RUNS_PAGE = 200
MAX_ITEMS_PAGE = 1000
MAX_ERROR = 2000


def _run(row: MigrationRunRow, counts: dict[str, int]) -> MigrationRun:
    return MigrationRun(
        id=row.id,
        state=RunState(row.state),
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        heartbeat_at=row.heartbeat_at,
        filters=dict(row.filters),
        options=dict(row.options),
        total=row.total,
        counts=counts,
        error=row.error,
        parent_id=row.parent_id,
        owner=row.owner,
    )


def _item(row: MigrationItemRow) -> RunItem:
    return RunItem(
        video_id=row.video_id,
        outcome=Outcome(row.outcome),
        stream_uid=row.stream_uid,
        error_code=row.error_code,
        error_message=row.error_message,
        requests=row.requests,
        updated_at=row.updated_at,
    )


def _check_owner(row: MigrationRunRow, owner: str | None) -> None:
    if owner is not None and row.owner != owner:
        raise Conflict(f"migration run {row.id} was taken over by another process")


class SqlRunJournal:
    def __init__(self, engine: Engine) -> None:
        self._tx = Transactions(engine)

    # -- runs ------------------------------------------------------------------------------

    def start_run(self, new: NewRun) -> MigrationRun:
        if new.state not in (RunState.RUNNING, RunState.QUEUED):
            raise InvalidInput("a new run is either running or queued")
        now = utcnow()
        running = new.state == RunState.RUNNING
        with self._tx(write=True) as session:
            row = MigrationRunRow(
                state=new.state.value,
                created_at=now,
                started_at=now if running else None,
                heartbeat_at=now if running else None,
                filters=dict(new.filters),
                options=dict(new.options),
                total=max(0, new.total),
                parent_id=new.parent_id,
                owner=new_id() if running else None,
            )
            session.add(row)
            session.flush()
            return _run(row, {})

    def get_run(self, run_id: str) -> MigrationRun:
        with self._tx() as session:
            row = self._load(session, run_id)
            return _run(row, self._counts(session, [run_id]).get(run_id, {}))

    def list_runs(self, *, limit: int = 20, offset: int = 0) -> list[MigrationRun]:
        if not 1 <= limit <= MAX_RUNS_PAGE or offset < 0:
            raise InvalidInput(f"limit must be 1-{MAX_RUNS_PAGE} and offset not negative")
        with self._tx() as session:
            rows = list(
                session.scalars(
                    select(MigrationRunRow)
                    .order_by(MigrationRunRow.created_at.desc(), MigrationRunRow.id.desc())
                    .limit(limit)
                    .offset(offset)
                )
            )
            counts = self._counts(session, [r.id for r in rows])
            return [_run(r, counts.get(r.id, {})) for r in rows]

    def claim_run(self, run_id: str, *, total: int) -> MigrationRun:
        now = utcnow()
        with self._tx(write=True) as session:
            row = self._load(session, run_id, lock=True)
            current = _run(row, {})
            state = current.effective_state(now)
            if state == RunState.RUNNING:
                raise Conflict(f"migration run {run_id} is running elsewhere")
            if state == RunState.FINISHED:
                raise Conflict(f"migration run {run_id} is finished; start a new one")
            row.state = RunState.RUNNING.value
            row.started_at = row.started_at or now
            row.heartbeat_at = now
            row.finished_at = None
            row.error = None
            row.total = max(0, total)
            row.owner = new_id()
            session.flush()
            return _run(row, self._counts(session, [run_id]).get(run_id, {}))

    def heartbeat(self, run_id: str, *, owner: str | None = None) -> None:
        with self._tx(write=True) as session:
            row = self._load(session, run_id, lock=True)
            _check_owner(row, owner)
            row.heartbeat_at = utcnow()

    def finish_run(
        self,
        run_id: str,
        state: RunState,
        *,
        error: str | None = None,
        owner: str | None = None,
    ) -> MigrationRun:
        if state not in (RunState.FINISHED, RunState.INTERRUPTED, RunState.FAILED):
            raise InvalidInput("a run finishes as finished, interrupted or failed")
        now = utcnow()
        with self._tx(write=True) as session:
            row = self._load(session, run_id, lock=True)
            _check_owner(row, owner)
            row.state = state.value
            row.finished_at = now
            row.heartbeat_at = now
            row.error = None if error is None else error[:MAX_ERROR]
            session.flush()
            return _run(row, self._counts(session, [run_id]).get(run_id, {}))

    # -- items -----------------------------------------------------------------------------

    def record_items(self, run_id: str, items: Sequence[RunItem]) -> None:
        if not items:
            return
        latest = {item.video_id: item for item in items}  # the last word per video wins
        now = utcnow()
        with self._tx(write=True) as session:
            self._load(session, run_id)
            existing = {
                row.video_id: row
                for row in session.scalars(
                    select(MigrationItemRow).where(
                        MigrationItemRow.run_id == run_id,
                        MigrationItemRow.video_id.in_(sorted(latest)),
                    )
                )
            }
            for video_id, item in latest.items():
                row = existing.get(video_id)
                if row is None:
                    row = MigrationItemRow(run_id=run_id, video_id=video_id, requests=0)
                    session.add(row)
                row.outcome = Outcome(item.outcome).value
                row.stream_uid = item.stream_uid
                row.error_code = item.error_code
                row.error_message = (
                    None if item.error_message is None else item.error_message[:MAX_ERROR]
                )
                row.requests += item.requests  # a resumed run's requests add up
                row.updated_at = now

    def items(
        self, run_id: str, *, outcome: Outcome | None = None, limit: int = 100, offset: int = 0
    ) -> list[RunItem]:
        if not 1 <= limit <= MAX_ITEMS_PAGE or offset < 0:
            raise InvalidInput(f"limit must be 1-{MAX_ITEMS_PAGE} and offset not negative")
        query = select(MigrationItemRow).where(MigrationItemRow.run_id == run_id)
        if outcome is not None:
            query = query.where(MigrationItemRow.outcome == Outcome(outcome).value)
        with self._tx() as session:
            self._load(session, run_id)
            rows = session.scalars(query.order_by(MigrationItemRow.id).limit(limit).offset(offset))
            return [_item(r) for r in rows]

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _load(session: Session, run_id: str, *, lock: bool = False) -> MigrationRunRow:
        query = select(MigrationRunRow).where(MigrationRunRow.id == run_id)
        if lock:
            query = query.with_for_update()
        row = session.scalar(query) if run_id and len(run_id) <= 36 else None
        if row is None:
            raise NotFound(f"migration run {run_id} not found")
        return row

    @staticmethod
    def _counts(session: Session, run_ids: list[str]) -> dict[str, dict[str, int]]:
        if not run_ids:
            return {}
        rows = session.execute(
            select(MigrationItemRow.run_id, MigrationItemRow.outcome, func.count())
            .where(MigrationItemRow.run_id.in_(run_ids))
            .group_by(MigrationItemRow.run_id, MigrationItemRow.outcome)
        )
        counts: dict[str, dict[str, int]] = {}
        for run_id, outcome, count in rows:
            counts.setdefault(run_id, {})[outcome] = int(count)
        return counts
