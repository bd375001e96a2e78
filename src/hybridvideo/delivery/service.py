"""Send a catalog video to delivery, and record how it ends: the one path for every caller.

Ingest (a finished tus upload), the Phase 1 migration, an operator's ``videos deliver`` and
the admin API all call :meth:`DeliveryService.deliver`; webhooks and the polling job bring
the result back through :meth:`DeliveryService.apply_stream_update`.

Sending is ``presign GET → Stream POST /copy → record uid + PROCESSING``. Every step is
safe to repeat, because jobs run again after failures and webhooks arrive twice:

* a video that already has a stream uid and is PROCESSING or READY is left alone, so a
  second ``deliver`` never makes a second Stream video;
* the one window that could make a duplicate is a copy the service accepted whose uid we
  never recorded (the catalog failed right after, the worker died, the answer was lost on
  the wire). So a ``delivery_requested`` event is written *before* the copy, and a later
  ``deliver`` that finds it unanswered looks in Stream for a video carrying this video's id
  in ``meta`` (:data:`VIDEO_ID_META`) and adopts it instead of copying again;
* status updates go through the catalog's state machine, where repeating the current state
  is a no-op; an update naming a uid the catalog does not know (a copy superseded by a
  retry, another system's video on the same account) is logged and ignored.

Failures are split by what helps: ``RateLimited`` and ``BackendUnavailable`` propagate so
the job tries again later (honouring ``retry_after``); anything the service refuses ends in
ERROR with a message written for clients (domain error messages and Cloudflare's error
texts are; the ``detail`` of an error is only logged).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from hybridvideo.archive.base import ArchiveStore
from hybridvideo.catalog.base import Catalog
from hybridvideo.domain.video import StreamStatus, VideoFilter, VideoState, can_transition
from hybridvideo.errors import (
    BackendUnavailable,
    ConfigurationError,
    Conflict,
    HybridVideoError,
    InvalidInput,
    InvalidTransition,
    NotFound,
)
from hybridvideo.stream.base import RateLimited, StreamProvider, StreamVideo

log = logging.getLogger("hybridvideo.delivery")

#: The ``meta`` keys that tie a Stream video to its catalog video and master (``name`` is
#: the title): how a copy whose answer was lost is found again instead of made twice.
VIDEO_ID_META = "hybridvideo_video_id"
ARCHIVE_KEY_META = "hybridvideo_archive_key"
ARCHIVE_BUCKET_META = "hybridvideo_archive_bucket"
#: The master's presigned URL lives this long: Stream fetches when the copy leaves its
#: queue (120 in flight per account at most), which in a large migration takes hours.
SOURCE_URL_SECONDS = 24 * 3600
#: Videos PROCESSING for longer than this are asked about (webhooks are best effort).
POLL_AFTER = timedelta(minutes=1)
#: Copies created up to this long before an unanswered request still count as its result
#: (clock skew between us and the Stream service).
ADOPT_WINDOW = timedelta(minutes=10)
#: Bounds, not page sizes: Stream videos read looking for an orphaned copy, and catalog rows
#: read looking for videos to poll.
MAX_SCAN = 10_000
_PAGE = 200
MAX_ERROR_LENGTH = 500

# Event kinds recorded on the video, beside the catalog's own ``stream_status`` events.
REQUESTED = "delivery_requested"
SENT = "delivery_sent"
DEFERRED = "delivery_deferred"
READY = "delivery_ready"
FAILED = "delivery_error"

_STREAM_ERROR_FALLBACK = "Stream could not process the video"
#: A copy the catalog points to that Stream no longer has (found by polling or reconcile).
MISSING_CODE = "STREAM_VIDEO_MISSING"
MISSING_MESSAGE = "the Stream service no longer has this video's copy; deliver it again"


def copy_meta(video: VideoState) -> dict[str, str]:
    """What every copy of ``video`` carries in Stream's ``meta``."""
    return {
        "name": video.title,
        VIDEO_ID_META: video.id,
        ARCHIVE_KEY_META: video.spec.archive_key,
        ARCHIVE_BUCKET_META: video.spec.archive_bucket,
    }


def master_of(copy: StreamVideo) -> tuple[str, str] | None:
    """``(bucket, key)`` of the master a copy was made from, as its ``meta`` says."""
    bucket = copy.meta.get(ARCHIVE_BUCKET_META)
    key = copy.meta.get(ARCHIVE_KEY_META)
    if isinstance(bucket, str) and bucket and isinstance(key, str) and key:
        return bucket, key
    return None


