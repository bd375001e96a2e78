"""The sha256 of a whole upload, computed while its bytes stream through this process.

hashlib cannot persist its state, so the running digest lives in memory, keyed by upload
and valid for one offset. A PATCH that starts where the digest stands extends it; any gap
(a restart, a PATCH served by another node, a chunk that was only partly kept) drops it,
and whoever finishes the upload re-reads the stored object instead. The common case — one
node, no crash — therefore never reads an upload back.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Entry:
    offset: int
    hasher: Any  # hashlib._Hash (private type)


@dataclass
class PendingDigest:
    """A copy of the running digest for one PATCH; committed only for bytes kept."""

    upload_id: str
    start: int
    hasher: Any | None
    hashed: int = 0

    def feed(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            if self.hasher is not None:
                self.hasher.update(chunk)
                self.hashed += len(chunk)
            yield chunk


@dataclass
class RunningDigests:
    """At most ``capacity`` running digests (least recently used dropped first)."""

    capacity: int = 10_000
    _entries: OrderedDict[str, _Entry] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self, upload_id: str, offset: int) -> PendingDigest:
        """A pending digest for bytes written at ``offset`` (None hasher if unknown)."""
        with self._lock:
            entry = self._entries.get(upload_id)
            if entry is not None and entry.offset == offset:
                return PendingDigest(upload_id, offset, entry.hasher.copy())
        return PendingDigest(upload_id, offset, hashlib.sha256() if offset == 0 else None)

    def commit(self, pending: PendingDigest, new_offset: int) -> None:
        """Record what the store kept: the digest stays valid only if it covers exactly it."""
        with self._lock:
            if new_offset == pending.start:
                return  # nothing kept: the old entry (if any) still holds
            if pending.hasher is not None and new_offset == pending.start + pending.hashed:
                self._entries[pending.upload_id] = _Entry(new_offset, pending.hasher)
                self._entries.move_to_end(pending.upload_id)
                while len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)
            else:
                self._entries.pop(pending.upload_id, None)

    def result(self, upload_id: str, length: int) -> str | None:
        """The hex digest if it covers all ``length`` bytes; forgets the entry either way."""
        with self._lock:
            entry = self._entries.pop(upload_id, None)
        if length == 0:
            return hashlib.sha256().hexdigest()
        if entry is None or entry.offset != length:
            return None
        return str(entry.hasher.hexdigest())

    def forget(self, upload_id: str) -> None:
        with self._lock:
            self._entries.pop(upload_id, None)


__all__ = ["PendingDigest", "RunningDigests"]
