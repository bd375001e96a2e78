"""Archive key rules, shared by every archive store.

A key names an object in a bucket (or a file under the local archive root). Keys come
from operators, from migrations of existing buckets and from upload metadata, so they are
checked once here: a key that would escape the archive root on a local disk, or that R2
would refuse, never reaches a store.
"""

from __future__ import annotations

import unicodedata

from hybridvideo.errors import InvalidKey

#: R2 and S3 refuse keys longer than 1,024 bytes (UTF-8).
MAX_KEY_BYTES = 1024


def validate_key(key: str) -> str:
    """Return ``key`` if it is safe to store, else raise :class:`InvalidKey` saying why."""
    if not isinstance(key, str) or key == "":
        raise InvalidKey("archive key must be a non-empty string")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidKey(f"archive key is longer than {MAX_KEY_BYTES} bytes")
    if key.startswith(("/", "\\")):
        raise InvalidKey("archive key must be relative, not an absolute path")
    for ch in key:
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") or ch == "\\":
            raise InvalidKey("archive key contains a control or separator character")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidKey("archive key has an empty, '.' or '..' path segment")
    return key


def validate_prefix(prefix: str) -> str:
    """Validate a listing prefix: empty, or a key that may end with '/'."""
    if prefix == "":
        return prefix
    validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix
