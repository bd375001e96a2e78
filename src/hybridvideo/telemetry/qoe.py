"""QoE beacons: what a player may report, checked before anything is stored.

The reference player (``web/src/player.js``) sends batches of events to
``POST /api/v1/telemetry/qoe``. The endpoint is open to any browser, so everything here is
bounded: a known kind, a well-formed session id, a few small fields per kind, numbers
inside physical ranges (a startup of 3 days is a bug or a forgery, not data), a capped
number of events per batch and a small cohort. What passes is stored as sent; the
telemetry issue computes the KPIs (Mux Data's definitions, see the design notes) later.

Pure: no framework, no database. :class:`BeaconStore` is the boundary the SQL repository
(``catalog/sql/beacons.py``) implements.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hybridvideo.errors import InvalidInput

#: A session id is minted by the player per page view: 16-64 url-safe characters.
SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
VIDEO_ID = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
MAX_EVENTS = 50
MAX_BODY_BYTES = 16 * 1024
MAX_COHORT_KEYS = 16
_COHORT_KEY = re.compile(r"^[a-z][a-z0-9_.-]{0,31}$")
MAX_COHORT_VALUE = 64
MAX_TEXT = 128
HOUR_MS = 3_600_000.0
DAY_S = 86_400.0


@dataclass(frozen=True)
class Field:
    """One field of an event: a number in ``[low, high]``, or bounded text."""

    kind: type
    low: float = 0.0
    high: float = 0.0
    required: bool = True


def _num(high: float, *, low: float = 0.0, required: bool = True) -> Field:
    return Field(float, low, high, required)


def _int(high: float, *, required: bool = True) -> Field:
    return Field(int, 0, high, required)


def _text(*, required: bool = False) -> Field:
    return Field(str, required=required)


def _flag(*, required: bool = False) -> Field:
    return Field(bool, required=required)


#: Each kind and its fields. Durations in milliseconds, watch time in seconds.
KINDS: dict[str, dict[str, Field]] = {
    # play requested -> first `playing` (Mux's Video Startup Time)
    "startup": {"ms": _num(10 * 60_000.0), "native": _flag()},
    # one rebuffer (`waiting` -> `playing`, seeks excluded)
    "rebuffer": {"ms": _num(HOUR_MS), "position": _num(DAY_S, required=False)},
    "error": {
        "fatal": _flag(required=True),
        "type": _text(required=True),
        "details": _text(),
        "status": _int(999, required=False),
    },
    "bitrate": {
        "level": _int(64),
        "bitrate": _int(1_000_000_000),
        "height": _int(10_000, required=False),
        "auto": _flag(),
    },
    # the view so far, sent at the end (pagehide, ended) and now and then
    "watch": {
        "seconds": _num(DAY_S),
        "rebuffers": _int(100_000),
        "rebufferMs": _num(DAY_S * 1000.0),
        "final": _flag(),
    },
}


@dataclass(frozen=True)
class Beacon:
    """One validated event, ready to store."""

    session_id: str
    video_id: str
    kind: str
    data: dict[str, Any]
    cohort: dict[str, str] = field(default_factory=dict)
    viewer: str | None = None


@dataclass(frozen=True)
class BeaconBatch:
    session_id: str
    video_id: str
    cohort: dict[str, str]
    events: tuple[tuple[str, dict[str, Any]], ...]

    def beacons(self, viewer: str | None = None) -> list[Beacon]:
        return [
            Beacon(self.session_id, self.video_id, kind, data, self.cohort, viewer)
            for kind, data in self.events
        ]


class BeaconStore(Protocol):
    """Where beacons go (the catalog's ``qoe_beacons`` table)."""

    def add_beacons(self, beacons: Sequence[Beacon]) -> int:
        """Store every beacon in one transaction; the number stored."""
        ...

    def session_beacons(self, session_id: str) -> list[Beacon]:
        """A session's beacons in arrival order (tests, support)."""
        ...


def _value(name: str, spec: Field, raw: object) -> object:
    if spec.kind is bool:
        if not isinstance(raw, bool):
            raise InvalidInput(f"{name} must be true or false")
        return raw
    if spec.kind is str:
        if not isinstance(raw, str) or not raw or len(raw) > MAX_TEXT or not raw.isprintable():
            raise InvalidInput(f"{name} must be printable text of at most {MAX_TEXT} characters")
        return raw
    # numbers: JSON booleans are ints in Python, refuse them
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise InvalidInput(f"{name} must be a number")
    number = float(raw)
    if not math.isfinite(number) or not spec.low <= number <= spec.high:
        raise InvalidInput(f"{name} must be between {spec.low:g} and {spec.high:g}")
    if spec.kind is int:
        if number != int(number):
            raise InvalidInput(f"{name} must be a whole number")
        return int(number)
    return round(number, 3)


def parse_event(raw: object, index: int) -> tuple[str, dict[str, Any]]:
    where = f"events[{index}]"
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where} must be an object")
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise InvalidInput(f"{where}.kind must be one of {', '.join(sorted(KINDS))}")
    fields = KINDS[kind]
    unknown = set(raw) - set(fields) - {"kind"}
    if unknown:
        raise InvalidInput(f"{where} has unknown fields: {', '.join(sorted(unknown)[:5])}")
    data: dict[str, Any] = {}
    for name, spec in fields.items():
        if name not in raw or raw[name] is None:
            if spec.required:
                raise InvalidInput(f"{where}.{name} is required")
            continue
        data[name] = _value(f"{where}.{name}", spec, raw[name])
    return kind, data


