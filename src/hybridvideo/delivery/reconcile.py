"""Compare the catalog with the Stream account and repair what drifted apart.

``hybridvideo reconcile`` (Phase 1 migration) finds three kinds of drift:

* **stuck**: catalog videos PROCESSING for longer than ``stuck_after`` (a lost webhook, a
  poll that never came round). Stream's own state is applied through
  :meth:`DeliveryService.apply_stream_update`, as a webhook would have been.
* **missing**: catalog videos PROCESSING or READY whose Stream copy is gone. Reported; with
  ``fix_missing`` recorded as ERROR (``STREAM_VIDEO_MISSING``), which ``migrate --status
  ERROR`` sends again. EVICTED videos are never looked at: their copy is gone on purpose.
* **orphans**: Stream videos no catalog row points to, classified by the
  :data:`~hybridvideo.delivery.service.VIDEO_ID_META` every copy we make carries:
  ``adoptable`` (its video exists and has no live copy: the answer to its copy request was
  lost, and ``migrate``/``deliver`` adopts it: never deleted here), ``duplicate`` (its video
  is delivered by another copy, or had this copy once and replaced it: never adopted),
  ``video_gone`` (names a video the catalog does not have) and ``foreign`` (no catalog id:
  another system's video on the same account). ``delete_orphans`` deletes duplicates and
  ``video_gone`` copies older than ``grace`` (a copy whose uid is about to be recorded must
  survive); ``include_foreign`` deletes foreign ones too. The archive is never touched.

Built for 100,000 videos under Cloudflare's 1,200 requests per 5 minutes: the catalog is
read once in keyset pages (database only), then Stream's listing once, 1,000 videos per
request; only the catalog's copies the listing lacks cost a GET each (a copy made or a tie
skipped while listing is not missing), and deletions one request each. The catalog is read
*first* so the listing, the slow part, is the freshest view of Stream; every finding is
checked again in the catalog right before anything is changed, so videos delivered while
the run goes on are never reported as orphans or failed as missing. Memory stays small: a
compact record per catalog copy, and full listing entries only for stuck videos and
orphans.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import islice
from typing import Any, NamedTuple

from hybridvideo.catalog.base import Catalog
from hybridvideo.delivery.service import (
    MISSING_CODE,
    MISSING_MESSAGE,
    VIDEO_ID_META,
    DeliveryService,
    master_of,
)
from hybridvideo.domain.video import ScanCursor, StreamStatus, VideoScan, VideoState
from hybridvideo.errors import BackendUnavailable, InvalidInput, NotFound
from hybridvideo.stream.base import StreamProvider, StreamVideo

log = logging.getLogger("hybridvideo.delivery.reconcile")

#: PROCESSING for longer than this counts as stuck (the poll job asks after 1 minute).
STUCK_AFTER = timedelta(minutes=30)
#: Orphans younger than this are never deleted: a copy whose uid is being recorded.
ORPHAN_GRACE = timedelta(hours=1)
#: More missing copies than this in one run are not recorded as ERROR: a wrong Stream
#: account (or an outage answering 404) makes every copy look missing.
MISSING_LIMIT = 500
#: Cloudflare's largest page; the catalog's largest keyset page.
LIST_PAGE = 1000
SCAN_PAGE = 1000
SOURCE = "reconcile"

_LIVE = frozenset({StreamStatus.PROCESSING, StreamStatus.READY})


class OrphanKind(StrEnum):
    ADOPTABLE = "adoptable"
    DUPLICATE = "duplicate"
    VIDEO_GONE = "video_gone"
    FOREIGN = "foreign"


class Action(StrEnum):
    """What this run did about a finding."""

    NONE = "none"
    APPLIED = "applied"  # Stream's ready/error recorded on a stuck video
    RECORDED_ERROR = "recorded_error"  # a missing copy recorded as ERROR
    DELETED = "deleted"  # an orphan deleted from Stream
    RESOLVED = "resolved"  # settled meanwhile by someone else (webhook, delivery)


@dataclass(frozen=True, slots=True)
class ReconcileOptions:
    stuck_after: timedelta = STUCK_AFTER
    fix_missing: bool = False
    delete_orphans: bool = False
    include_foreign: bool = False
    grace: timedelta = ORPHAN_GRACE
    missing_limit: int = MISSING_LIMIT

    def __post_init__(self) -> None:
        if self.include_foreign and not self.delete_orphans:
            raise InvalidInput("include_foreign only applies with delete_orphans")
        if self.stuck_after < timedelta(0) or self.grace < timedelta(0):
            raise InvalidInput("stuck_after and grace must not be negative")
        if self.missing_limit < 0:
            raise InvalidInput("missing_limit must not be negative")

    def as_dict(self) -> dict[str, Any]:
        return {
            "stuck_after_seconds": self.stuck_after.total_seconds(),
            "fix_missing": self.fix_missing,
            "delete_orphans": self.delete_orphans,
            "include_foreign": self.include_foreign,
            "grace_seconds": self.grace.total_seconds(),
            "missing_limit": self.missing_limit,
        }


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a run is: ``phase`` is ``catalog``, ``stream``, ``confirm`` or ``orphans``;
    ``pages`` counts listing requests, ``items`` rows/videos handled, ``total`` when known."""

    phase: str
    items: int
    total: int | None = None
    pages: int = 0


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True, slots=True)
class Finding:
    """One video out of step. ``state`` is Stream's (``ready``, ``inprogress`` ...) for
    stuck videos and orphans, the catalog's status for missing copies; ``created`` is the
    Stream video's creation time when known."""

    kind: str
    uid: str
    video_id: str | None
    state: str
    created: datetime | None
    reason: str
    action: Action = Action.NONE
    #: Needs attention and was not settled by this run (drives the exit code).
    problem: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "uid": self.uid,
            "video_id": self.video_id,
            "state": self.state,
            "created": self.created.isoformat() if self.created else None,
            "reason": self.reason,
            "action": self.action.value,
            "problem": self.problem,
        }


