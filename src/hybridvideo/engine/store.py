"""The engine's state on SQLAlchemy: videos, signing keys, the webhook and its deliveries.

Like the catalog's repository, each method is one short transaction that hands back frozen
values, never ORM objects, and driver failures are translated once by
:func:`~hybridvideo.catalog.sql.engine.translate_errors`. The store keeps Cloudflare's
vocabulary (states, ``pctComplete`` strings, ``-1`` for unknown) so that the HTTP layer
and the encoder agree on one meaning, and it checks the invariants its columns rely on;
the friendlier request validation (with Cloudflare's limits) lives in the API.

Decisions where Cloudflare says nothing:

* ``uploaded`` is stamped the first time a video leaves ``pendingupload``/``downloading``
  (the engine has the bytes), ``readyToStreamAt`` the first time it becomes playable.
* ``put_webhook`` with the URL already stored changes nothing (same secret, same
  ``modified``): PUT is idempotent and a retried request must not invalidate the secret
  the caller just saved. A different URL gets a new secret ("Updating the webhook URL
  rotates the signing secret").
* Storage minutes count every video that is not in ``error`` (whose duration is known),
  plus the reserved ``maxDurationSeconds`` of videos still waiting for their upload, as
  Cloudflare's pricing page describes.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import fields
from datetime import datetime
from typing import Any, TypeVar, Unpack

from sqlalchemy import ColumnElement, Engine, Select, bindparam, event, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from hybridvideo.catalog.sql.engine import WRITE_OPTION, translate_errors
from hybridvideo.catalog.sql.models import UtcDateTime, utcnow
from hybridvideo.engine.models import (
    DELIVERY_STATES,
    MAX_LIST,
    UNSET,
    VIDEO_STATES,
    EngineKey,
    EngineKeyRow,
    EngineVideo,
    EngineVideoRow,
    EngineWebhookDeliveryRow,
    EngineWebhookRow,
    NewVideo,
    VideoEdit,
    VideoQuery,
    Webhook,
    WebhookDelivery,
)
from hybridvideo.errors import BackendUnavailable, InvalidInput, NotFound

MAX_CREATOR = 64
_WAITING = ("pendingupload", "downloading")
T = TypeVar("T")
_NEW_VIDEO: dict[str, Any] = {
    "state": "downloading",
    "meta": {},
    "allowed_origins": (),
    "require_signed_urls": False,
    "thumbnail_timestamp_pct": 0.0,
}


def new_uid() -> str:
    """A Cloudflare-style media id: 32 lower-case hex characters."""
    return secrets.token_hex(16)


def new_webhook_secret() -> str:
    return secrets.token_hex(16)


def format_pct(pct: float) -> str:
    """Cloudflare's ``pctComplete`` string (``"39.000000"``)."""
    value = float(pct)
    if not 0.0 <= value <= 100.0:
        raise InvalidInput(f"pctComplete must be between 0 and 100, not {pct!r}")
    return f"{value:.6f}"


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    """Check and normalise the user-editable columns present in ``values``."""
    creator = values.get("creator")
    if creator is not None and len(creator) > MAX_CREATOR:
        raise InvalidInput(f"creator must be at most {MAX_CREATOR} characters")
    if "thumbnail_timestamp_pct" in values:
        pct = float(values["thumbnail_timestamp_pct"])
        if not 0.0 <= pct <= 1.0:
            raise InvalidInput("thumbnailTimestampPct must be between 0.0 and 1.0")
        values["thumbnail_timestamp_pct"] = pct
    if "meta" in values:
        values["meta"] = dict(values["meta"] or {})
        name = values["meta"].get("name")
        values["name"] = name[:1024] if isinstance(name, str) else None
    if "allowed_origins" in values:
        values["allowed_origins"] = list(values["allowed_origins"])
    if "require_signed_urls" in values:
        values["require_signed_urls"] = bool(values["require_signed_urls"])
    return values


def relax_sqlite_durability(engine: Engine) -> None:
    """SQLite only: commit with ``synchronous=NORMAL`` instead of the default ``FULL``.

    For the engine's test modes (accept-only load tests), never by default. In WAL mode
    NORMAL still survives a crashed process and never corrupts the file; it skips the
    fsync of each commit, so a power loss may forget the last commits. That fsync is most
    of a copy's cost (about 1.6 ms of 2 ms per ``create_video`` here). A no-op for
    other databases.
    """
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()


