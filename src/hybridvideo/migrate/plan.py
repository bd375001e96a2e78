"""What a migration run covers, and what it would cost: filters, options and the dry run.

Filters are kept in the run journal as JSON (:func:`scan_to_json`), so ``--resume`` and
the admin page's "retry the failed ones" run exactly what the operator asked for, and the
estimate a dry run prints comes from the same scan the run would walk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hybridvideo.catalog.base import Catalog
from hybridvideo.domain.keys import validate_prefix
from hybridvideo.domain.video import (
    ScanSummary,
    StreamStatus,
    VideoScan,
    VideoState,
    validate_collection,
)
from hybridvideo.errors import InvalidInput

#: Seed 000's Stream prices: storage $5 per 1,000 minutes stored (per month, prepaid),
#: delivery $1 per 1,000 minutes watched. Encoding and ingress are free.
STORAGE_USD_PER_1000_MINUTES = 5.0
DELIVERY_USD_PER_1000_MINUTES = 1.0

#: Videos a plain ``hybridvideo migrate`` sends: those never delivered. Failed ones are
#: retried only when asked (``--status ERROR``), so a permanent error is not retried forever.
DEFAULT_STATUSES = frozenset({StreamStatus.NOT_DELIVERED})
#: Statuses a migration may be asked to (re)send; PROCESSING and READY already have a copy.
SENDABLE = frozenset({StreamStatus.NOT_DELIVERED, StreamStatus.ERROR, StreamStatus.EVICTED})

MAX_CONCURRENCY = 64
#: Dry runs list this many of the videos they would send (the JSON report lists them all).
SAMPLE = 20


@dataclass(frozen=True, slots=True)
class MigrationOptions:
    concurrency: int = 8
    #: Tries per video for rate limits and outages before it is left for the next run.
    attempts: int = 6
    #: At most this many videos in the run (None: all that match).
    limit: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise InvalidInput(f"concurrency must be between 1 and {MAX_CONCURRENCY}")
        if not 1 <= self.attempts <= 100:
            raise InvalidInput("attempts must be between 1 and 100")
        if self.limit is not None and self.limit < 1:
            raise InvalidInput("limit must be at least 1")

    def to_json(self) -> dict[str, Any]:
        return {"concurrency": self.concurrency, "attempts": self.attempts, "limit": self.limit}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MigrationOptions:
        return cls(
            concurrency=int(data.get("concurrency", 8)),
            attempts=int(data.get("attempts", 6)),
            limit=None if data.get("limit") is None else int(data["limit"]),
        )


def build_scan(
    *,
    collection: str | None = None,
    key_prefix: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    statuses: frozenset[StreamStatus] | None = None,
) -> VideoScan:
    """The scan for the command line's filters, validated: clear errors, nothing sent."""
    if collection is not None:
        validate_collection(collection)
    if key_prefix is not None:
        validate_prefix(key_prefix)
    for name, moment in (("created-after", created_after), ("created-before", created_before)):
        if moment is not None and moment.tzinfo is None:
            raise InvalidInput(f"{name} needs a timezone (e.g. 2024-01-31T00:00:00Z)")
    if created_after and created_before and created_after >= created_before:
        raise InvalidInput("created-after must be earlier than created-before")
    chosen = DEFAULT_STATUSES if statuses is None else statuses
    if not chosen or not chosen <= SENDABLE:
        names = ", ".join(sorted(s.value for s in SENDABLE))
        raise InvalidInput(f"a migration sends videos that are {names}")
    return VideoScan(
        collection=collection,
        key_prefix=key_prefix or None,
        created_after=created_after,
        created_before=created_before,
        statuses=chosen,
    )


def scan_to_json(scan: VideoScan) -> dict[str, Any]:
    return {
        "collection": scan.collection,
        "key_prefix": scan.key_prefix,
        "created_after": None if scan.created_after is None else scan.created_after.isoformat(),
        "created_before": None if scan.created_before is None else scan.created_before.isoformat(),
        "statuses": None if scan.statuses is None else sorted(s.value for s in scan.statuses),
        "in_run": None if scan.in_run is None else list(scan.in_run),
    }


def scan_from_json(data: Mapping[str, Any]) -> VideoScan:
    def moment(name: str) -> datetime | None:
        value = data.get(name)
        return None if value is None else datetime.fromisoformat(str(value))

    statuses = data.get("statuses")
    in_run = data.get("in_run")
    return VideoScan(
        collection=data.get("collection"),
        key_prefix=data.get("key_prefix"),
        created_after=moment("created_after"),
        created_before=moment("created_before"),
        statuses=None if statuses is None else frozenset(StreamStatus(s) for s in statuses),
        in_run=None if in_run is None else (str(in_run[0]), str(in_run[1])),
    )


def retry_scan(run_id: str) -> VideoScan:
    """The videos run ``run_id`` failed, if they are still not delivered."""
    return VideoScan(
        statuses=frozenset({StreamStatus.ERROR, StreamStatus.NOT_DELIVERED}),
        in_run=(run_id, "failed"),
    )


@dataclass(frozen=True, slots=True)
class Estimate:
    """A dry run: what would be copied and what keeping it in Stream costs per month."""

    summary: ScanSummary
    sample: list[VideoState]

    @property
    def minutes(self) -> float:
        return self.summary.duration_seconds / 60.0

    @property
    def storage_usd_per_month(self) -> float:
        return self.minutes / 1000.0 * STORAGE_USD_PER_1000_MINUTES

    @property
    def delivery_usd_per_full_view(self) -> float:
        """Delivering every copied minute once (a floor for one view each)."""
        return self.minutes / 1000.0 * DELIVERY_USD_PER_1000_MINUTES

    def to_json(self) -> dict[str, Any]:
        return {
            "videos": self.summary.count,
            "minutes": round(self.minutes, 2),
            "unknown_duration": self.summary.unknown_duration,
            "bytes": self.summary.size_bytes,
            "storage_usd_per_month": round(self.storage_usd_per_month, 2),
            "delivery_usd_per_full_view": round(self.delivery_usd_per_full_view, 2),
            "prices": {
                "storage_usd_per_1000_minutes": STORAGE_USD_PER_1000_MINUTES,
                "delivery_usd_per_1000_minutes": DELIVERY_USD_PER_1000_MINUTES,
            },
            "sample": [
                {"id": v.id, "title": v.title, "archive_key": v.spec.archive_key}
                for v in self.sample
            ],
        }


def estimate(catalog: Catalog, scan: VideoScan, *, limit: int | None = None) -> Estimate:
    """Count what ``scan`` covers (at most ``limit`` videos) without sending anything."""
    sample = catalog.scan_videos(scan, limit=min(SAMPLE, limit or SAMPLE))
    if limit is None:
        return Estimate(catalog.summarize(scan), sample)
    # A limited run sends the oldest ``limit`` matches: sum exactly those.
    count = duration = unknown = size = 0.0
    cursor = None
    while count < limit:
        page = catalog.scan_videos(scan, after=cursor, limit=min(1000, int(limit - count)))
        if not page:
            break
        for video in page:
            count += 1
            size += video.spec.size or 0
            if video.spec.duration is None:
                unknown += 1
            else:
                duration += video.spec.duration
        cursor = (page[-1].created_at, page[-1].id)
    summary = ScanSummary(int(count), float(duration), int(unknown), int(size))
    return Estimate(summary, sample)