@dataclass(slots=True)
class RequestsUsed:
    """Stream API requests this run made (rate-limit retries are counted by the client)."""

    list: int = 0
    get: int = 0
    delete: int = 0

    @property
    def total(self) -> int:
        return self.list + self.get + self.delete


@dataclass(slots=True)
class ReconcileReport:
    options: ReconcileOptions
    started_at: datetime
    finished_at: datetime | None = None
    #: Catalog videos with a stream uid, and Stream videos listed.
    catalog_copies: int = 0
    stream_videos: int = 0
    listing_pages: int = 0
    requests: RequestsUsed = field(default_factory=RequestsUsed)
    stuck: list[Finding] = field(default_factory=list)
    missing: list[Finding] = field(default_factory=list)
    orphans: list[Finding] = field(default_factory=list)
    #: Why the run stopped before checking everything (Stream unreachable, the missing
    #: limit); ``None`` for a complete run.
    stopped: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        return [*self.stuck, *self.missing, *self.orphans]

    @property
    def problems(self) -> int:
        return sum(f.problem for f in self.findings)

    @property
    def consistent(self) -> bool:
        """Nothing left needing attention, and everything was checked."""
        return self.problems == 0 and self.stopped is None

    def changed(self, action: Action) -> int:
        return sum(f.action is action for f in self.findings)

    def orphan_counts(self) -> dict[str, int]:
        return {k.value: sum(f.kind == k.value for f in self.orphans) for k in OrphanKind}

    def as_dict(self) -> dict[str, Any]:
        return {
            "consistent": self.consistent,
            "complete": self.stopped is None,
            "stopped": self.stopped,
            "notes": self.notes,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "options": self.options.as_dict(),
            "counts": {
                "catalog_copies": self.catalog_copies,
                "stream_videos": self.stream_videos,
                "stuck": len(self.stuck),
                "missing": len(self.missing),
                "orphans": len(self.orphans),
                "orphans_by_kind": self.orphan_counts(),
                "problems": self.problems,
            },
            "requests": {
                "list": self.requests.list,
                "get": self.requests.get,
                "delete": self.requests.delete,
                "total": self.requests.total,
                "listing_pages": self.listing_pages,
            },
            "changes": {
                "applied": self.changed(Action.APPLIED),
                "recorded_error": self.changed(Action.RECORDED_ERROR),
                "deleted": self.changed(Action.DELETED),
            },
            "stuck": [f.as_dict() for f in self.stuck],
            "missing": [f.as_dict() for f in self.missing],
            "orphans": [f.as_dict() for f in self.orphans],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2) + "\n"


class _Row(NamedTuple):
    """What the run keeps of one catalog copy (100,000 of these stay small)."""

    video_id: str
    status: StreamStatus
    stuck: bool


class _Listed(NamedTuple):
    """What the run keeps of one Stream video no catalog row pointed to when read."""

    uid: str
    state: str
    created: datetime | None
    video_id: str | None
    #: ``(bucket, key)`` of its master, from its meta.
    master: tuple[str, str] | None = None