#: :meth:`EngineStore.accept`'s statement, built once (its cache key is then memoised).
_NOW = bindparam("b_now", type_=UtcDateTime())
_ACCEPT = (
    update(EngineVideoRow)
    .where(
        EngineVideoRow.uid == bindparam("b_uid"),
        EngineVideoRow.state.not_in(("ready", "error")),
    )
    .values(
        state="ready",
        pct_complete=format_pct(100),
        error_reason_code=None,
        error_reason_text=None,
        ready_to_stream=True,
        ready_to_stream_at=func.coalesce(EngineVideoRow.ready_to_stream_at, _NOW),
        uploaded=func.coalesce(EngineVideoRow.uploaded, _NOW),
        modified=_NOW,
    )
)


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class EngineStore:
    """The engine's tables behind a SQLAlchemy :class:`Engine` (``create_catalog_engine``)."""

    def __init__(self, engine: Engine) -> None:
        self._reader = sessionmaker(engine, expire_on_commit=False)
        self._writer = sessionmaker(
            engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False
        )

    def ping(self) -> None:
        """Raise ``BackendUnavailable`` unless the engine's tables answer and are current."""
        from hybridvideo.engine.migrate import head_revision, revision_of

        with translate_errors(), self._reader.begin() as session:
            current = revision_of(session.connection())
        if current != head_revision():
            raise BackendUnavailable(
                "the engine's tables are not migrated; run `hybridvideo db upgrade`"
            )

    @contextmanager
    def _tx(self, *, write: bool = False) -> Iterator[Session]:
        with translate_errors(), (self._writer if write else self._reader).begin() as session:
            yield session

    # -- videos --------------------------------------------------------------------------

    def create_video(self, account_id: str, **new: Unpack[NewVideo]) -> EngineVideo:
        """A new video of ``account_id``; it starts ``downloading`` unless told otherwise."""
        values = _clean({**_NEW_VIDEO, **new})
        if values["state"] not in VIDEO_STATES:
            raise InvalidInput(f"unknown video state {values['state']!r}")
        now = utcnow()
        values.update(uid=new.get("uid") or new_uid(), account_id=account_id)
        row = EngineVideoRow(
            **values,
            duration=-1.0,
            width=-1,
            height=-1,
            size=0,
            ready_to_stream=False,
            created=now,
            modified=now,
        )
        with self._tx(write=True) as session:
            session.add(row)
            session.flush()
            return row.to_value()

    def get_video(self, uid: str) -> EngineVideo:
        with self._tx() as session:
            return self._load(session, uid).to_value()

    def list_videos(self, account_id: str, query: VideoQuery) -> list[EngineVideo]:
        if not 1 <= query.limit <= MAX_LIST:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIST}")
        order = (
            (EngineVideoRow.created.asc(), EngineVideoRow.uid.asc())
            if query.asc
            else (EngineVideoRow.created.desc(), EngineVideoRow.uid.desc())
        )
        stmt = self._filtered(select(EngineVideoRow), account_id, query)
        with self._tx() as session:
            rows = session.scalars(stmt.order_by(*order).limit(query.limit))
            return [r.to_value() for r in rows]

    def count_videos(self, account_id: str, query: VideoQuery) -> int:
        """How many videos match ``query``'s filters and cursors, ignoring its limit."""
        stmt = self._filtered(select(func.count()).select_from(EngineVideoRow), account_id, query)
        with self._tx() as session:
            return int(session.scalar(stmt) or 0)

    def update_video(self, uid: str, edit: VideoEdit) -> EngineVideo:
        fields_given = {f.name: getattr(edit, f.name) for f in fields(VideoEdit)}
        wanted = _clean({k: v for k, v in fields_given.items() if v is not UNSET})
        if not wanted:
            return self.get_video(uid)
        return self._change(uid, wanted)

    def set_processing_state(
        self,
        uid: str,
        state: str,
        *,
        pct: float | None = None,
        error: tuple[str, str] | None = None,
        ready_to_stream: bool | None = None,
        media: Mapping[str, Any] | None = None,
        duration: float | None = None,
        width: int | None = None,
        height: int | None = None,
        size: int | None = None,
    ) -> EngineVideo:
        """Record the encoder's progress; the engine's only writer of ``status``.

        ``pct`` defaults to 100 when ``state`` is ``ready`` and otherwise keeps the last
        value; error fields are set only in ``error`` (``ERR_UNKNOWN`` if none is given)
        and cleared in any other state, so a retried video does not carry an old reason.
        """
        if state not in VIDEO_STATES:
            raise InvalidInput(f"unknown video state {state!r}")
        wanted: dict[str, Any] = {"state": state}
        if pct is not None:
            wanted["pct_complete"] = format_pct(pct)
        elif state == "ready":
            wanted["pct_complete"] = format_pct(100)
        code, text = error if error is not None else ("ERR_UNKNOWN", "")
        wanted["error_reason_code"] = code if state == "error" else None
        wanted["error_reason_text"] = text if state == "error" else None
        if ready_to_stream is not None:
            wanted["ready_to_stream"] = ready_to_stream
        if media is not None:
            wanted["media_manifest"] = dict(media)
        facts = {"duration": duration, "width": width, "height": height, "size": size}
        wanted.update({name: value for name, value in facts.items() if value is not None})

        def stamp(row: EngineVideoRow, now: datetime) -> None:
            if row.uploaded is None and state not in _WAITING:
                row.uploaded = now
            if not row.ready_to_stream:
                row.ready_to_stream_at = None
            elif row.ready_to_stream_at is None:
                row.ready_to_stream_at = now

        return self._change(uid, wanted, stamp)

    def accept(self, uid: str) -> bool:
        """Accept-only mode: make an unfinished video ``ready`` with no media, in one
        statement; True if this call did (False: finished already, or gone).

        The same end state as ``set_processing_state(uid, "ready", ready_to_stream=True)``
        (``pctComplete`` 100, no error, ``uploaded`` and ``readyToStreamAt`` stamped),
        without loading the row first: this runs once per copy in a load test, and one
        prepared ``UPDATE`` costs about a third of a load-and-change.
        """
        with self._tx(write=True) as session:
            result = session.connection().execute(_ACCEPT, {"b_uid": uid, "b_now": utcnow()})
            return result.rowcount > 0

    def delete_video(self, uid: str) -> None:
        with self._tx(write=True) as session:
            session.delete(self._load(session, uid, lock=True))

    def storage_usage(self, account_id: str, creator: str | None = None) -> tuple[float, int]:
        """``(minutes stored, video count)`` for the account, optionally one creator's."""
        conditions = [EngineVideoRow.account_id == account_id]
        if creator is not None:
            conditions.append(EngineVideoRow.creator == creator)
        stmt = select(
            EngineVideoRow.state, EngineVideoRow.duration, EngineVideoRow.max_duration_seconds
        ).where(*conditions)
        seconds, count = 0.0, 0
        with self._tx() as session:
            for state, duration, reserved in session.execute(stmt):
                count += 1
                if state == "error":
                    continue
                if duration > 0:
                    seconds += duration
                elif state in _WAITING and reserved:
                    seconds += reserved
        return round(seconds / 60.0, 4), count

    # -- signing keys --------------------------------------------------------------------

    def add_key(
        self,
        account_id: str,
        key_id: str,
        public_jwk: Mapping[str, Any],
        *,
        private_pem: str | None = None,
    ) -> EngineKey:
        row = EngineKeyRow(
            id=key_id,
            account_id=account_id,
            public_jwk=dict(public_jwk),
            private_pem=private_pem,
            created=utcnow(),
        )
        with self._tx(write=True) as session:
            if session.get(EngineKeyRow, key_id) is not None:
                raise InvalidInput(f"signing key {key_id} already exists")
            session.add(row)
            session.flush()
            return row.to_value()

    def list_keys(self, account_id: str, *, include_internal: bool = False) -> list[EngineKey]:
        """The account's live keys, oldest first; the engine's own key only on request."""
        stmt = self._live_keys(account_id)
        if not include_internal:
            stmt = stmt.where(EngineKeyRow.private_pem.is_(None))
        with self._tx() as session:
            return [r.to_value() for r in session.scalars(stmt)]

    def get_key(self, account_id: str, key_id: str) -> EngineKey:
        """A live key of the account; revoked or foreign keys are :class:`NotFound`."""
        with self._tx() as session:
            row = session.scalar(self._live_keys(account_id).where(EngineKeyRow.id == key_id))
            if row is None:
                raise NotFound(f"signing key {key_id} not found")
            return row.to_value()

    def revoke_key(self, account_id: str, key_id: str) -> EngineKey:
        with self._tx(write=True) as session:
            row = session.scalar(
                self._live_keys(account_id).where(EngineKeyRow.id == key_id).with_for_update()
            )
            if row is None:
                raise NotFound(f"signing key {key_id} not found")
            row.revoked_at = utcnow()
            session.flush()
            return row.to_value()

    def live_public_keys(self, account_id: str) -> dict[str, dict[str, Any]]:
        """``{key id: public JWK}`` of every unrevoked key, the engine's own included."""
        return {k.id: k.public_jwk for k in self.list_keys(account_id, include_internal=True)}

    def internal_key(self, account_id: str) -> EngineKey | None:
        """The engine's own signing key for ``/token`` (the oldest live one), if any."""
        keys = [k for k in self.list_keys(account_id, include_internal=True) if k.internal]
        return keys[0] if keys else None

    # -- webhook -------------------------------------------------------------------------

    def get_webhook(self, account_id: str) -> Webhook | None:
        with self._tx() as session:
            row = session.get(EngineWebhookRow, account_id)
            return None if row is None else row.to_value()

    def put_webhook(self, account_id: str, notification_url: str) -> Webhook:
        """Subscribe ``notification_url``; see the module notes on when the secret rotates."""
        with self._tx(write=True) as session:
            row = session.get(EngineWebhookRow, account_id, with_for_update=True)
            if row is None:
                row = EngineWebhookRow(account_id=account_id)
                session.add(row)
            elif row.notification_url == notification_url:
                return row.to_value()
            row.notification_url = notification_url
            row.secret = new_webhook_secret()
            row.modified = utcnow()
            session.flush()
            return row.to_value()

    def delete_webhook(self, account_id: str) -> None:
        with self._tx(write=True) as session:
            row = session.get(EngineWebhookRow, account_id, with_for_update=True)
            if row is None:
                raise NotFound("no webhook is configured for this account")
            session.delete(row)

    def record_delivery(self, account_id: str, video_uid: str, url: str) -> WebhookDelivery:
        row = EngineWebhookDeliveryRow(
            id=uuid.uuid4().hex,
            account_id=account_id,
            video_uid=video_uid,
            url=url,
            state="pending",
            attempts=0,
            created=utcnow(),
        )
        with self._tx(write=True) as session:
            session.add(row)
            session.flush()
            return row.to_value()

    def get_delivery(self, delivery_id: str) -> WebhookDelivery:
        with self._tx() as session:
            row = session.get(EngineWebhookDeliveryRow, delivery_id)
            if row is None:
                raise NotFound(f"webhook delivery {delivery_id} not found")
            return row.to_value()

    def update_delivery(
        self,
        delivery_id: str,
        *,
        state: str,
        last_status: int | None = None,
        last_error: str | None = None,
        attempted: bool = True,
    ) -> WebhookDelivery:
        """Record one attempt's outcome (``attempted`` counts it) and the new state."""
        if state not in DELIVERY_STATES:
            raise InvalidInput(f"unknown delivery state {state!r}")
        with self._tx(write=True) as session:
            row = session.get(EngineWebhookDeliveryRow, delivery_id, with_for_update=True)
            if row is None:
                raise NotFound(f"webhook delivery {delivery_id} not found")
            row.state = state
            row.attempts += int(attempted)
            row.last_status, row.last_error = last_status, last_error
            if state == "delivered" and row.delivered_at is None:
                row.delivered_at = utcnow()
            session.flush()
            return row.to_value()

    # -- helpers -------------------------------------------------------------------------

    def _change(
        self,
        uid: str,
        wanted: Mapping[str, Any],
        after: Callable[[EngineVideoRow, datetime], None] | None = None,
    ) -> EngineVideo:
        with self._tx(write=True) as session:
            row = self._load(session, uid, lock=True)
            now = utcnow()
            for name, value in wanted.items():
                setattr(row, name, value)
            if after is not None:
                after(row, now)
            row.modified = now
            session.flush()
            return row.to_value()

    @staticmethod
    def _load(session: Session, uid: str, *, lock: bool = False) -> EngineVideoRow:
        stmt = select(EngineVideoRow).where(EngineVideoRow.uid == uid)
        row = session.scalar(stmt.with_for_update() if lock else stmt)
        if row is None:
            raise NotFound(f"video {uid} not found")
        return row

    @staticmethod
    def _live_keys(account_id: str) -> Select[EngineKeyRow]:
        return (
            select(EngineKeyRow)
            .where(EngineKeyRow.account_id == account_id, EngineKeyRow.revoked_at.is_(None))
            .order_by(EngineKeyRow.created, EngineKeyRow.id)
        )

    @staticmethod
    def _filtered(stmt: Select[T], account_id: str, query: VideoQuery) -> Select[T]:
        conditions: list[ColumnElement[bool]] = [EngineVideoRow.account_id == account_id]
        if query.after is not None:
            conditions.append(EngineVideoRow.created > query.after)
        if query.before is not None:
            conditions.append(EngineVideoRow.created < query.before)
        if query.status is not None:
            conditions.append(EngineVideoRow.state == query.status)
        if query.creator is not None:
            conditions.append(EngineVideoRow.creator == query.creator)
        if query.uids is not None:
            conditions.append(EngineVideoRow.uid.in_(query.uids))
        if query.video_name is not None:
            conditions.append(EngineVideoRow.name == query.video_name)
        if query.search and query.search.strip():
            pattern = f"%{_escape_like(query.search.strip())}%"
            conditions.append(EngineVideoRow.name.ilike(pattern, escape="\\"))
        return stmt.where(*conditions)


__all__ = [
    "MAX_CREATOR",
    "EngineStore",
    "format_pct",
    "new_uid",
    "new_webhook_secret",
    "relax_sqlite_durability",
]
