"""``PlaybackService.playback``: from (video, viewer, address) to signed Stream URLs.

The order of the checks is the order of the answers: an unknown video is 404; the policy
then says sign in (401) or no (403); a video whose copy is not playable is 409 with its
status, except an EVICTED one, whose re-import is started (the ``delivery.send`` job,
deduplicated here for a burst) and answered 202 with ``Retry-After``. Only then is a token
minted (:mod:`hybridvideo.playback.minter`) and put in place of the uid in every URL, as
Stream expects. The poster is the archive's thumbnail: its public URL, else a presigned
one that lives as long as the token.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hybridvideo.archive.base import ArchiveStore
from hybridvideo.catalog.base import Catalog
from hybridvideo.domain.video import StreamStatus, VideoState
from hybridvideo.errors import ConfigurationError, Conflict, HybridVideoError, Unauthorized
from hybridvideo.playback.grants import GrantStore
from hybridvideo.playback.identity import Viewer, ViewerAuthenticator
from hybridvideo.playback.minter import MintedToken, TokenMinter, ip_rules
from hybridvideo.playback.policy import Decision, PlaybackPolicy

log = logging.getLogger("hybridvideo.playback")

#: How long a catalog row read for playback is reused (see ``PlaybackService._video``).
VIDEO_CACHE_SECONDS = 2.0
MAX_CACHED_VIDEOS = 10_000


class PlaybackDenied(HybridVideoError):
    """The viewer is known and may not play this video (403)."""

    code = "FORBIDDEN"


class NotReady(Conflict):
    """The video has no playable copy yet (409); ``status`` is its delivery status."""

    code = "NOT_READY"

    def __init__(self, status: StreamStatus) -> None:
        super().__init__(f"the video is not ready to play (status {status.value})")
        self.status = status


@dataclass(frozen=True)
class Playback:
    stream_uid: str
    token: str
    expires_at: int
    hls: str
    dash: str
    iframe: str
    poster: str | None

    def to_json(self) -> dict[str, Any]:
        """The endpoint's body; the player and telemetry are built against these names."""
        return {
            "streamUid": self.stream_uid,
            "token": self.token,
            "expiresAt": datetime.fromtimestamp(self.expires_at, UTC)
            .isoformat()
            .replace("+00:00", "Z"),
            "hls": self.hls,
            "dash": self.dash,
            "iframe": self.iframe,
            "poster": self.poster,
        }


@dataclass(frozen=True)
class Reimporting:
    """The copy was evicted; a re-import runs. Ask again after ``retry_after`` seconds."""

    video_id: str
    retry_after: int


