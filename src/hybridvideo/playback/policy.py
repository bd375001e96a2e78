"""Who may play what: a pluggable, ordered list of rules.

``HYBRIDVIDEO_PLAYBACK_POLICY`` names the rules, tried in order; the first that allows
wins, and if none does the answer depends on who asked: an anonymous viewer is told to sign
in (401) when some rule could let a signed-in viewer play, a signed-in one is refused
(403). The rules:

``public``     anyone, signed in or not (a whole deployment of open videos);
``signed_in``  any viewer with a valid JWT (a members-only site);
``owner``      the video's ``owner_id`` is the viewer's ``sub`` (a user's own uploads);
``grant``      an unexpired row in ``playback_grants`` (purchases, shares);
``admin``      the viewer's JWT carries the admin claim (``role=admin`` by default; a
               dotted path such as ``app_metadata.role=admin`` reaches nested claims, and
               a list claim matches when it contains the value).

Videos in ``HYBRIDVIDEO_PLAYBACK_PUBLIC_COLLECTIONS`` are public whatever the rules. The
default ``owner,grant,admin`` is closed: nothing plays for strangers until a rule or a
grant says so, which is the safe failure for an app that has not thought about it yet.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hybridvideo.domain.video import VideoState
from hybridvideo.errors import ConfigurationError
from hybridvideo.playback.grants import GrantStore
from hybridvideo.playback.identity import Viewer

RULES = ("public", "signed_in", "owner", "grant", "admin")


class Decision(enum.Enum):
    ALLOW = "allow"
    #: Nobody signed in, and a signed-in viewer might be allowed: 401.
    SIGN_IN = "sign_in"
    #: The viewer is known and no rule lets them play: 403.
    DENY = "deny"


@dataclass(frozen=True)
class AdminClaim:
    """``path=value``: the claim (dotted path into nested objects) and the value it needs."""

    path: tuple[str, ...]
    value: str

    @classmethod
    def parse(cls, text: str) -> AdminClaim:
        name, sep, value = text.partition("=")
        path = tuple(part.strip() for part in name.split("."))
        if not sep or not value.strip() or not all(path):
            raise ConfigurationError(
                f"HYBRIDVIDEO_PLAYBACK_ADMIN_CLAIM must be claim=value, not {text!r}"
            )
        return cls(path, value.strip())

    def matches(self, claims: Mapping[str, Any]) -> bool:
        current: Any = claims
        for part in self.path:
            if not isinstance(current, Mapping) or part not in current:
                return False
            current = current[part]
        if isinstance(current, list):
            return self.value in current
        return isinstance(current, str) and current == self.value


def parse_rules(text: str) -> tuple[str, ...]:
    rules = tuple(dict.fromkeys(r.strip().lower() for r in text.split(",") if r.strip()))
    unknown = [r for r in rules if r not in RULES]
    if unknown:
        raise ConfigurationError(
            f"HYBRIDVIDEO_PLAYBACK_POLICY: unknown rule(s) {', '.join(unknown)}; "
            f"use {', '.join(RULES)}"
        )
    return rules


def parse_collections(text: str) -> frozenset[str]:
    return frozenset(c.strip() for c in text.split(",") if c.strip())


class PlaybackPolicy:
    def __init__(
        self,
        rules: Iterable[str],
        *,
        grants: GrantStore,
        admin_claim: AdminClaim,
        public_collections: Iterable[str] = (),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.rules = tuple(rules)
        self._grants = grants
        self._admin = admin_claim
        self._public = frozenset(public_collections)
        self._clock = clock

    def decide(self, video: VideoState, viewer: Viewer) -> Decision:
        if video.collection in self._public:
            return Decision.ALLOW
        for rule in self.rules:
            if self._allows(rule, video, viewer):
                return Decision.ALLOW
        if viewer.anonymous and any(r != "public" for r in self.rules):
            return Decision.SIGN_IN
        return Decision.DENY

    def _allows(self, rule: str, video: VideoState, viewer: Viewer) -> bool:
        if rule == "public":
            return True
        if viewer.subject is None:
            return False
        if rule == "signed_in":
            return True
        if rule == "owner":
            return video.owner_id is not None and video.owner_id == viewer.subject
        if rule == "grant":
            return self._grants.is_granted(video.id, viewer.subject, now=self._clock())
        if rule == "admin":
            return self._admin.matches(viewer.claims)
        return False


__all__ = [
    "RULES",
    "AdminClaim",
    "Decision",
    "PlaybackPolicy",
    "parse_collections",
    "parse_rules",
]
