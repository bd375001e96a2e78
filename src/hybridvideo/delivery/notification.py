"""Read a Stream webhook body (Cloudflare's bare Video object) into a :class:`StreamVideo`.

Cloudflare POSTs the video object itself, no envelope and no event type: ``status.state``
(``ready`` or ``error``) says what happened. The webhooks page spells the error fields
``errReasonCode``/``errReasonText`` where the Video schema says ``errorReasonCode``/
``errorReasonText``; both are read. ``-1`` means unknown for ``duration``, ``size`` and
the picture size, as in the API. Only ``uid`` and ``status.state`` are required; anything
else malformed is dropped rather than refused, since the signature already proved the
sender and a richer future body must not stop status updates.

Pure: no framework, no I/O. The webhook router calls it only after the signature checks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from hybridvideo.errors import InvalidInput
from hybridvideo.stream.base import StreamVideo

#: Cloudflare's uids are 32 hex digits; the catalog column holds up to 64 characters.
_UID = re.compile(r"[0-9A-Za-z_-]{1,64}")
_STATE = re.compile(r"[a-z-]{1,32}")
_MAX_TEXT = 1000


def parse_stream_video(body: bytes) -> StreamVideo:
    """The video a webhook reports; ``InvalidInput`` if it is not a video object."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the webhook body is not JSON") from None
    if not isinstance(document, dict):
        raise InvalidInput("the webhook body is not a Stream video object")
    return stream_video_from(document)


def stream_video_from(document: Mapping[str, Any]) -> StreamVideo:
    uid = document.get("uid")
    if not isinstance(uid, str) or not _UID.fullmatch(uid):
        raise InvalidInput("the webhook body has no valid video uid")
    status = document.get("status")
    if not isinstance(status, dict):
        raise InvalidInput("the webhook body has no status object")
    state = status.get("state")
    if not isinstance(state, str) or not _STATE.fullmatch(state):
        raise InvalidInput("the webhook body has no valid status.state")
    picture = _object(document.get("input"))
    playback = _object(document.get("playback"))
    meta = document.get("meta")
    return StreamVideo(
        uid=uid,
        state=state,
        pct_complete=_number(status.get("pctComplete")),
        ready_to_stream=document.get("readyToStream") is True,
        error_code=_text(status.get("errorReasonCode")) or _text(status.get("errReasonCode")),
        error_text=_text(status.get("errorReasonText")) or _text(status.get("errReasonText")),
        duration=_known(_number(document.get("duration"))),
        width=_whole(picture.get("width")),
        height=_whole(picture.get("height")),
        size=_whole(document.get("size")),
        require_signed_urls=document.get("requireSignedURLs") is True,
        thumbnail=_text(document.get("thumbnail")),
        hls=_text(playback.get("hls")),
        dash=_text(playback.get("dash")),
        creator=_text(document.get("creator")),
        meta=dict(meta) if isinstance(meta, dict) else {},
        created=_time(document.get("created")),
        modified=_time(document.get("modified")),
    )


def _object(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str | None:
    return value[:_MAX_TEXT] if isinstance(value, str) and value else None


def _number(value: object) -> float | None:
    """A number, or a numeric string (``pctComplete`` is ``"39.000000"``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and len(value) <= 32:
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _known(value: float | None) -> float | None:
    return value if value is not None and value >= 0 else None


def _whole(value: object) -> int | None:
    number = _known(_number(value))
    return int(number) if number is not None and number < 2**63 else None


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    text = value.replace("Z", "+00:00")
    # Cloudflare sends nanoseconds (".872170843"); Python reads at most microseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    # A time without a zone is read as UTC: it is compared with the catalog's aware times.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