def _positive(value: float | None) -> float | None:
    """Cloudflare reports -1 for "not known yet"; only real measurements are kept."""
    return value if value is not None and value > 0 else None


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def is_delivered(video: VideoState) -> bool:
    """True when a delivery copy exists or is on its way: nothing for ``deliver`` to do."""
    spec = video.spec
    return spec.stream_uid is not None and spec.stream_status in (
        StreamStatus.PROCESSING,
        StreamStatus.READY,
    )


def stream_error_text(update: StreamVideo) -> str:
    """``ERR_NON_VIDEO: The file is not a video``: Cloudflare's code and text, bounded."""
    code = (update.error_code or "").strip()
    text = (update.error_text or "").strip()
    message = f"{code}: {text}" if code and text else code or text or _STREAM_ERROR_FALLBACK
    return message[:MAX_ERROR_LENGTH]


#: What :meth:`DeliveryService.send` did: nothing (a copy exists or is on its way), adopted
#: a copy Stream already had, made a new one, or recorded a refusal (ERROR).
Action = Literal["already", "adopted", "copied", "refused"]


@dataclass(frozen=True, slots=True)
class Sent:
    video: VideoState
    action: Action
    #: The error code of a refusal (``MASTER_MISSING``, ``STREAM_AUTH``, ...).
    code: str | None = None


@dataclass(frozen=True, slots=True)
class PollReport:
    """One polling round: videos asked about, and how many of them changed state."""

    checked: int
    changed: int


def _poll_key(video: VideoState) -> tuple[datetime, str]:
    return (video.updated_at, video.id)


#: Seconds a deliver() call waits for another one of the same video to finish.
DELIVERY_LOCK_WAIT = 30.0


class _Handle(Protocol):
    def release(self) -> None: ...


class DeliveryLocker(Protocol):
    """What :class:`~hybridvideo.ingest.locks.UploadLocker` offers, for any key."""

    def acquire(self, upload_id: str, *, wait: float = 0.0) -> _Handle | None: ...


