"""The archive store contract.

Masters are immutable and the system never deletes them on its own: :meth:`ArchiveStore.delete`
exists only for the explicit operator command. Every method validates its key with
:func:`hybridvideo.domain.keys.validate_key` and raises domain errors only, never a driver's
exception: ``NotFound``, ``InvalidKey``, ``InvalidInput`` (expiry out of bounds, a reversed
range), ``RangeNotSatisfiable``, ``Conflict`` (a key that clashes with the local folder's
layout) and ``BackendUnavailable``; ``verify_signed`` raises ``Unauthorized``.

Optional abilities are declared in :class:`Capabilities`, returned by the store itself, so
what the HTTP layer offers (for instance serving our own signed URLs for a local folder)
follows from one value and cannot drift from the code.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, Protocol, runtime_checkable

from hybridvideo.errors import InvalidInput, RangeNotSatisfiable


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    etag: str | None = None
    content_type: str | None = None
    last_modified: datetime | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a store can do beyond the core contract.

    ``serves_signed_urls``: presigned URLs point at *our* app, which must mount the route
    that verifies and serves them (the local folder store). ``multipart``: large puts are
    split into parts by the backend protocol (S3/R2).
    """

    serves_signed_urls: bool = False
    multipart: bool = False


@runtime_checkable
class ArchiveStore(Protocol):
    """A bucket of immutable objects addressed by validated keys."""

    @property
    def bucket(self) -> str:
        """The bucket name recorded in the catalog (``archive_bucket``)."""

    @property
    def capabilities(self) -> Capabilities: ...

    def put(
        self,
        key: str,
        data: BinaryIO,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Stream ``data`` to ``key`` until EOF; large objects go up in parts.

        The object appears whole or not at all: a failed put leaves no partial object and
        no dangling multipart upload.
        """

    def open(self, key: str, *, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Yield the bytes ``start..end`` (``end`` inclusive, ``None`` = to the end).

        Raises ``NotFound`` before yielding if the key is absent and ``InvalidInput`` when the
        range starts beyond the object.
        """

    def head(self, key: str) -> ObjectInfo:
        """Describe ``key`` or raise ``NotFound``."""

    def exists(self, key: str) -> bool: ...

    def presign_get(self, key: str, *, expires_in: int) -> str:
        """A URL anyone can GET (with Range) for ``expires_in`` seconds (1 s .. 7 days)."""

    def public_url(self, key: str) -> str | None:
        """The permanent public URL of ``key`` (thumbnails), or None if not configured."""

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose keys start with ``prefix``, in key order."""

    def move(self, source: str, target: str, *, content_type: str | None = None) -> ObjectInfo:
        """Give the object at ``source`` the key ``target`` (same bytes), then drop ``source``.

        Used to file a finished upload (``incoming/<id>``) under its master key without
        sending the bytes through us: a rename on a folder, a server-side copy on S3
        (multipart copy above 5 GiB). ``target`` appears whole or not at all; repeating a
        move whose source is gone but whose target exists returns the target.
        """

    def delete(self, key: str) -> None:
        """Remove ``key``. Only the explicit operator command calls this."""

    def ping(self) -> None:
        """Raise ``BackendUnavailable`` unless the store can be reached and written."""


@runtime_checkable
class SignedUrlServer(Protocol):
    """The extra a store with ``serves_signed_urls`` offers the HTTP layer."""

    def verify_signed(self, key: str, *, expires: str, signature: str) -> None:
        """Raise ``Unauthorized`` unless the signature matches and has not expired."""

    def is_public(self, key: str) -> bool:
        """True when ``key`` may be served without a signature (thumbnails)."""


#: Presigned URLs may live from 1 second to 7 days (R2's and S3's bounds).
MAX_PRESIGN_SECONDS = 7 * 24 * 3600


def check_range(start: int, end: int | None, size: int) -> int:
    """Validate ``start..end`` (inclusive) against ``size``; return the exclusive stop.

    ``end`` past the object is clamped (like HTTP). ``start == 0`` is always fine, so an
    empty object can still be opened whole. Shared by every store.
    """
    if start < 0 or (end is not None and end < start):
        raise InvalidInput("byte range must satisfy 0 <= start <= end")
    if start > 0 and start >= size:
        raise RangeNotSatisfiable(f"byte range starts beyond the object ({size} bytes)", size=size)
    return size if end is None else min(end + 1, size)
