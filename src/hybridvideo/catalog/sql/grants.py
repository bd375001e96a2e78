"""The playback :class:`~hybridvideo.playback.grants.GrantStore` on the catalog's database.

Same rules as the catalog repository: one short transaction per call, frozen values out,
driver errors translated by :class:`Transactions`. A grant is unique per (video, subject):
granting again renews it (new expiry, new author) instead of failing, so an app can
re-grant on every purchase without checking first.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError

from hybridvideo.catalog.base import Catalog
from hybridvideo.catalog.sql.engine import Transactions
from hybridvideo.catalog.sql.models import PlaybackGrantRow, Video, utcnow
from hybridvideo.catalog.sql.repository import SqlCatalog
from hybridvideo.errors import ConfigurationError, InvalidInput, NotFound
from hybridvideo.playback.grants import MAX_GRANTS_PAGE, Grant, validate_subject


def _grant(row: PlaybackGrantRow) -> Grant:
    return Grant(
        video_id=row.video_id,
        subject=row.subject,
        created_at=row.created_at,
        expires_at=row.expires_at,
        created_by=row.created_by,
    )


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise InvalidInput(f"{name} must carry a time zone")
    return value


class SqlGrantStore:
    def __init__(self, engine: Engine) -> None:
        self._tx = Transactions(engine)

    @classmethod
    def on_catalog(cls, catalog: Catalog) -> SqlGrantStore:
        """The store on the SQL catalog's engine (one pool for both)."""
        if not isinstance(catalog, SqlCatalog):
            raise ConfigurationError("playback grants need the SQL catalog")
        return cls(catalog._engine)

    def grant(
        self,
        video_id: str,
        subject: str,
        *,
        expires_at: datetime | None = None,
        created_by: str | None = None,
    ) -> Grant:
        subject = validate_subject(subject)
        _aware(expires_at, "expires_at")
        if created_by is not None and len(created_by) > 128:
            raise InvalidInput("created_by must be at most 128 characters")
        for attempt in range(2):
            try:
                with self._tx(write=True) as session:
                    if session.scalar(select(Video.id).where(Video.id == video_id)) is None:
                        raise NotFound(f"video {video_id} not found")
                    row = session.scalar(
                        select(PlaybackGrantRow).where(
                            PlaybackGrantRow.video_id == video_id,
                            PlaybackGrantRow.subject == subject,
                        )
                    )
                    if row is None:
                        row = PlaybackGrantRow(video_id=video_id, subject=subject)
                        session.add(row)
                    row.created_at = utcnow()
                    row.expires_at = expires_at
                    row.created_by = created_by
                    session.flush()
                    return _grant(row)
            except IntegrityError:
                # Two grants for the same pair raced (PostgreSQL); the second pass updates.
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def list_grants(self, video_id: str, *, limit: int = MAX_GRANTS_PAGE) -> list[Grant]:
        if not 1 <= limit <= MAX_GRANTS_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_GRANTS_PAGE}")
        with self._tx() as session:
            if session.scalar(select(Video.id).where(Video.id == video_id)) is None:
                raise NotFound(f"video {video_id} not found")
            rows = session.scalars(
                select(PlaybackGrantRow)
                .where(PlaybackGrantRow.video_id == video_id)
                .order_by(PlaybackGrantRow.created_at, PlaybackGrantRow.id)
                .limit(limit)
            )
            return [_grant(row) for row in rows]

    def revoke(self, video_id: str, subject: str) -> None:
        with self._tx(write=True) as session:
            result = session.execute(
                delete(PlaybackGrantRow).where(
                    PlaybackGrantRow.video_id == video_id, PlaybackGrantRow.subject == subject
                )
            )
            if not getattr(result, "rowcount", 0):
                raise NotFound(f"video {video_id} has no grant for {subject!r}")

    def is_granted(self, video_id: str, subject: str, *, now: datetime) -> bool:
        with self._tx() as session:
            expires = session.execute(
                select(PlaybackGrantRow.expires_at).where(
                    PlaybackGrantRow.video_id == video_id, PlaybackGrantRow.subject == subject
                )
            ).first()
        return expires is not None and (expires[0] is None or expires[0] > now)


__all__ = ["SqlGrantStore"]
