"""Ingest one engine video: fetch the source (unless a tus upload left it), encode, publish.

States follow Cloudflare's: ``downloading`` (fetch) → ``queued`` → ``inprogress`` (encode,
``pctComplete`` rising, ``readyToStream`` once the lowest rung plays) → ``ready`` or
``error`` with a reason code. A failure of any kind ends in ``error`` — the job itself
never fails, so a bad upload cannot wedge or crash a worker. Safe to repeat: a finished
video is left alone, a fetched source is not fetched again, and the encoder replaces a
half-written output folder. Then the account's webhook (if any) is queued.

A video uploaded with tus (:mod:`hybridvideo.engine.uploads`) has no source URL: its
upload was renamed into :meth:`EngineRuntime.source_path` before this job was queued, so
the fetch is skipped. A ``maxDurationSeconds`` on the video is checked before encoding.

Accept-only mode (``HYBRIDVIDEO_ENGINE_ACCEPT_ONLY``, a test mode for migration load
tests): the video goes straight to ``ready`` (``readyToStream``, ``pctComplete`` 100),
nothing fetched or encoded, duration and picture size left unknown (``-1``); a tus
upload's file is deleted. It has no renditions, so playback answers 404. The webhook is
queued as for any finished video. The API node runs :func:`ingest` itself in this mode,
right after recording the video (no ingest job: two queue round trips per copy were most
of its cost, and the mode then works whatever the workers' settings); a job that still
reaches a worker whose runtime has the mode on (the sweep's re-queue) does the same.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from typing import TYPE_CHECKING, Any

from hybridvideo.engine.delivery import MEDIA_DIR
from hybridvideo.engine.encode import encode
from hybridvideo.engine.encode_result import RESULT_NAME
from hybridvideo.engine.fetch import FetchError, fetch
from hybridvideo.engine.source import ERR_UNKNOWN, EncodeError, check_max_duration
from hybridvideo.errors import NotFound
from hybridvideo.jobs import engine_webhook
from hybridvideo.queue.base import JobSpec

if TYPE_CHECKING:
    from hybridvideo.container import Container
    from hybridvideo.engine.runtime import EngineRuntime

NAME = "engine.ingest"
log = logging.getLogger("hybridvideo.engine")


def _lock(payload: Any) -> str:
    return str(payload["uid"])


#: No queue retries: failures are recorded on the video, which is what Stream does.
SPEC = JobSpec(name=NAME, retries=0, lock_key=_lock, lock_ttl=6 * 3600)


def ingest(rt: EngineRuntime, uid: str) -> str:
    """Process ``uid``; returns ``ready``/``error`` when *this run* finished it, else
    ``done`` (already finished: nothing to do or announce) or ``deleted``.

    In accept-only mode (``rt.accept_only``) it is marked ready without any work.
    """
    if rt.accept_only:
        return _accept(rt, uid)
    try:
        video = rt.store.get_video(uid)
    except NotFound:
        return "deleted"
    if video.state in ("ready", "error"):
        return "done"
    workdir = rt.video_dir(uid)
    workdir.mkdir(parents=True, exist_ok=True)
    source = rt.source_path(uid)
    try:
        if not source.exists():
            if not video.source_url:  # an upload whose file is gone (it never arrives twice)
                raise EncodeError(ERR_UNKNOWN, "the uploaded file is missing")
            rt.store.set_processing_state(uid, "downloading")
            fetch(video.source_url, source)
        if video.max_duration_seconds:
            check_max_duration(source, video.max_duration_seconds)
        rt.store.set_processing_state(uid, "queued")
        rt.store.set_processing_state(uid, "inprogress", pct=0)
        progress = _Progress(rt, uid)
        out_dir = workdir / MEDIA_DIR
        if out_dir.exists() and not (out_dir / RESULT_NAME).exists():
            shutil.rmtree(out_dir)  # a worker killed mid-encode left a partial ladder

        def playable() -> None:
            rt.store.set_processing_state(uid, "inprogress", ready_to_stream=True)

        result = encode(
            source,
            out_dir,
            thumbnail_pct=video.thumbnail_timestamp_pct,
            preset=rt.preset,
            early_first_rung=rt.early_first_rung,
            on_first_playable=playable,
            on_progress=progress,
        )
        rt.store.set_processing_state(
            uid,
            "ready",
            ready_to_stream=True,
            media=result.to_dict(),
            duration=result.duration,
            width=result.width,
            height=result.height,
            size=result.size,
        )
        state = "ready"
    except NotFound:
        return "deleted"  # deleted while we worked: nothing to report
    except (FetchError, EncodeError) as exc:
        state = _fail(rt, uid, exc.code, exc.message, exc.detail)
    except Exception as exc:  # a bug or the disk: still a clean error state, never a crash
        log.exception("engine ingest crashed", extra={"video_uid": uid})
        state = _fail(rt, uid, ERR_UNKNOWN, "the video could not be processed", repr(exc))
    finally:
        if source.exists() and _finished(rt, uid):
            with contextlib.suppress(OSError):
                source.unlink()  # the master lives in the archive; keep only renditions
    return state


def _accept(rt: EngineRuntime, uid: str) -> str:
    """Accept-only mode: ready at once, with no media (one statement; no folder made)."""
    if not rt.store.accept(uid):
        return "done"  # finished already (nothing to announce again), or deleted
    if rt.video_dir(uid).exists():  # a finished tus upload's file: not needed
        shutil.rmtree(rt.video_dir(uid), ignore_errors=True)
    return "ready"


def _finished(rt: EngineRuntime, uid: str) -> bool:
    try:
        return rt.store.get_video(uid).state in ("ready", "error")
    except NotFound:
        return True


def _fail(rt: EngineRuntime, uid: str, code: str, text: str, detail: str | None) -> str:
    log.warning("engine ingest failed", extra={"video_uid": uid, "code": code, "detail": detail})
    with contextlib.suppress(NotFound):
        rt.store.set_processing_state(uid, "error", error=(code, text), ready_to_stream=False)
        shutil.rmtree(rt.video_dir(uid) / MEDIA_DIR, ignore_errors=True)
    return "error"


class _Progress:
    """Writes ``pctComplete`` at most once a second (and only when it moved)."""

    def __init__(self, rt: EngineRuntime, uid: str) -> None:
        self.rt, self.uid, self.last, self.at = rt, uid, -1.0, 0.0

    def __call__(self, pct: float) -> None:
        now = time.monotonic()
        if pct - self.last >= 1 and now - self.at >= 1 and pct < 100:
            self.last, self.at = pct, now
            self.rt.store.set_processing_state(self.uid, "inprogress", pct=pct)


def register(container: Container) -> None:
    rt = container.engine
    if rt is None:
        return

    def handler(uid: str) -> str:
        state = ingest(rt, uid)
        if state in ("ready", "error"):
            engine_webhook.enqueue_for(container, uid)
        return state

    container.queue.register(SPEC, handler)
