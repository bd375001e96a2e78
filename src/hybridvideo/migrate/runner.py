"""The Phase 1 batch: send every matching catalog video to Stream, once, and say how it went.

How the run keeps its promises (issue 5):

* **never two Stream videos for one master.** Before anything is sent, the Stream
  account is listed once (:class:`StreamIndex`, 1,000 videos per request) and every copy
  carrying our ``meta`` is indexed by catalog id and archive key. A video with a copy
  there adopts it (:meth:`DeliveryService.send` with ``found``); a copy whose answer was
  lost *during* the run (5xx, timeout, dropped connection) is searched for before the
  video is tried again (the service's unanswered-request check). Each video is sent by
  one thread at a time under the delivery lock.
* **resumable.** The catalog is the truth: a video that got its stream uid is no longer
  NOT_DELIVERED, so a rerun (or ``--resume``) skips it whatever the journal managed to
  record before a SIGKILL. Journal items are written in batches by the main thread.
* **under the API limit.** The Stream client is the container's rate-limited one; a
  429's ``Retry-After`` pauses every thread. Videos still limited or unreachable after
  ``attempts`` tries are *deferred* (left NOT_DELIVERED for the next run); refusals are
  *failed* (ERROR with Stream's reason, not retried unless asked).
* **stops cleanly.** A stop event (Ctrl-C, SIGTERM) stops sending; videos in flight
  finish and the run is recorded as interrupted. Bad credentials, or Stream failing for
  every video in a row, end the run early as failed rather than deferring 100,000 videos.

Framework-free: progress goes to a :class:`ProgressSink` (the CLI draws it with rich).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from hybridvideo.catalog.base import Catalog
from hybridvideo.delivery.service import (
    VIDEO_ID_META,
    DeliveryService,
    Sent,
    master_of,
)
from hybridvideo.domain.video import StreamStatus, VideoScan, VideoState
from hybridvideo.errors import (
    BackendUnavailable,
    ConfigurationError,
    Conflict,
    HybridVideoError,
    NotFound,
)
from hybridvideo.migrate.journal import (
    MigrationRun,
    Outcome,
    RunItem,
    RunJournal,
    RunState,
)
from hybridvideo.migrate.plan import MigrationOptions, scan_from_json
from hybridvideo.stream.base import RateLimited, StreamProvider, StreamVideo
from hybridvideo.stream.ratelimit import RateLimitedStream, RetryPolicy

log = logging.getLogger("hybridvideo.migrate")

HEARTBEAT_EVERY = 5.0
FLUSH_EVERY = 1.0
FLUSH_ITEMS = 500
_PAGE = 500
#: This many deferred videos in a row (and at least twice the concurrency) mean Stream is
#: down for everyone, not flaky for some: the run stops instead of deferring them all.
ABORT_AFTER_DEFERRED = 25
#: Refusal codes that are about us, not the video: the run stops at the first one.
_FATAL_CODES = frozenset({"STREAM_AUTH", "CONFIG_INVALID"})


class ProgressSink(Protocol):
    def listing(self, videos: int) -> None:
        """Stream videos listed so far while building the index."""

    def started(self, total: int) -> None: ...

    def advanced(self, item: RunItem) -> None: ...


class _Silent:
    def listing(self, videos: int) -> None:
        return None

    def started(self, total: int) -> None:
        return None

    def advanced(self, item: RunItem) -> None:
        return None


class _Heartbeat:
    """Marks the run alive every few seconds from a thread of its own; sets ``lost`` when
    the journal says another process has claimed the run since."""

    def __init__(self, journal: RunJournal, run: MigrationRun, every: float) -> None:
        self._journal = journal
        self._run = run
        self._every = every
        self._done = threading.Event()
        self.lost = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="migrate-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=10)

    def _beat(self) -> None:
        while not self._done.wait(self._every):
            try:
                self._journal.heartbeat(self._run.id, owner=self._run.owner)
            except Conflict:
                self.lost.set()
                return
            except HybridVideoError as exc:  # a catalog blip: the next beat may pass
                log.warning("heartbeat failed", extra={"run_id": self._run.id, "code": exc.code})


@dataclass
class StreamIndex:
    """Every Stream video carrying our ``meta``, listed once when the run starts."""

    listed_at: datetime
    by_id: dict[str, list[StreamVideo]] = field(default_factory=dict)
    #: By ``(bucket, key)`` of the master.
    by_key: dict[tuple[str, str], list[StreamVideo]] = field(default_factory=dict)
    seen: int = 0

    @classmethod
    def build(
        cls,
        stream: StreamProvider,
        *,
        clock: Callable[[], datetime],
        on_progress: Callable[[int], None] | None = None,
    ) -> StreamIndex:
        index = cls(listed_at=clock())
        for video in stream.list():
            index.seen += 1
            video_id = video.meta.get(VIDEO_ID_META)
            master = master_of(video)
            if isinstance(video_id, str) and video_id:
                index.by_id.setdefault(video_id, []).append(video)
            if master is not None:
                index.by_key.setdefault(master, []).append(video)
            if on_progress is not None and index.seen % 1000 == 0:
                on_progress(index.seen)
        if on_progress is not None:
            on_progress(index.seen)
        return index

    @property
    def ours(self) -> int:
        return sum(len(v) for v in self.by_id.values())

    @property
    def duplicated(self) -> int:
        """Catalog ids with more than one Stream copy (made before this run, by anyone)."""
        return sum(1 for copies in self.by_id.values() if len(copies) > 1)


@dataclass
class MigrationReport:
    run: MigrationRun
    items: list[RunItem]
    requests: int
    elapsed: float
    stream_videos: int
    stream_copies_ours: int
    duplicated_before: int

    def by_outcome(self, outcome: Outcome) -> list[RunItem]:
        return [i for i in self.items if i.outcome == outcome]

    def to_json(self) -> dict[str, Any]:
        def rows(outcome: Outcome) -> list[dict[str, Any]]:
            return [
                {
                    "video_id": i.video_id,
                    "stream_uid": i.stream_uid,
                    "code": i.error_code,
                    "message": i.error_message,
                    "requests": i.requests,
                }
                for i in self.by_outcome(outcome)
            ]

        run = self.run
        return {
            "run": {
                "id": run.id,
                "state": run.state.value,
                "started_at": None if run.started_at is None else run.started_at.isoformat(),
                "finished_at": None if run.finished_at is None else run.finished_at.isoformat(),
                "filters": dict(run.filters),
                "options": dict(run.options),
                "error": run.error,
                "counts": dict(run.counts),
            },
            "this_pass": {o.value: len(self.by_outcome(o)) for o in Outcome},
            "elapsed_seconds": round(self.elapsed, 3),
            "requests": self.requests,
            "requests_per_video": round(self.requests / len(self.items), 3) if self.items else 0,
            "stream": {
                "videos_listed": self.stream_videos,
                "copies_with_our_meta": self.stream_copies_ours,
                "ids_with_several_copies_before_the_run": self.duplicated_before,
            },
            "copied": rows(Outcome.COPIED),
            "present": rows(Outcome.PRESENT),
            "failed": rows(Outcome.FAILED),
            "deferred": rows(Outcome.DEFERRED),
        }


class MigrationAborted(HybridVideoError):
    """The run could not go on; it is recorded as failed with this message."""

    code = "MIGRATION_ABORTED"


class MigrationRunner:
    def __init__(
        self,
        *,
        catalog: Catalog,
        journal: RunJournal,
        delivery: DeliveryService,
        stream: StreamProvider,
        policy: RetryPolicy | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        heartbeat_every: float = HEARTBEAT_EVERY,
        flush_every: float = FLUSH_EVERY,
    ) -> None:
        self._catalog = catalog
        self._journal = journal
        self._delivery = delivery
        self._stream = stream
        #: Between tries of one video (the Stream client retries each call on its own too).
        self._policy = policy or RetryPolicy(attempts=100, base=1.0, cap=30.0)
        self._clock = clock
        self._heartbeat_every = heartbeat_every
        self._flush_every = flush_every

    # -- the run ---------------------------------------------------------------------------

    def execute(
        self,
        run: MigrationRun,
        *,
        sink: ProgressSink | None = None,
        stop: threading.Event | None = None,
    ) -> MigrationReport:
        """Send the videos of ``run`` (already started or claimed in the journal)."""
        sink = sink or _Silent()
        stop = stop or threading.Event()
        scan = scan_from_json(run.filters)
        options = MigrationOptions.from_json(run.options)
        started = time.monotonic()
        requests_before = self._requests()
        # Beats from its own thread: listing a large account or a long Retry-After pause
        # must not make a live run look dead (and claimable by another process).
        beat = _Heartbeat(self._journal, run, self._heartbeat_every)
        beat.start()
        try:
            try:
                index = StreamIndex.build(self._stream, clock=self._clock, on_progress=sink.listing)
            except HybridVideoError as exc:
                self._finish(run, RunState.FAILED, _why(exc))
                raise MigrationAborted(f"could not list the Stream videos: {_why(exc)}") from exc
            log.info(
                "migration started",
                extra={
                    "run_id": run.id,
                    "total": run.total,
                    "stream_videos": index.seen,
                    "ours": index.ours,
                },
            )
            sink.started(run.total)
            pass_items, state, error = self._send_all(
                run, scan, options, index, sink, stop, beat.lost
            )
        except MigrationAborted:
            raise
        except BaseException as exc:
            # A bug or a second Ctrl-C: record the stop (the catalog holds what was done).
            why = "stopped by the operator" if isinstance(exc, KeyboardInterrupt) else "crashed"
            self._finish(run, RunState.INTERRUPTED, why)
            raise
        finally:
            beat.stop()
        final = self._finish(run, state, error)
        log.info(
            "migration ended",
            extra={"run_id": run.id, "state": state.value, "counts": dict(final.counts)},
        )
        return MigrationReport(
            run=final,
            items=pass_items,
            requests=self._requests() - requests_before,
            elapsed=time.monotonic() - started,
            stream_videos=index.seen,
            stream_copies_ours=index.ours,
            duplicated_before=index.duplicated,
        )

    def _finish(self, run: MigrationRun, state: RunState, error: str | None) -> MigrationRun:
        """Record the end, unless another process has taken the run over (it will)."""
        try:
            return self._journal.finish_run(run.id, state, error=error, owner=run.owner)
        except Conflict:
            log.warning("migration run taken over; not finishing it", extra={"run_id": run.id})
            return self._journal.get_run(run.id)

    def _send_all(
        self,
        run: MigrationRun,
        scan: VideoScan,
        options: MigrationOptions,
        index: StreamIndex,
        sink: ProgressSink,
        stop: threading.Event,
        lost: threading.Event,
    ) -> tuple[list[RunItem], RunState, str | None]:
        items: list[RunItem] = []
        unflushed: list[RunItem] = []
        last_flush = time.monotonic()
        deferred_in_row = 0
        abort: str | None = None
        pending: set[Future[RunItem | None]] = set()
        window = options.concurrency * 2
        halt = threading.Event()  # no new sends, no more retries

        def collect(done: set[Future[RunItem | None]]) -> None:
            nonlocal deferred_in_row, abort
            for future in done:
                try:
                    item = future.result()
                except Exception:  # _one guards itself; this is a bug, not a video's fate
                    log.exception("a migration worker failed", extra={"run_id": run.id})
                    continue
                if item is None:  # not started: the run was stopping
                    continue
                items.append(item)
                unflushed.append(item)
                sink.advanced(item)
                if item.outcome == Outcome.DEFERRED:
                    deferred_in_row += 1
                else:
                    deferred_in_row = 0
                if item.error_code in _FATAL_CODES and abort is None:
                    abort = f"Stream refused our credentials: {item.error_message}"
            limit = max(ABORT_AFTER_DEFERRED, 2 * options.concurrency)
            if deferred_in_row >= limit and abort is None:
                last = next((i for i in reversed(items) if i.outcome == Outcome.DEFERRED), None)
                reason = last.error_message if last else "unreachable"
                abort = f"{deferred_in_row} videos in a row could not be sent: {reason}"
            if lost.is_set() and abort is None:
                abort = "another process took this run over"

        def flush(force: bool = False) -> None:
            nonlocal last_flush
            now = time.monotonic()
            if not unflushed or not (
                force or len(unflushed) >= FLUSH_ITEMS or now - last_flush >= self._flush_every
            ):
                return
            try:
                self._journal.record_items(run.id, list(unflushed))
            except HybridVideoError as exc:  # the catalog holds the truth; try again later
                log.warning(
                    "journal write failed; will retry",
                    extra={"run_id": run.id, "code": exc.code, "items": len(unflushed)},
                )
                return
            unflushed.clear()
            last_flush = now

        def drain(until: int) -> None:
            while len(pending) > until:
                if stop.is_set() or abort is not None or lost.is_set():
                    halt.set()  # queued videos are not started; waiting ones give up
                done, _ = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                pending.difference_update(done)
                collect(done)
                flush()

        with ThreadPoolExecutor(options.concurrency, thread_name_prefix="migrate") as pool:
            try:
                for video in self._candidates(scan, _left(run, options)):
                    if stop.is_set() or abort is not None or lost.is_set():
                        break
                    pending.add(pool.submit(self._one, video, index, options, halt))
                    drain(window - 1)
                if stop.is_set() or abort is not None or lost.is_set():
                    halt.set()
                drain(0)
            except BaseException:
                halt.set()
                drain(0)
                flush(force=True)
                raise
        collect(set())  # a takeover noticed after the last video still ends the run as failed
        flush(force=True)
        if abort is not None:
            return items, RunState.FAILED, abort
        if stop.is_set():
            return items, RunState.INTERRUPTED, "stopped by the operator"
        return items, RunState.FINISHED, None

    def _candidates(self, scan: VideoScan, limit: int | None) -> Iterator[VideoState]:
        given = 0
        cursor = None
        while limit is None or given < limit:
            want = _PAGE if limit is None else min(_PAGE, limit - given)
            page = self._catalog.scan_videos(scan, after=cursor, limit=want)
            if not page:
                return
            for video in page:
                yield video
                given += 1
            cursor = (page[-1].created_at, page[-1].id)

    # -- one video -------------------------------------------------------------------------

    def _one(
        self,
        video: VideoState,
        index: StreamIndex,
        options: MigrationOptions,
        halt: threading.Event,
    ) -> RunItem | None:
        if halt.is_set():
            return None  # queued before the stop: leave it for the next run
        with self._counting() as count:
            item = self._send(video, index, options, halt)
        return RunItem(
            video_id=item.video_id,
            outcome=item.outcome,
            stream_uid=item.stream_uid,
            error_code=item.error_code,
            error_message=item.error_message,
            requests=count(),
        )

    def _send(
        self,
        video: VideoState,
        index: StreamIndex,
        options: MigrationOptions,
        halt: threading.Event,
    ) -> RunItem:
        attempt = 0
        while True:
            attempt += 1
            try:
                found = self._copies_for(video, index)
                sent = self._delivery.send(video.id, found=found, record_config_errors=False)
                return _item(sent)
            except NotFound:
                return RunItem(
                    video.id,
                    Outcome.FAILED,
                    error_code="NOT_FOUND",
                    error_message="the video was deleted from the catalog during the run",
                )
            except ConfigurationError as exc:  # our credentials: the video is left as it was
                return RunItem(
                    video.id, Outcome.DEFERRED, error_code=exc.code, error_message=_why(exc)
                )
            except BackendUnavailable as exc:
                if attempt >= options.attempts or halt.is_set():
                    return RunItem(
                        video.id, Outcome.DEFERRED, error_code=exc.code, error_message=_why(exc)
                    )
                retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
                log.info(
                    "video will be tried again",
                    extra={"video_id": video.id, "attempt": attempt, "code": exc.code},
                )
                halt.wait(self._policy.delay(attempt, retry_after))
            except HybridVideoError as exc:  # refused by the catalog (a conflict ...)
                return RunItem(
                    video.id, Outcome.FAILED, error_code=exc.code, error_message=_why(exc)
                )
            except Exception:
                log.exception("migrating a video failed", extra={"video_id": video.id})
                return RunItem(
                    video.id,
                    Outcome.FAILED,
                    error_code="INTERNAL",
                    error_message="internal error (see the server log)",
                )

    def _copies_for(self, video: VideoState, index: StreamIndex) -> list[StreamVideo]:
        """Copies carrying this video's id; else copies of its master whose catalog id is
        gone (a catalog rebuilt from the bucket gets new ids, the old copies stay good)."""
        mine = index.by_id.get(video.id)
        if mine:
            return list(mine)
        adoptable: list[StreamVideo] = []
        master = (video.spec.archive_bucket, video.spec.archive_key)
        for copy in index.by_key.get(master, []):
            owner = copy.meta.get(VIDEO_ID_META)
            if not isinstance(owner, str) or not owner:
                adoptable.append(copy)
                continue
            try:
                self._catalog.get_video(owner)
            except NotFound:
                adoptable.append(copy)
        return adoptable

    # -- helpers ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _counting(self) -> Iterator[Callable[[], int]]:
        if isinstance(self._stream, RateLimitedStream):
            with self._stream.counting() as count:
                yield lambda: count.requests
        else:
            yield lambda: 0

    def _requests(self) -> int:
        return self._stream.requests if isinstance(self._stream, RateLimitedStream) else 0


def _item(sent: Sent) -> RunItem:
    video = sent.video
    spec = video.spec
    if sent.action == "refused" or spec.stream_status == StreamStatus.ERROR:
        return RunItem(
            video.id,
            Outcome.FAILED,
            stream_uid=spec.stream_uid,
            error_code=sent.code or "STREAM_ERROR",
            error_message=spec.stream_error,
        )
    outcome = Outcome.COPIED if sent.action == "copied" else Outcome.PRESENT
    return RunItem(video.id, outcome, stream_uid=spec.stream_uid)


def _left(run: MigrationRun, options: MigrationOptions) -> int | None:
    """A resumed run with ``--limit`` sends only what its earlier passes did not settle."""
    if options.limit is None:
        return None
    settled = sum(n for outcome, n in run.counts.items() if outcome != Outcome.DEFERRED)
    return max(0, options.limit - settled)


def _why(exc: HybridVideoError) -> str:
    """The domain message only: ``detail`` (driver text, URLs) stays in the logs."""
    return exc.message