def _video_id_of(video: StreamVideo) -> str | None:
    value = video.meta.get(VIDEO_ID_META)
    return value if isinstance(value, str) and value else None


class Reconciler:
    """One reconcile run over a catalog and a Stream account; see the module docstring."""

    def __init__(
        self,
        catalog: Catalog,
        stream: StreamProvider,
        delivery: DeliveryService,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        list_page: int = LIST_PAGE,
        scan_page: int = SCAN_PAGE,
    ) -> None:
        if list_page < 2:  # a page must hold more than the one video it repeats
            raise InvalidInput("list_page must be at least 2")
        self._catalog = catalog
        self._stream = stream
        self._delivery = delivery
        self._clock = clock
        self._list_page = list_page
        self._scan_page = scan_page

    def run(
        self, options: ReconcileOptions | None = None, *, progress: ProgressCallback | None = None
    ) -> ReconcileReport:
        """Check everything once and act as ``options`` allow; never raises for drift.

        Raises ``BackendUnavailable``/``RateLimited`` only when the catalog or Stream's
        listing cannot be read (nothing can be concluded then); a failure later (a GET, a
        delete) ends the run early with ``report.stopped`` saying why.
        """
        options = options or ReconcileOptions()
        notify = progress or (lambda _p: None)
        report = ReconcileReport(options=options, started_at=self._clock())
        rows = self._read_catalog(options, report, notify)
        stuck_seen, unpointed, seen = self._read_stream(rows, report, notify)
        self._settle_stuck(rows, stuck_seen, report)
        self._confirm_absent(rows, seen, options, report, notify)
        self._handle_orphans(unpointed, options, report, notify)
        report.finished_at = self._clock()
        log.info(
            "reconcile finished",
            extra={
                "stuck": len(report.stuck),
                "missing": len(report.missing),
                "orphans": len(report.orphans),
                "problems": report.problems,
                "requests": report.requests.total,
                "stopped": report.stopped,
            },
        )
        return report

    # -- the two passes ----------------------------------------------------------------

    def _read_catalog(
        self, options: ReconcileOptions, report: ReconcileReport, notify: ProgressCallback
    ) -> dict[str, _Row]:
        """Every catalog copy, any status: a uid an EVICTED or ERROR row still names is
        pointed to, so it is never taken for an orphan."""
        scan = VideoScan(has_stream_uid=True)
        total = self._catalog.summarize(scan).count
        stuck_before = self._clock() - options.stuck_after
        rows: dict[str, _Row] = {}
        cursor: ScanCursor | None = None
        while True:
            page = self._catalog.scan_videos(scan, after=cursor, limit=self._scan_page)
            for video in page:
                uid = video.spec.stream_uid
                if uid is None:  # has_stream_uid=True; kept for the type checker
                    continue
                status = video.spec.stream_status
                stuck = status is StreamStatus.PROCESSING and video.updated_at <= stuck_before
                rows[uid] = _Row(video.id, status, stuck)
            notify(Progress("catalog", len(rows), total=max(total, len(rows))))
            if len(page) < self._scan_page:
                break
            cursor = (page[-1].created_at, page[-1].id)
        report.catalog_copies = len(rows)
        return rows

    def _read_stream(
        self, rows: dict[str, _Row], report: ReconcileReport, notify: ProgressCallback
    ) -> tuple[dict[str, StreamVideo], list[_Listed], set[str]]:
        """One pass over the listing, a page per request, oldest first.

        The next page starts one microsecond before the last video's ``created``: whether
        the service's ``after`` is strict or inclusive, and whatever precision it keeps,
        videos sharing a timestamp across a page boundary are not skipped (repeats are
        dropped by uid). A full page of nothing new (more than a page of videos created in
        the same instant) cannot advance the cursor, so the listing stops there; copies it
        did not reach are confirmed with a GET rather than taken for missing.
        """
        stuck_seen: dict[str, StreamVideo] = {}
        unpointed: list[_Listed] = []
        seen: set[str] = set()
        cursor: datetime | None = None
        while True:
            inner = self._stream.list(after=cursor, limit=self._list_page)
            page = list(islice(inner, self._list_page))  # exactly one request
            report.requests.list += 1
            report.listing_pages += 1
            new = 0
            for video in page:
                if video.uid in seen:
                    continue
                seen.add(video.uid)
                new += 1
                row = rows.get(video.uid)
                if row is None:
                    unpointed.append(
                        _Listed(
                            video.uid,
                            video.state,
                            video.created,
                            _video_id_of(video),
                            master_of(video),
                        )
                    )
                elif row.stuck:
                    stuck_seen[video.uid] = video
            notify(Progress("stream", len(seen), pages=report.listing_pages))
            if len(page) < self._list_page:
                break
            last = page[-1].created
            if last is None or new == 0:
                report.notes.append(
                    "Stream's listing could not go past "
                    f"{last.isoformat() if last else 'a video without a creation time'}; "
                    "catalog copies it did not reach were checked one by one"
                )
                break
            cursor = last - timedelta(microseconds=1)
        report.stream_videos = len(seen)
        return stuck_seen, unpointed, seen

    # -- stuck and missing -------------------------------------------------------------

    def _settle_stuck(
        self, rows: dict[str, _Row], stuck_seen: dict[str, StreamVideo], report: ReconcileReport
    ) -> None:
        """Stuck videos the listing showed: its entry is Stream's state, no GET needed."""
        for uid, update in stuck_seen.items():
            report.stuck.append(self._apply(rows[uid], update))

    def _apply(self, row: _Row, update: StreamVideo) -> Finding:
        before = StreamStatus.PROCESSING
        after = self._delivery.apply_stream_update(update, source=SOURCE)
        base = Finding(
            kind="stuck",
            uid=update.uid,
            video_id=row.video_id,
            state=update.state,
            created=update.created,
            reason="",
        )
        if after is None or after.spec.stream_uid != update.uid:
            reason = "the video moved to another copy meanwhile"
            return _with(base, reason=reason, action=Action.RESOLVED)
        status = after.spec.stream_status
        if update.finished and status is not before:
            log.info(
                "stuck video settled from Stream's state",
                extra={"video_id": row.video_id, "stream_uid": update.uid, "status": status.value},
            )
            return _with(
                base,
                reason=f"Stream says {update.state}: now {status.value}",
                action=Action.APPLIED,
            )
        if status is not before:
            return _with(base, reason=f"now {status.value}", action=Action.RESOLVED)
        # Stream is still working on it: the catalog agrees, nothing to repair.
        return _with(base, reason=f"Stream is still processing it ({update.state})")

    def _confirm_absent(
        self,
        rows: dict[str, _Row],
        seen: set[str],
        options: ReconcileOptions,
        report: ReconcileReport,
        notify: ProgressCallback,
    ) -> None:
        """Live copies the listing lacks: one GET each tells a copy made (or skipped) while
        listing from one that is gone."""
        absent = [
            (uid, row) for uid, row in rows.items() if row.status in _LIVE and uid not in seen
        ]
        gone: list[tuple[str, _Row]] = []
        for done, (uid, row) in enumerate(absent, start=1):
            try:
                update = self._get(uid, report)
            except NotFound:
                gone.append((uid, row))
                if len(gone) > options.missing_limit:
                    report.stopped = (
                        f"more than {options.missing_limit} catalog copies are missing from "
                        "Stream: check the Stream account (CLOUDFLARE_ACCOUNT_ID) before "
                        "fixing them (a larger missing limit allows it); nothing was recorded"
                    )
                    break
            except BackendUnavailable as exc:
                report.stopped = f"Stream stopped answering while checking copies: {exc.message}"
                break
            else:
                if row.stuck:
                    report.stuck.append(self._apply(row, update))
            notify(Progress("confirm", done, total=len(absent)))
        fix = options.fix_missing and report.stopped is None
        for uid, row in gone:
            report.missing.append(self._missing(uid, row, fix=fix))

    def _missing(self, uid: str, row: _Row, *, fix: bool) -> Finding:
        base = Finding(
            kind="missing",
            uid=uid,
            video_id=row.video_id,
            state=row.status.value,
            created=None,
            reason="the catalog's copy is not in Stream (GET answered 404)",
        )
        now = self._reread(row.video_id)
        if now is None or now.spec.stream_uid != uid or now.spec.stream_status not in _LIVE:
            return _with(base, reason="the video changed meanwhile", action=Action.RESOLVED)
        if not fix:
            return _with(base, problem=True)
        self._delivery.fail(row.video_id, MISSING_MESSAGE, code=MISSING_CODE, source=SOURCE)
        return _with(base, action=Action.RECORDED_ERROR)

    # -- orphans -----------------------------------------------------------------------

    def _handle_orphans(
        self,
        unpointed: Iterable[_Listed],
        options: ReconcileOptions,
        report: ReconcileReport,
        notify: ProgressCallback,
    ) -> None:
        listed = list(unpointed)
        now = self._clock()
        for done, item in enumerate(listed, start=1):
            finding = self._classify(item)
            if finding is not None:
                report.orphans.append(self._maybe_delete(finding, item, options, report, now))
            if done % 100 == 0 or done == len(listed):
                notify(Progress("orphans", done, total=len(listed)))

    def _classify(self, item: _Listed) -> Finding | None:
        """What an unpointed Stream video is, read fresh from the catalog (None: a catalog
        row points to it by now)."""
        if self._catalog.find_by_stream_uid(item.uid) is not None:
            return None
        base = Finding(
            kind=OrphanKind.FOREIGN.value,
            uid=item.uid,
            video_id=item.video_id,
            state=item.state,
            created=item.created,
            reason="no hybridvideo video id in its meta (another system's video?)",
        )
        if item.video_id is None:
            return base
        video = self._reread(item.video_id)
        if video is None and item.master is not None:
            # A catalog rebuilt from the bucket gives the master a new id; `migrate` adopts
            # the old copy by its archive key, so it is judged as that video's copy.
            video = self._catalog.find_by_archive_key(*item.master)
        if video is None:
            return _with(
                base,
                kind=OrphanKind.VIDEO_GONE.value,
                reason="a copy of a video the catalog does not have",
            )
        spec = video.spec
        if spec.stream_uid is not None and spec.stream_status in _LIVE:
            return _with(
                base,
                kind=OrphanKind.DUPLICATE.value,
                reason=f"the video is {spec.stream_status.value} with copy {spec.stream_uid}",
            )
        if self._was_recorded(video.id, item.uid):
            return _with(
                base,
                kind=OrphanKind.DUPLICATE.value,
                reason="an earlier copy of the video, replaced (never adopted)",
            )
        return _with(
            base,
            kind=OrphanKind.ADOPTABLE.value,
            reason=(
                f"the video is {spec.stream_status.value} with no live copy: the answer to "
                "its copy request was lost (`hybridvideo migrate` adopts it)"
            ),
        )

    def _maybe_delete(
        self,
        finding: Finding,
        item: _Listed,
        options: ReconcileOptions,
        report: ReconcileReport,
        now: datetime,
    ) -> Finding:
        young = item.created is None or now - item.created < options.grace
        if young:
            # Possibly a copy whose uid is being recorded right now: not a problem yet.
            return _with(finding, reason=f"{finding.reason}; within the grace period")
        kind = OrphanKind(finding.kind)
        deletable = kind in (OrphanKind.DUPLICATE, OrphanKind.VIDEO_GONE) or (
            kind is OrphanKind.FOREIGN and options.include_foreign
        )
        if kind is OrphanKind.FOREIGN and not options.include_foreign:
            return finding  # reported, never ours to judge
        if not deletable or not options.delete_orphans or report.stopped is not None:
            return _with(finding, problem=True)
        if self._catalog.find_by_stream_uid(item.uid) is not None:  # recorded just now
            return _with(
                finding, reason="recorded in the catalog meanwhile", action=Action.RESOLVED
            )
        try:
            report.requests.delete += 1
            self._stream.delete(item.uid)
        except NotFound:
            return _with(finding, reason=f"{finding.reason}; already gone", action=Action.RESOLVED)
        except BackendUnavailable as exc:
            report.stopped = f"Stream stopped answering while deleting orphans: {exc.message}"
            return _with(finding, problem=True)
        log.info(
            "orphan deleted from Stream",
            extra={"stream_uid": item.uid, "kind": kind.value, "video_id": item.video_id},
        )
        return _with(finding, action=Action.DELETED)

    # -- helpers -----------------------------------------------------------------------

    def _get(self, uid: str, report: ReconcileReport) -> StreamVideo:
        report.requests.get += 1
        return self._stream.get(uid)

    def _reread(self, video_id: str) -> VideoState | None:
        try:
            return self._catalog.get_video(video_id)
        except NotFound:
            return None

    def _was_recorded(self, video_id: str, uid: str) -> bool:
        """True when the video's history names ``uid``: delivery never adopts a copy the
        video once had, so such a copy stays an orphan for good."""
        return any(e.data.get("stream_uid") == uid for e in self._catalog.events(video_id))


def _with(finding: Finding, **changes: Any) -> Finding:
    return replace(finding, **changes)


__all__ = [
    "MISSING_CODE",
    "ORPHAN_GRACE",
    "STUCK_AFTER",
    "Action",
    "Finding",
    "OrphanKind",
    "Progress",
    "ReconcileOptions",
    "ReconcileReport",
    "Reconciler",
    "RequestsUsed",
]