class PlaybackService:
    def __init__(
        self,
        *,
        catalog: Catalog,
        archive: ArchiveStore,
        authenticator: ViewerAuthenticator,
        grants: GrantStore,
        policy: PlaybackPolicy,
        minter: TokenMinter,
        delivery_base: str | None,
        start_reimport: Callable[[str], object],
        bind_ip: bool = False,
        retry_after: int = 30,
        video_cache_seconds: float = VIDEO_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.catalog = catalog
        #: The app's viewer JWTs (the HTTP edge calls it with the bearer token).
        self.authenticator = authenticator
        #: Explicit grants (the admin API manages them).
        self.grants = grants
        self.policy = policy
        self.minter = minter
        self._archive = archive
        self._base = delivery_base.rstrip("/") if delivery_base else None
        self._start_reimport = start_reimport
        self._bind_ip = bind_ip
        self._retry_after = retry_after
        self._clock = clock
        self._lock = threading.Lock()
        self._reimports: dict[str, float] = {}
        self._video_ttl = video_cache_seconds
        self._videos: dict[str, tuple[float, VideoState]] = {}

    def playback(
        self, video_id: str, viewer: Viewer, client_ip: str | None, *, skip_policy: bool = False
    ) -> Playback | Reimporting:
        """Signed URLs for ``viewer``; ``skip_policy`` is for operators (``playback url
        --as-admin``), who hold the signing key anyway."""
        answer = self._answer(
            self._video(video_id), viewer, client_ip, skip_policy=skip_policy, may_block=True
        )
        if answer is None:  # pragma: no cover - only may_block=False answers None
            raise RuntimeError("unreachable: a blocking answer is never None")
        return answer

    def playback_nowait(
        self, video_id: str, viewer: Viewer, client_ip: str | None
    ) -> Playback | Reimporting | None:
        """:meth:`playback` when answering needs no I/O, else None (call :meth:`playback`
        in a thread then).

        The HTTP edge calls this on the event loop: a threadpool hop per request cost more
        than the whole answer (bench/RESULTS.md, "Playback tokens: notes"). It answers
        from the video cache, the token cache or the local key's CPU-only signature, and
        gives up (None) on anything that would wait: a catalog read, a policy with the
        ``grant`` rule (a query), a re-import to queue, a presigned poster, the Stream
        ``/token`` fallback. Errors (401/403/409) are raised exactly as by ``playback``.
        """
        if "grant" in self.policy.rules:
            return None
        video = self._cached_video(video_id, self._clock())
        if video is None:
            return None
        return self._answer(video, viewer, client_ip, skip_policy=False, may_block=False)

    def _answer(
        self,
        video: VideoState,
        viewer: Viewer,
        client_ip: str | None,
        *,
        skip_policy: bool,
        may_block: bool,
    ) -> Playback | Reimporting | None:
        decision = Decision.ALLOW if skip_policy else self.policy.decide(video, viewer)
        if decision is Decision.SIGN_IN:
            raise Unauthorized("sign in to play this video: send 'Authorization: Bearer <JWT>'")
        if decision is Decision.DENY:
            raise PlaybackDenied("you may not play this video")
        spec = video.spec
        if spec.stream_status is StreamStatus.EVICTED:
            if not may_block:
                return None
            self._reimport(video.id)
            return Reimporting(video.id, self._retry_after)
        if spec.stream_status is not StreamStatus.READY or not spec.stream_uid:
            raise NotReady(spec.stream_status)
        if self._base is None:
            raise ConfigurationError(
                "playback URLs need HYBRIDVIDEO_STREAM_DELIVERY_URL "
                "(https://customer-<CODE>.cloudflarestream.com)"
            )
        if not may_block and spec.thumbnail_url is None and spec.sha256:
            return None  # the poster needs the archive (a public URL or a presigned one)
        rules = ip_rules(client_ip) if self._bind_ip and client_ip else ()
        if may_block:
            minted: MintedToken | None = self.minter.mint(spec.stream_uid, rules)
        else:
            minted = self.minter.mint_local(spec.stream_uid, rules)
        if minted is None:
            return None
        base = f"{self._base}/{minted.token}"
        return Playback(
            stream_uid=spec.stream_uid,
            token=minted.token,
            expires_at=minted.expires_at,
            hls=f"{base}/manifest/video.m3u8",
            dash=f"{base}/manifest/video.mpd",
            iframe=f"{base}/iframe",
            poster=self._poster(video),
        )

    def _video(self, video_id: str) -> VideoState:
        """The catalog row, reused for :data:`VIDEO_CACHE_SECONDS`.

        Reading a video costs more than signing its token (an ORM query with its spec:
        ~1.4 ms against ~0.25 ms, measured by bench/tokens.py), and a burst asks for the
        same few videos. A status, owner or collection change is therefore seen by
        playback up to that long after it happened; grants are not cached.
        """
        if self._video_ttl <= 0:
            return self.catalog.get_video(video_id)
        now = self._clock()
        hit = self._cached_video(video_id, now)
        if hit is not None:
            return hit
        video = self.catalog.get_video(video_id)
        with self._lock:
            if len(self._videos) >= MAX_CACHED_VIDEOS:
                self._videos.clear()
            self._videos[video_id] = (now, video)
        return video

    def _cached_video(self, video_id: str, now: float) -> VideoState | None:
        """The cached row if still fresh, else None (no catalog read)."""
        if self._video_ttl <= 0:
            return None
        with self._lock:
            hit = self._videos.get(video_id)
        if hit is not None and now - hit[0] < self._video_ttl:
            return hit[1]
        return None

    def _reimport(self, video_id: str) -> None:
        """Queue the re-import once per ``retry_after`` per video: a burst of viewers must
        not queue a burst of jobs (the job is idempotent, the queue is not free)."""
        now = self._clock()
        with self._lock:
            last = self._reimports.get(video_id)
            if last is not None and now - last < self._retry_after:
                return
            self._reimports[video_id] = now
            if len(self._reimports) > 10_000:
                self._reimports = {
                    k: t for k, t in self._reimports.items() if now - t < self._retry_after
                }
        self._start_reimport(video_id)
        log.info("re-import of an evicted video started", extra={"video_id": video_id})

    def _poster(self, video: VideoState) -> str | None:
        if video.spec.thumbnail_url:
            return video.spec.thumbnail_url
        sha = video.spec.sha256
        if not sha:
            return None
        key = f"thumbnails/{sha[:2]}/{sha}.jpg"
        return self._archive.public_url(key) or self._archive.presign_get(
            key, expires_in=self.minter.lifetime
        )


__all__ = ["NotReady", "Playback", "PlaybackDenied", "PlaybackService", "Reimporting"]