def parse_cohort(raw: object) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) > MAX_COHORT_KEYS:
        raise InvalidInput(f"cohort must be an object of at most {MAX_COHORT_KEYS} entries")
    cohort: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or _COHORT_KEY.match(key) is None:
            raise InvalidInput("cohort keys are short lower-case names")
        if isinstance(value, bool):
            value = "on" if value else "off"
        if not isinstance(value, str) or len(value) > MAX_COHORT_VALUE or not value.isprintable():
            raise InvalidInput(f"cohort values are text of at most {MAX_COHORT_VALUE} characters")
        cohort[key] = value
    return cohort


def parse_batch(payload: object) -> BeaconBatch:
    """``{"sessionId", "videoId", "cohort"?, "events": [{"kind", ...}, ...]}`` checked."""
    if not isinstance(payload, dict):
        raise InvalidInput("the body must be a JSON object")
    unknown = set(payload) - {"sessionId", "videoId", "cohort", "events"}
    if unknown:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown)[:5])}")
    session_id = payload.get("sessionId")
    if not isinstance(session_id, str) or SESSION_ID.match(session_id) is None:
        raise InvalidInput("sessionId must be 16-64 letters, digits, '-' or '_'")
    video_id = payload.get("videoId")
    if not isinstance(video_id, str) or VIDEO_ID.match(video_id) is None:
        raise InvalidInput("videoId is not a video id")
    events = payload.get("events")
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS:
        raise InvalidInput(f"events must be a list of 1 to {MAX_EVENTS} events")
    parsed = tuple(parse_event(raw, i) for i, raw in enumerate(events))
    return BeaconBatch(session_id, video_id, parse_cohort(payload.get("cohort")), parsed)


class SessionBudget:
    """At most ``per_session`` events per session and ``total`` events overall in a sliding
    ``window`` (seconds), per process: a player sends a few dozen events per view, so a
    flood is refused (429) before it reaches the database."""

    def __init__(
        self, *, per_session: int = 600, total: int = 20_000, window: float = 60.0
    ) -> None:
        self.per_session = per_session
        self.total = total
        self.window = window
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._sessions: dict[str, int] = {}
        self._count = 0

    def take(self, session_id: str, events: int, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            if now - self._start >= self.window:  # a fixed window: cheap and bounded
                self._start, self._sessions, self._count = now, {}, 0
            used = self._sessions.get(session_id, 0)
            if used + events > self.per_session or self._count + events > self.total:
                return False
            self._sessions[session_id] = used + events
            self._count += events
            return True


def cohort_of(settings: Mapping[str, object]) -> dict[str, str]:
    """The player's flag cohort from plain settings (until the flags issue lands)."""
    return {
        key: ("on" if value else "off") if isinstance(value, bool) else str(value)
        for key, value in settings.items()
    }
