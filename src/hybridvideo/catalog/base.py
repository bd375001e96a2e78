"""The catalog contract: what the services need from the database, nothing more.

Implementations return domain values (:class:`~hybridvideo.domain.video.VideoState`), never
ORM objects, and raise domain errors (``NotFound``, ``Conflict``, ``InvalidTransition``,
``BackendUnavailable``). Every status change is checked against the state machine in
:mod:`hybridvideo.domain.video` and recorded as an event in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from types import EllipsisType
from typing import Any, Protocol, runtime_checkable

from hybridvideo.domain.video import (
    NewVideo,
    ScanCursor,
    ScanSummary,
    StreamStatus,
    VideoChanges,
    VideoFilter,
    VideoScan,
    VideoState,
)


@dataclass(frozen=True, slots=True)
class VideoEvent:
    id: int
    video_id: str
    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class VideoPage:
    items: list[VideoState]
    total: int


@runtime_checkable
class Catalog(Protocol):
    def add_video(self, new: NewVideo) -> VideoState:
        """Record a video and its spec (status ``NOT_DELIVERED``).

        Raises ``Conflict`` if a video with the same master sha256 or the same archive key
        already exists: one master, one catalog entry.
        """

    def get_video(self, video_id: str) -> VideoState:
        """The video or ``NotFound``."""

    def find_by_sha256(self, sha256: str) -> VideoState | None: ...

    def find_by_archive_key(self, bucket: str, key: str) -> VideoState | None:
        """The video whose master is ``key`` in ``bucket`` (exact match), or None.

        Lets an import of an existing bucket skip objects it cataloged before without
        reading their bytes again.
        """

    def find_by_stream_uid(self, stream_uid: str) -> VideoState | None:
        """The video whose delivery copy is ``stream_uid`` (webhooks name only that), or None."""

    def list_videos(self, flt: VideoFilter) -> VideoPage:
        """Newest first; ``query`` matches the title case-insensitively."""

    def scan_videos(
        self, scan: VideoScan, *, after: ScanCursor | None = None, limit: int = 500
    ) -> list[VideoState]:
        """Up to ``limit`` videos matching ``scan`` after ``after``, oldest first.

        Keyset paging on ``(created_at, id)``: pass the last video's pair to get the next
        page. ``InvalidInput`` for a limit outside 1-1000.
        """

    def summarize(self, scan: VideoScan) -> ScanSummary:
        """Count, summed duration and size of the videos ``scan`` matches."""

    def update_media(
        self,
        video_id: str,
        *,
        duration: float | None = None,
        width: int | None = None,
        height: int | None = None,
        size: int | None = None,
    ) -> VideoState:
        """Record what the Stream service measured; ``None`` leaves a field as it is.

        ``InvalidInput`` for negative or absurd values, ``NotFound`` if absent.
        """

    def update_video(self, video_id: str, changes: VideoChanges) -> VideoState:
        """Apply a partial edit; ``NotFound`` if absent."""

    def set_stream_status(
        self,
        video_id: str,
        status: StreamStatus,
        *,
        stream_uid: str | None = None,
        error: str | None = None,
        note: tuple[str, dict[str, Any]] | None = None,
        expected_uid: str | None | EllipsisType = ...,
        modified: datetime | None = None,
    ) -> VideoState:
        """Move delivery to ``status``; repeating the current status changes nothing.

        ``note`` is an event ``(kind, data)`` recorded in the same transaction (even when
        the status does not change): one commit instead of two on the delivery path.
        ``expected_uid``: only if the video's stream uid is still this one (``None``: it has
        none), else ``Conflict`` — two senders, or a webhook about a replaced copy, cannot
        overwrite each other. ``modified``: Stream's time of the report; one older than the
        last applied report about the same copy changes nothing (webhooks arrive out of
        order). ``InvalidTransition`` for a move the state machine forbids.
        """

    def record_event(self, video_id: str, kind: str, data: dict[str, Any]) -> VideoEvent:
        """Append an event to the video's history; ``NotFound`` if the video is absent."""

    def events(self, video_id: str) -> list[VideoEvent]:
        """The video's recorded events, oldest first."""

    def ping(self) -> None:
        """Raise ``BackendUnavailable`` unless the database answers and is migrated."""