class DeliveryService:
    """Delivery over the catalog, the archive and a Stream service (Cloudflare or engine)."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        archive: ArchiveStore,
        stream: StreamProvider,
        source_url_seconds: int = SOURCE_URL_SECONDS,
        require_signed_urls: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        locker: DeliveryLocker | None = None,
    ) -> None:
        self._catalog = catalog
        #: Copies play only with a signed token unless the operator says otherwise.
        self._require_signed_urls = require_signed_urls
        #: One sender per video (in-process, or Redis across nodes): two deliver() calls
        #: racing — a job and the admin endpoint, two workers — must not make two copies.
        self._locker = locker
        self._archive = archive
        self._stream = stream
        self._source_url_seconds = source_url_seconds
        self._clock = clock
        self._poll_lock = threading.Lock()
        #: Where the last polling round stopped, so a backlog larger than one round's
        #: ``limit`` is covered in turn instead of asking about the same videos every time.
        self._poll_cursor: tuple[datetime, str] | None = None

    # -- sending -----------------------------------------------------------------------

    def deliver(self, video_id: str, *, found: Sequence[StreamVideo] = ()) -> VideoState:
        """:meth:`send`, for callers that only need the video afterwards."""
        return self.send(video_id, found=found).video

    def send(
        self,
        video_id: str,
        *,
        found: Sequence[StreamVideo] = (),
        record_config_errors: bool = True,
    ) -> Sent:
        """Send ``video_id``'s master to Stream unless a copy exists or is on its way.

        ``found`` are Stream videos the caller already knows carry this video's ``meta``
        (the migration lists the account once instead of searching per video); a usable
        one is adopted instead of copying. ``record_config_errors=False`` (the migration)
        raises a refusal of our credentials instead of recording ERROR on the video: it is
        not the video's fault, and a batch would mark thousands.

        Two senders of one video (a job here, a migration in another process) can both
        copy; the catalog takes the first uid only (``expected_uid``) and the loser
        deletes the copy it just made, so one Stream video remains.

        Returns the video as recorded afterwards (PROCESSING with the stream uid, READY or
        ERROR already when the service was that fast, or ERROR when the copy was refused)
        and what was done (:data:`Action`). Raises ``RateLimited``/``BackendUnavailable``
        when trying again later may succeed, and ``NotFound`` for an unknown video.
        """
        if self._locker is None:
            return self._deliver(video_id, found, record_config_errors)
        handle = self._locker.acquire(f"delivery:{video_id}", wait=DELIVERY_LOCK_WAIT)
        if handle is None:
            raise BackendUnavailable("the video is being delivered by another worker")
        try:
            return self._deliver(video_id, found, record_config_errors)
        finally:
            handle.release()

    def _deliver(
        self, video_id: str, found: Sequence[StreamVideo], record_config_errors: bool
    ) -> Sent:
        video = self._catalog.get_video(video_id)
        if is_delivered(video):
            return Sent(video, "already")
        try:
            self._archive.head(video.spec.archive_key)
        except NotFound:
            failed = self.fail(
                video_id,
                "the master is missing from the archive",
                code="MASTER_MISSING",
                source="archive",
            )
            return Sent(failed, "refused", code="MASTER_MISSING")
        made = self._adopt_orphan(video, found)
        adopted = made is not None
        if made is None:
            made, refusal = self._copy(video, record_config_errors)
            if made is None:  # refused; the error is recorded
                return Sent(self._catalog.get_video(video_id), "refused", code=refusal)
        sent = {"stream_uid": made.uid, "state": made.state, "adopted": adopted}
        try:
            state = self._catalog.set_stream_status(
                video_id,
                StreamStatus.PROCESSING,
                stream_uid=made.uid,
                note=(SENT, sent),
                expected_uid=video.spec.stream_uid,
            )
        except Conflict:
            return self._lost_race(video_id, made, adopted)
        log.info(
            "video sent to delivery",
            extra={"video_id": video_id, "stream_uid": made.uid, "adopted": adopted},
        )
        action: Action = "adopted" if adopted else "copied"
        if made.finished:  # a fast service, or an adopted copy that is done already
            state = self.apply_stream_update(made, source="send") or state
        return Sent(state, action)

    def _lost_race(self, video_id: str, made: StreamVideo, adopted: bool) -> Sent:
        """Another sender recorded its copy first: ours must not stay in Stream."""
        winner = self._catalog.get_video(video_id)
        if not adopted and made.uid != winner.spec.stream_uid:
            try:
                self._stream.delete(made.uid)
            except HybridVideoError as exc:  # reconcile --delete-orphans finds it later
                log.error(
                    "could not delete a duplicate copy",
                    extra={"video_id": video_id, "stream_uid": made.uid, "code": exc.code},
                )
            else:
                log.warning(
                    "another sender delivered the video first; our copy was deleted",
                    extra={"video_id": video_id, "stream_uid": made.uid},
                )
        return Sent(winner, "already")

    def _copy(
        self, video: VideoState, record_config_errors: bool = True
    ) -> tuple[StreamVideo | None, str | None]:
        url = self._archive.presign_get(video.spec.archive_key, expires_in=self._source_url_seconds)
        self._catalog.record_event(video.id, REQUESTED, {"archive_key": video.spec.archive_key})
        try:
            made = self._stream.copy_from_url(
                url, meta=copy_meta(video), require_signed_urls=self._require_signed_urls
            )
        except RateLimited as exc:
            # A 429 makes nothing, so the next attempt need not look for an orphan.
            self._catalog.record_event(video.id, DEFERRED, {"retry_after": exc.retry_after})
            raise
        except BackendUnavailable:
            raise  # the copy may have been made: the next attempt looks for it
        except ConfigurationError as exc:
            if record_config_errors:
                return self._refused(video, exc)
            # Not the video's fault: note the answer (nothing was made), leave its status.
            self._catalog.record_event(
                video.id, FAILED, {"code": exc.code, "message": exc.message, "source": "send"}
            )
            raise
        except HybridVideoError as exc:  # refused: bad request, account limits
            return self._refused(video, exc)
        return made, None

    def _refused(
        self, video: VideoState, exc: HybridVideoError
    ) -> tuple[StreamVideo | None, str | None]:
        log.warning(
            "Stream refused the copy",
            extra={"video_id": video.id, "code": exc.code, "detail": exc.detail},
        )
        self.fail(video.id, exc.message, code=exc.code, source="send")
        return None, exc.code

    def _adopt_orphan(self, video: VideoState, given: Sequence[StreamVideo]) -> StreamVideo | None:
        """A copy Stream already has for this video: one the caller found by ``meta``, or
        the one an earlier, unanswered request made. Never a uid the video had before (a
        copy that failed or was replaced). A copy Stream gave up on is adopted only when
        nothing better exists, so its error (``ERR_NON_VIDEO`` ...) is recorded instead of
        a second copy failing the same way."""
        since, known = self._unanswered_request(video.id)
        found = [c for c in given if c.uid not in known]
        if not found and since is not None:
            found = self._search(video.id, since - ADOPT_WINDOW, known)
        if not found:
            return None
        oldest = datetime.min.replace(tzinfo=UTC)
        best = max(found, key=lambda v: (v.state != "error", v.created or oldest))
        log.warning(
            "adopting a copy made by an earlier, unanswered delivery request",
            extra={
                "video_id": video.id,
                "stream_uid": best.uid,
                "others": [v.uid for v in found if v is not best],
            },
        )
        return best

    def _search(self, video_id: str, after: datetime, known: set[str]) -> list[StreamVideo]:
        found: list[StreamVideo] = []
        for scanned, candidate in enumerate(self._stream.list(after=after)):
            if scanned >= MAX_SCAN:
                break
            if candidate.meta.get(VIDEO_ID_META) == video_id and candidate.uid not in known:
                found.append(candidate)
        return found

    def _unanswered_request(self, video_id: str) -> tuple[datetime | None, set[str]]:
        """When the latest copy request was made, if no answer to it was recorded; and
        every stream uid the video ever had (earlier copies are never adopted)."""
        events = self._catalog.events(video_id)
        known = {
            str(e.data["stream_uid"])
            for e in events
            if e.kind in (SENT, "stream_status") and e.data.get("stream_uid")
        }
        for event in reversed(events):
            if event.kind in (SENT, DEFERRED) or (
                event.kind == FAILED and event.data.get("source") == "send"
            ):
                return None, known
            if event.kind == REQUESTED:
                return event.created_at or self._clock(), known
        return None, known

    def fail(self, video_id: str, message: str, *, code: str, source: str) -> VideoState:
        """Record a delivery failure: ERROR with ``message`` (shown to clients) and an event.

        An EVICTED video cannot move to ERROR (its last copy is gone on purpose), so a
        failed re-import leaves it EVICTED with the failure in its events.
        """
        message = message[:MAX_ERROR_LENGTH]
        video = self._catalog.get_video(video_id)
        if can_transition(video.spec.stream_status, StreamStatus.ERROR):
            video = self._catalog.set_stream_status(video_id, StreamStatus.ERROR, error=message)
        self._catalog.record_event(
            video_id, FAILED, {"code": code, "message": message, "source": source}
        )
        log.warning(
            "delivery failed",
            extra={"video_id": video_id, "code": code, "source": source, "error": message},
        )
        return video

    def give_up(self, video_id: str, exc: BackendUnavailable) -> VideoState:
        """After the job's last retry: ERROR, unless the video got delivered meanwhile."""
        video = self._catalog.get_video(video_id)
        if is_delivered(video):
            return video
        message = (
            "Stream kept refusing the copy with rate limits; deliver the video again later"
            if isinstance(exc, RateLimited)
            else "Stream could not be reached; deliver the video again later"
        )
        return self.fail(video_id, message, code=exc.code, source="retries")

    # -- outcomes ----------------------------------------------------------------------

    def apply_stream_update(
        self, update: StreamVideo, *, source: str = "webhook"
    ) -> VideoState | None:
        """Move the video whose copy is ``update.uid`` to READY or ERROR, as Stream says.

        Returns the video afterwards, or None when no catalog video has that uid. States
        other than ``ready``/``error`` change nothing (the copy is still on its way), and
        so does an update the state machine cannot take (an EVICTED video's late webhook)
        or one older than the last applied (Stream's ``modified``: deliveries can arrive
        out of order, and a late ``error`` must not undo a newer ``ready``).
        """
        video = self._catalog.find_by_stream_uid(update.uid)
        if video is None:
            log.info(
                "stream update for an unknown uid ignored",
                extra={"stream_uid": update.uid, "state": update.state, "source": source},
            )
            return None
        if update.state == "ready":
            target, error = StreamStatus.READY, None
        elif update.state == "error":
            target, error = StreamStatus.ERROR, stream_error_text(update)
        else:
            return video
        current = video.spec.stream_status
        if current == target and (target == StreamStatus.READY or video.spec.stream_error == error):
            return video
        if not can_transition(current, target):
            log.warning(
                "stream update does not fit the video's delivery state; ignored",
                extra={"video_id": video.id, "stream_uid": update.uid, "from": current.value},
            )
            return video
        data: dict[str, Any] = {
            "stream_uid": update.uid,
            "source": source,
            "modified": _iso(update.modified),
        }
        if target == StreamStatus.READY:
            kind = READY
            data.update(duration=update.duration, width=update.width, height=update.height)
        else:
            kind = FAILED
            data.update(code=update.error_code, message=error)
        try:
            # One transaction, under the row lock: the copy is still this video's, the
            # report is not older than one applied before, and the event goes with it.
            state = self._catalog.set_stream_status(
                video.id,
                target,
                stream_uid=update.uid,
                error=error,
                note=(kind, data),
                expected_uid=update.uid,
                modified=update.modified,
            )
        except (InvalidTransition, Conflict):  # moved or replaced by someone else meanwhile
            return self._catalog.get_video(video.id)
        if state.spec.stream_status != target:
            log.warning(
                "stream update older than the one applied; ignored",
                extra={"video_id": video.id, "stream_uid": update.uid, "state": update.state},
            )
            return state
        if target == StreamStatus.READY:
            state = self._record_media(state, update)
        log.info(
            "delivery finished",
            extra={"video_id": video.id, "stream_uid": update.uid, "status": target.value},
        )
        return state

    def _record_media(self, video: VideoState, update: StreamVideo) -> VideoState:
        """Copy what Stream measured (duration, size, dimensions) into the catalog."""
        try:
            return self._catalog.update_media(
                video.id,
                duration=_positive(update.duration),
                width=int(w) if (w := _positive(update.width)) else None,
                height=int(h) if (h := _positive(update.height)) else None,
                size=int(z) if (z := _positive(update.size)) else None,
            )
        except InvalidInput as exc:  # absurd numbers: keep the probe's, note the report
            log.warning(
                "Stream reported media values the catalog refuses",
                extra={"video_id": video.id, "stream_uid": update.uid, "error": exc.message},
            )
            return video

    def poll_processing(self, limit: int = 50, *, older_than: timedelta = POLL_AFTER) -> PollReport:
        """Ask Stream about up to ``limit`` videos PROCESSING for longer than ``older_than``.

        Webhooks can be lost (no subscription yet, our server down when Stream sent it), so
        this is the safety net. Rounds go round-robin over a backlog. A copy Stream no longer
        has ends in ERROR; a rate limit or an unreachable service ends the round early.
        """
        if limit < 1:
            return PollReport(0, 0)
        with self._poll_lock:
            batch = self._next_batch(self._due_for_poll(older_than), limit)
        checked = changed = 0
        for video in batch:
            uid = video.spec.stream_uid
            assert uid is not None  # _due_for_poll keeps only videos with a uid
            try:
                update = self._stream.get(uid)
            except NotFound:
                checked += 1
                if self._still_processing(video):
                    self.fail(
                        video.id,
                        MISSING_MESSAGE,
                        code=MISSING_CODE,
                        source="poll",
                    )
                    changed += 1
                continue
            except BackendUnavailable as exc:
                log.warning(
                    "polling Stream stopped early",
                    extra={"code": exc.code, "detail": exc.detail, "checked": checked},
                )
                break
            checked += 1
            after = self.apply_stream_update(update, source="poll")
            if after is not None and after.spec.stream_status != video.spec.stream_status:
                changed += 1
        return PollReport(checked=checked, changed=changed)

    def _still_processing(self, seen: VideoState) -> bool:
        now = self._catalog.get_video(seen.id)
        return (
            now.spec.stream_status == StreamStatus.PROCESSING
            and now.spec.stream_uid == seen.spec.stream_uid
        )

    def _due_for_poll(self, older_than: timedelta) -> list[VideoState]:
        cutoff = self._clock() - older_than
        due: list[VideoState] = []
        offset = 0
        while offset < MAX_SCAN:
            page = self._catalog.list_videos(
                VideoFilter(status=StreamStatus.PROCESSING, limit=_PAGE, offset=offset)
            )
            due.extend(v for v in page.items if v.spec.stream_uid and v.updated_at <= cutoff)
            offset += _PAGE
            if not page.items or offset >= page.total:
                break
        due.sort(key=_poll_key)
        return due

    def _next_batch(self, due: list[VideoState], limit: int) -> list[VideoState]:
        """The next ``limit`` videos after the cursor, wrapping round to the start."""
        cursor = self._poll_cursor
        batch = [v for v in due if cursor is None or _poll_key(v) > cursor][:limit]
        if len(batch) < limit:
            taken = {v.id for v in batch}
            batch += [v for v in due if v.id not in taken][: limit - len(batch)]
        self._poll_cursor = _poll_key(batch[-1]) if batch else None
        return batch
