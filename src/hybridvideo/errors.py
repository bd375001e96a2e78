"""The domain's error tree, with stable codes and no HTTP knowledge.

::

    HybridVideoError                 (code: INTERNAL)
    ├── ConfigurationError           CONFIG_INVALID       a setting is missing or wrong
    ├── InvalidInput                 INVALID_INPUT        the caller sent something unusable
    │   ├── InvalidKey               INVALID_KEY          an archive key that is unsafe or too long
    │   ├── NotAVideo                NOT_A_VIDEO          a file no demuxer reads as video
    │   └── RangeNotSatisfiable      RANGE_NOT_SATISFIABLE outside the object
    ├── NotFound                     NOT_FOUND            the thing asked for does not exist
    ├── Conflict                     CONFLICT             the request clashes with stored state
    │   └── InvalidTransition        INVALID_TRANSITION   a status move the state machine forbids
    ├── Unauthorized                 UNAUTHORIZED         missing or wrong credentials
    └── BackendUnavailable           BACKEND_UNAVAILABLE  a store, queue or catalog is unreachable

Adapters translate their drivers' exceptions into these at the edge (a missing S3 object
becomes :class:`NotFound`, a refused connection :class:`BackendUnavailable`); only
``hybridvideo.api.errors`` maps codes to HTTP status. ``message`` is written for the
client; internal detail goes in ``detail`` and is logged, never returned.
"""

from __future__ import annotations


class HybridVideoError(Exception):
    """Base of every error the project raises on purpose."""

    code = "INTERNAL"

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class ConfigurationError(HybridVideoError):
    code = "CONFIG_INVALID"


class InvalidInput(HybridVideoError):
    code = "INVALID_INPUT"


class InvalidKey(InvalidInput):
    code = "INVALID_KEY"


class NotAVideo(InvalidInput):
    code = "NOT_A_VIDEO"


class RangeNotSatisfiable(InvalidInput):
    code = "RANGE_NOT_SATISFIABLE"

    def __init__(self, message: str, *, size: int, detail: str | None = None) -> None:
        super().__init__(message, detail=detail)
        self.size = size


class NotFound(HybridVideoError):
    code = "NOT_FOUND"


class Conflict(HybridVideoError):
    code = "CONFLICT"


class InvalidTransition(Conflict):
    code = "INVALID_TRANSITION"


class Unauthorized(HybridVideoError):
    code = "UNAUTHORIZED"


class BackendUnavailable(HybridVideoError):
    code = "BACKEND_UNAVAILABLE"


__all__ = [
    "BackendUnavailable",
    "ConfigurationError",
    "Conflict",
    "HybridVideoError",
    "InvalidInput",
    "InvalidKey",
    "InvalidTransition",
    "NotAVideo",
    "NotFound",
    "RangeNotSatisfiable",
    "Unauthorized",
]
