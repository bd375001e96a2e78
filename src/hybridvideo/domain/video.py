"""The video and its delivery state machine.

A video's *master* lives in the archive forever; its *delivery* copy in a Stream service
comes and goes. :class:`StreamStatus` is the life of that copy::

    main path:  NOT_DELIVERED ──► PROCESSING ──► READY ──► EVICTED ──► PROCESSING
    failures:   NOT_DELIVERED | PROCESSING | READY ──► ERROR ──► PROCESSING | READY
    re-encode:  READY ──► PROCESSING

``_ALLOWED`` below is the single source of truth for these moves.

Transitions are safe to repeat: asking for the state a video is already in is a no-op,
so webhooks delivered twice and jobs retried after a crash change nothing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from hybridvideo.errors import InvalidInput, InvalidTransition


class StreamStatus(enum.StrEnum):
    NOT_DELIVERED = "NOT_DELIVERED"
    PROCESSING = "PROCESSING"
    READY = "READY"
    ERROR = "ERROR"
    EVICTED = "EVICTED"


_ALLOWED: dict[StreamStatus, frozenset[StreamStatus]] = {
    StreamStatus.NOT_DELIVERED: frozenset({StreamStatus.PROCESSING, StreamStatus.ERROR}),
    StreamStatus.PROCESSING: frozenset({StreamStatus.READY, StreamStatus.ERROR}),
    StreamStatus.READY: frozenset(
        {StreamStatus.EVICTED, StreamStatus.ERROR, StreamStatus.PROCESSING}
    ),
    StreamStatus.ERROR: frozenset({StreamStatus.PROCESSING, StreamStatus.READY}),
    StreamStatus.EVICTED: frozenset({StreamStatus.PROCESSING}),
}


def can_transition(current: StreamStatus, new: StreamStatus) -> bool:
    """True when ``current -> new`` is allowed (a repeat of the same state always is)."""
    return current == new or new in _ALLOWED[current]


def check_transition(current: StreamStatus, new: StreamStatus) -> None:
    """Raise :class:`InvalidTransition` unless ``current -> new`` is allowed."""
    if not can_transition(current, new):
        raise InvalidTransition(f"stream status cannot go from {current} to {new}")


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What probing a master tells us; ``format`` is the demuxer's name (e.g. ``mp4``)."""

    size: int
    sha256: str
    format: str
    duration: float | None
    width: int | None
    height: int | None


@dataclass(frozen=True, slots=True)
class TechnicalSpec:
    """The seed's ``VideoTechnicalSpec``: where the master is and where delivery stands."""

    archive_bucket: str
    archive_key: str
    thumbnail_url: str | None
    stream_uid: str | None
    stream_status: StreamStatus
    stream_error: str | None
    size: int | None
    format: str | None
    duration: float | None
    width: int | None
    height: int | None
    sha256: str | None


@dataclass(frozen=True, slots=True)
class VideoState:
    """A catalog video as the rest of the system sees it (no ORM object escapes)."""

    id: str
    title: str
    collection: str
    owner_id: str | None
    pinned: bool
    created_at: datetime
    updated_at: datetime
    spec: TechnicalSpec


@dataclass(frozen=True, slots=True)
class NewVideo:
    """Everything needed to record a video whose master is already archived."""

    title: str
    collection: str
    archive_bucket: str
    archive_key: str
    media: MediaInfo
    owner_id: str | None = None
    thumbnail_url: str | None = None
    id: str | None = None


@dataclass(frozen=True, slots=True)
class VideoFilter:
    collection: str | None = None
    status: StreamStatus | None = None
    query: str | None = None
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True, slots=True)
class VideoScan:
    """Filters for walking the whole catalog in a stable order (the migration, reconcile).

    Unlike :class:`VideoFilter` (one page of a listing for people) a scan is read in
    keyset pages, oldest first, so rows added or changed while it runs never make it skip
    or repeat one. ``None`` means "any"; every filter given must match.
    """

    collection: str | None = None
    #: Archive keys starting with this (``courses/2023/``).
    key_prefix: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    statuses: frozenset[StreamStatus] | None = None
    #: True: only videos with a stream uid; False: only videos without one.
    has_stream_uid: bool | None = None
    video_ids: frozenset[str] | None = None
    #: ``(run_id, outcome)``: only videos that had this outcome in that migration run
    #: (the admin page's "retry the failed ones").
    in_run: tuple[str, str] | None = None


#: Where a scan stopped: the last video's ``(created_at, id)``.
ScanCursor = tuple[datetime, str]


@dataclass(frozen=True, slots=True)
class ScanSummary:
    """What a scan would cover, counted by the database (a dry run of 100,000 videos)."""

    count: int
    #: Summed over the videos whose duration is known.
    duration_seconds: float
    #: Videos with no known duration (not probed, or not a playable master).
    unknown_duration: int
    size_bytes: int


@dataclass(frozen=True, slots=True)
class VideoChanges:
    """A partial edit; ``None`` leaves a field as it is."""

    title: str | None = None
    collection: str | None = None
    pinned: bool | None = None
    owner_id: str | None = None


#: Collections name the app's upload routes (seed 004: work, inbound, outbound); any
#: short slug is allowed so teams can add their own.
DEFAULT_COLLECTION = "default"

_COLLECTION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
MAX_TITLE_LENGTH = 300
MAX_COLLECTION_LENGTH = 64


def validate_collection(collection: str) -> str:
    """A collection is a lowercase slug (``work``, ``inbound``, ``outbound`` ...)."""
    if not collection or len(collection) > MAX_COLLECTION_LENGTH:
        raise InvalidInput(f"collection must be 1-{MAX_COLLECTION_LENGTH} characters")
    if not set(collection) <= _COLLECTION_CHARS:
        raise InvalidInput("collection may contain only a-z, 0-9, '-' and '_'")
    return collection


#: Bidirectional overrides and isolates can make a title or id display as something else.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
MAX_OWNER_ID_LENGTH = 128
#: Pages deeper than this are a scan, not a listing; the bound keeps SQL integers in range.
MAX_OFFSET = 10_000_000


def _has_controls(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 or c in _BIDI_CONTROLS for c in text)


def validate_title(title: str) -> str:
    cleaned = title.strip()
    if not cleaned or len(cleaned) > MAX_TITLE_LENGTH:
        raise InvalidInput(f"title must be 1-{MAX_TITLE_LENGTH} characters")
    if _has_controls(cleaned):
        raise InvalidInput("title must not contain control or bidi-override characters")
    return cleaned


def validate_owner_id(owner_id: str | None) -> str | None:
    """The app's own user id: opaque, but printable and bounded."""
    if owner_id is None:
        return None
    if not owner_id or len(owner_id) > MAX_OWNER_ID_LENGTH:
        raise InvalidInput(f"owner id must be 1-{MAX_OWNER_ID_LENGTH} characters")
    if _has_controls(owner_id) or owner_id != owner_id.strip():
        raise InvalidInput("owner id must not contain control characters or outer spaces")
    return owner_id


def validate_page(limit: int, offset: int, *, max_limit: int = 200) -> None:
    if not 1 <= limit <= max_limit:
        raise InvalidInput(f"limit must be between 1 and {max_limit}")
    if not 0 <= offset <= MAX_OFFSET:
        raise InvalidInput(f"offset must be between 0 and {MAX_OFFSET}")
