"""Explicit playback grants: "subject S may play video V" (until a time, or for good).

The ``grant`` policy rule reads them; admins manage them through
``/api/v1/videos/{id}/grants``. The protocol lives here, beside its only consumer, in the
style of ``catalog/base.py``; :class:`hybridvideo.catalog.sql.grants.SqlGrantStore`
implements it on the catalog's database (table ``playback_grants``), and one contract
suite runs it on SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from hybridvideo.domain.video import validate_owner_id
from hybridvideo.errors import InvalidInput

MAX_GRANTS_PAGE = 1000


@dataclass(frozen=True, slots=True)
class Grant:
    video_id: str
    subject: str
    created_at: datetime
    expires_at: datetime | None = None
    created_by: str | None = None

    def active(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now


def validate_subject(subject: str) -> str:
    """A subject is the app's user id (JWT ``sub``): the same rules as a video's owner."""
    checked = validate_owner_id(subject)
    if checked is None:
        raise InvalidInput("a grant needs a subject")
    return checked


class GrantStore(Protocol):
    def grant(
        self,
        video_id: str,
        subject: str,
        *,
        expires_at: datetime | None = None,
        created_by: str | None = None,
    ) -> Grant:
        """Add (or renew: a second grant replaces the first's expiry); NotFound for no video."""

    def list_grants(self, video_id: str, *, limit: int = MAX_GRANTS_PAGE) -> list[Grant]:
        """The video's grants, expired ones included, oldest first."""

    def revoke(self, video_id: str, subject: str) -> None:
        """Remove the grant; NotFound when there is none."""

    def is_granted(self, video_id: str, subject: str, *, now: datetime) -> bool:
        """Whether an unexpired grant exists (the one call on the playback path)."""


__all__ = ["MAX_GRANTS_PAGE", "Grant", "GrantStore", "validate_subject"]
