"""The tus 1.0.0 protocol as pure functions: headers in, values or :class:`TusError` out.

No HTTP framework and no I/O live here, so every rule of the protocol can be tested with
plain strings, and an adapter (FastAPI, a test client, a CLI) only moves bytes. The rules
follow the tus 1.0.0 specification; where tusd, the reference server, deviates from it we
follow the specification and say so.

What the server advertises comes from one :class:`Capabilities` value: ``Tus-Extension``,
``Tus-Max-Size`` and ``Tus-Checksum-Algorithm`` are derived from it and nothing else, so
the advertised feature list cannot drift from what the handler actually does.

Every parser is strict and bounded, because each one reads attacker-controlled input:

* header values longer than :data:`MAX_HEADER_CHARS` are refused before any work is done;
* numbers are ASCII digits only (no sign, no ``+``, no Unicode digits), at most
  :data:`MAX_DIGITS` of them, and at most :data:`MAX_INT64` (the storage layers keep
  offsets and lengths as signed 64-bit integers);
* ``Upload-Metadata`` values must be valid, padded base64 that decodes to UTF-8. A value
  that is not UTF-8 is refused with 400 rather than kept as bytes: every consumer of the
  metadata (file names, titles, the catalog) wants text, and a lossy decode would silently
  change what the client sent.

Decoded metadata values may still contain control characters; code that puts them into a
header, a path or a log line must sanitize them there. The raw header, which is echoed on
HEAD, is safe as it is: it was checked to hold only keys of visible ASCII and base64.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Literal

from hybridvideo.errors import ConfigurationError, HybridVideoError

TUS_VERSION = "1.0.0"
#: The only media type a PATCH (and a POST carrying data) may use.
OFFSET_OCTET_STREAM = "application/offset+octet-stream"

EXT_CREATION = "creation"
EXT_CREATION_WITH_UPLOAD = "creation-with-upload"
EXT_CREATION_DEFER_LENGTH = "creation-defer-length"
EXT_EXPIRATION = "expiration"
EXT_CHECKSUM = "checksum"
EXT_TERMINATION = "termination"
EXT_CONCATENATION = "concatenation"
#: Every extension this layer knows, in the order ``Tus-Extension`` lists them. Each name
#: maps to the :class:`Capabilities` field spelled with ``_`` for ``-``.
EXTENSIONS: tuple[str, ...] = (
    EXT_CREATION,
    EXT_CREATION_WITH_UPLOAD,
    EXT_CREATION_DEFER_LENGTH,
    EXT_EXPIRATION,
    EXT_CHECKSUM,
    EXT_TERMINATION,
    EXT_CONCATENATION,
)

#: Checksum algorithms this layer can verify; the spec makes ``sha1`` mandatory.
CHECKSUM_ALGORITHMS: tuple[str, ...] = ("sha1", "md5", "sha256")

#: Longest header value any parser here reads (metadata with long file names fits).
MAX_HEADER_CHARS = 8192
#: Most digits an offset or length may have; bounds ``int()`` on hostile input.
MAX_DIGITS = 20
#: Offsets and lengths are stored as signed 64-bit integers.
MAX_INT64 = 2**63 - 1
#: Most upload URLs a final ``Upload-Concat`` may list.
MAX_CONCAT_PARTS = 256

_DIGITS = re.compile(r"[0-9]+")
# RFC 9110 token characters, used for algorithm names and method overrides.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_METADATA_KEY = re.compile(r"[\x21-\x2b\x2d-\x7e]+")  # visible ASCII except ","
_CONCAT_URL = re.compile(r"[\x21-\x7e]+")  # visible ASCII, so no spaces or controls
_OWS = " \t"


class TusErrorKind(enum.Enum):
    """The catalogue of protocol errors: stable code, HTTP status, client-facing message.

    Codes follow tusd's ``ERR_*`` style so that clients and logs read the same across
    servers; the status is the one the specification asks for.
    """

    _value_: tuple[str, int, str]

    UNSUPPORTED_VERSION = ("ERR_UNSUPPORTED_VERSION", 412, "unsupported tus version")
    INVALID_OFFSET = ("ERR_INVALID_OFFSET", 400, "missing or invalid Upload-Offset header")
    OFFSET_MISMATCH = ("ERR_MISMATCHED_OFFSET", 409, "Upload-Offset does not match the upload")
    INVALID_CONTENT_TYPE = (
        "ERR_INVALID_CONTENT_TYPE",
        415,
        "Content-Type must be application/offset+octet-stream",
    )
    INVALID_CHECKSUM = ("ERR_INVALID_CHECKSUM", 400, "invalid Upload-Checksum header")
    CHECKSUM_MISMATCH = ("ERR_CHECKSUM_MISMATCH", 460, "checksum mismatch")
    UNSUPPORTED_CHECKSUM_ALGORITHM = (
        "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM",
        400,
        "unsupported checksum algorithm",
    )
    MAX_SIZE_EXCEEDED = ("ERR_MAX_SIZE_EXCEEDED", 413, "upload is larger than the maximum size")
    SIZE_EXCEEDED = ("ERR_UPLOAD_SIZE_EXCEEDED", 413, "data goes beyond the upload's length")
    NOT_FOUND = ("ERR_UPLOAD_NOT_FOUND", 404, "upload not found")
    GONE = ("ERR_UPLOAD_GONE", 410, "upload has expired or was terminated")
    LOCKED = ("ERR_UPLOAD_LOCKED", 423, "upload is being written by another request")
    MODIFY_FINAL = ("ERR_UPLOAD_IS_FINAL", 403, "a final concatenated upload cannot be patched")
    INVALID_LENGTH = ("ERR_INVALID_UPLOAD_LENGTH", 400, "missing or invalid Upload-Length header")
    INVALID_DEFER_LENGTH = (
        "ERR_INVALID_UPLOAD_LENGTH_DEFER",
        400,
        "invalid Upload-Defer-Length header",
    )
    AMBIGUOUS_LENGTH = (
        "ERR_AMBIGUOUS_UPLOAD_LENGTH",
        400,
        "Upload-Length and Upload-Defer-Length are mutually exclusive",
    )
    INVALID_METADATA = ("ERR_INVALID_METADATA", 400, "invalid Upload-Metadata header")
    INVALID_CONCAT = ("ERR_INVALID_CONCAT", 400, "invalid Upload-Concat header")
    INVALID_METHOD_OVERRIDE = (
        "ERR_INVALID_METHOD_OVERRIDE",
        400,
        "invalid X-HTTP-Method-Override header",
    )

    @property
    def code(self) -> str:
        return self.value[0]

    @property
    def status(self) -> int:
        return self.value[1]

    @property
    def message(self) -> str:
        return self.value[2]


class TusError(HybridVideoError):
    """A protocol error the handler turns into a response with :attr:`status`.

    A fresh exception is raised each time (never a shared instance) so tracebacks do not
    pile up; compare errors by :attr:`kind`. ``detail`` is for logs, not for the client.
    """

    def __init__(self, kind: TusErrorKind, *, detail: str | None = None) -> None:
        super().__init__(kind.message, detail=detail)
        self.kind = kind
        self.code = kind.code
        self.status = kind.status

    @property
    def headers(self) -> dict[str, str]:
        """Headers the error response must carry besides ``Tus-Resumable``."""
        if self.kind is TusErrorKind.UNSUPPORTED_VERSION:
            return {"Tus-Version": TUS_VERSION}
        return {}


@dataclass(frozen=True)
class Capabilities:
    """What this server supports: the single source of every advertised feature.

    The composition root builds one from what the upload store can do and what the
    operator enabled; nothing is on by default, so each feature is registered explicitly.
    """

    creation: bool = False
    creation_with_upload: bool = False
    creation_defer_length: bool = False
    expiration: bool = False
    checksum: bool = False
    termination: bool = False
    concatenation: bool = False
    max_size: int | None = None
    checksum_algorithms: tuple[str, ...] = CHECKSUM_ALGORITHMS

    def __post_init__(self) -> None:
        # Reject combinations the spec forbids here, once, instead of per request.
        needs_creation = self.creation_with_upload or self.creation_defer_length
        if (needs_creation or self.concatenation) and not self.creation:
            raise ConfigurationError("tus creation-* and concatenation need creation")
        if self.max_size is not None and not 0 <= self.max_size <= MAX_INT64:
            raise ConfigurationError("tus max_size must be between 0 and 2**63-1")
        unknown = set(self.checksum_algorithms) - set(CHECKSUM_ALGORITHMS)
        if unknown:
            raise ConfigurationError(f"unsupported tus checksum algorithms: {sorted(unknown)}")
        if self.checksum and "sha1" not in self.checksum_algorithms:
            raise ConfigurationError("the tus checksum extension requires sha1")

    def supports(self, extension: str) -> bool:
        """Whether ``extension`` (a name from :data:`EXTENSIONS`) is enabled."""
        if extension not in EXTENSIONS:
            raise ValueError(f"unknown tus extension: {extension!r}")
        return bool(getattr(self, extension.replace("-", "_")))

    def extensions(self) -> tuple[str, ...]:
        return tuple(name for name in EXTENSIONS if self.supports(name))

    def tus_extension_header(self) -> str | None:
        """The ``Tus-Extension`` value, or ``None`` when it must be omitted (no extension)."""
        return ",".join(self.extensions()) or None

    def options_headers(self) -> dict[str, str]:
        """Headers of the OPTIONS response, each present only if its feature is on."""
        headers = {"Tus-Resumable": TUS_VERSION, "Tus-Version": TUS_VERSION}
        extension = self.tus_extension_header()
        if extension is not None:
            headers["Tus-Extension"] = extension
        if self.max_size is not None:
            headers["Tus-Max-Size"] = str(self.max_size)
        if self.checksum:
            headers["Tus-Checksum-Algorithm"] = ",".join(self.checksum_algorithms)
        return headers


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Look ``name`` up case-insensitively, for plain dicts as well as framework headers."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, candidate in headers.items():
        if key.lower() == wanted:
            return candidate
    return None


def _bounded(value: str, kind: TusErrorKind, limit: int = MAX_HEADER_CHARS) -> str:
    if len(value) > limit:
        raise TusError(kind, detail=f"header longer than {limit} characters")
    return value.strip(_OWS)


def _parse_int(value: str | None, kind: TusErrorKind) -> int:
    if value is None:
        raise TusError(kind, detail="header missing")
    text = _bounded(value, kind, limit=MAX_HEADER_CHARS)
    if not _DIGITS.fullmatch(text) or len(text) > MAX_DIGITS:
        raise TusError(kind, detail="not a non-negative integer of at most 20 digits")
    number = int(text)
    if number > MAX_INT64:
        raise TusError(kind, detail="larger than 2**63-1")
    return number


def parse_offset(value: str | None) -> int:
    """``Upload-Offset``: required, a non-negative integer (400 otherwise)."""
    return _parse_int(value, TusErrorKind.INVALID_OFFSET)


def parse_length(
    upload_length: str | None,
    defer_length: str | None,
    *,
    allow_defer: bool = True,
    max_size: int | None = None,
) -> int | None:
    """The length declared at creation: an int, or ``None`` for ``Upload-Defer-Length: 1``.

    Exactly one of the two headers must be present. ``allow_defer`` is
    ``Capabilities.creation_defer_length``; a length above ``max_size`` is 413.
    """
    if upload_length is not None and defer_length is not None:
        raise TusError(TusErrorKind.AMBIGUOUS_LENGTH)
    if defer_length is not None:
        if not allow_defer or _bounded(defer_length, TusErrorKind.INVALID_DEFER_LENGTH) != "1":
            raise TusError(TusErrorKind.INVALID_DEFER_LENGTH)
        return None
    length = _parse_int(upload_length, TusErrorKind.INVALID_LENGTH)
    if max_size is not None and length > max_size:
        raise TusError(TusErrorKind.MAX_SIZE_EXCEEDED, detail=f"{length} > {max_size}")
    return length


def _decode_metadata_value(key: str, value: str) -> str:
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
        return raw.decode("utf-8")
    except (UnicodeError, binascii.Error, ValueError) as exc:
        raise TusError(TusErrorKind.INVALID_METADATA, detail=f"value of {key!r}: {exc}") from exc


def parse_upload_metadata(value: str | None) -> dict[str, str | None]:
    """``Upload-Metadata``: comma-separated ``key base64value`` pairs, value optional.

    A key without a value maps to ``None``; so does an empty value (``key `` with the
    space), because HTTP trims trailing whitespace and the two cannot be told apart on the
    wire. An absent or blank header means no metadata.
    Keys are visible ASCII without commas and unique; an empty pair (``a x,,b y``) or a
    second space inside a pair is malformed. Store the header string itself as well, to
    echo it unchanged on HEAD.
    """
    if value is None:
        return {}
    text = _bounded(value, TusErrorKind.INVALID_METADATA)
    if text == "":
        return {}
    metadata: dict[str, str | None] = {}
    for pair in text.split(","):
        key, sep, encoded = pair.strip(_OWS).partition(" ")
        if not _METADATA_KEY.fullmatch(key):
            raise TusError(TusErrorKind.INVALID_METADATA, detail=f"bad key in {pair!r}")
        if key in metadata:
            raise TusError(TusErrorKind.INVALID_METADATA, detail=f"duplicate key {key!r}")
        metadata[key] = _decode_metadata_value(key, encoded) if sep and encoded else None
    return metadata


def serialize_upload_metadata(metadata: Mapping[str, str | None]) -> str:
    """The ``Upload-Metadata`` header for ``metadata``; inverse of the parser.

    Used when this server is the client (migrations, tests). ``None`` and ``""`` are
    both written as a bare key, which parses back as ``None``. Raises :class:`ValueError`
    for a key the parser would refuse.
    """
    pairs = []
    for key, value in metadata.items():
        if not _METADATA_KEY.fullmatch(key):
            raise ValueError(f"invalid tus metadata key: {key!r}")
        if not value:
            pairs.append(key)
        else:
            pairs.append(f"{key} {base64.b64encode(value.encode('utf-8')).decode('ascii')}")
    return ",".join(pairs)


def parse_checksum(
    value: str, algorithms: tuple[str, ...] = CHECKSUM_ALGORITHMS
) -> tuple[str, bytes]:
    """``Upload-Checksum: <algorithm> <base64 digest>`` as ``(algorithm, digest)``.

    An algorithm outside ``algorithms`` (pass ``Capabilities.checksum_algorithms``) is
    400 as the spec says. A digest whose size does not fit the algorithm is refused as
    malformed (400) rather than reported as a mismatch: resending the chunk cannot fix it.
    """
    text = _bounded(value, TusErrorKind.INVALID_CHECKSUM, limit=256)
    algorithm, sep, encoded = text.partition(" ")
    if not sep or not _TOKEN.fullmatch(algorithm):
        raise TusError(TusErrorKind.INVALID_CHECKSUM, detail="expected '<algorithm> <digest>'")
    if algorithm not in algorithms:
        raise TusError(TusErrorKind.UNSUPPORTED_CHECKSUM_ALGORITHM, detail=algorithm)
    try:
        digest = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (UnicodeError, binascii.Error, ValueError) as exc:
        raise TusError(TusErrorKind.INVALID_CHECKSUM, detail=str(exc)) from exc
    if len(digest) != new_hasher(algorithm).digest_size:
        raise TusError(TusErrorKind.INVALID_CHECKSUM, detail="digest has the wrong size")
    return algorithm, digest


def new_hasher(algorithm: str) -> hashlib._Hash:
    """A hash object for a supported algorithm (md5 allowed on FIPS builds: not security)."""
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise ValueError(f"unsupported checksum algorithm: {algorithm!r}")
    return hashlib.new(algorithm, usedforsecurity=False)


def check_checksum(expected: bytes, actual: bytes) -> None:
    """Raise 460 unless the chunk's digest equals the one the client sent."""
    if not hmac.compare_digest(expected, actual):
        raise TusError(TusErrorKind.CHECKSUM_MISMATCH)


@dataclass(frozen=True)
class Concat:
    """A parsed ``Upload-Concat``: a partial upload, or a final one listing its partials."""

    kind: Literal["partial", "final"]
    urls: tuple[str, ...] = ()

    @property
    def header(self) -> str:
        """The header value, for echoing on HEAD and for clients."""
        return "partial" if self.kind == "partial" else "final;" + " ".join(self.urls)


def parse_concat(value: str) -> Concat:
    """``Upload-Concat``: ``partial``, or ``final;<url> <url> ...`` (space-separated).

    URLs may be absolute or relative; resolving them to upload ids is the handler's job,
    since only it knows its mount point. Runs of spaces between URLs are tolerated.
    """
    text = _bounded(value, TusErrorKind.INVALID_CONCAT)
    if text == "partial":
        return Concat("partial")
    prefix, sep, rest = text.partition(";")
    if prefix != "final" or not sep:
        raise TusError(TusErrorKind.INVALID_CONCAT, detail="expected 'partial' or 'final;'")
    urls = tuple(url for url in rest.split(" ") if url != "")
    if not urls or len(urls) > MAX_CONCAT_PARTS:
        raise TusError(TusErrorKind.INVALID_CONCAT, detail=f"needs 1-{MAX_CONCAT_PARTS} URLs")
    for url in urls:
        if not _CONCAT_URL.fullmatch(url):
            raise TusError(TusErrorKind.INVALID_CONCAT, detail="URL with invalid characters")
    return Concat("final", urls)


def method_override(method: str, headers: Mapping[str, str]) -> str:
    """The method to act on: ``X-HTTP-Method-Override`` when present, on any method.

    The spec says the server MUST use it and ignore the real method (tusd honours it on
    POST only). The result is upper-cased; a value that is not a short HTTP token is 400.
    """
    override = header(headers, "X-HTTP-Method-Override")
    if override is None:
        return method.upper()
    text = _bounded(override, TusErrorKind.INVALID_METHOD_OVERRIDE, limit=32)
    if not _TOKEN.fullmatch(text):
        raise TusError(TusErrorKind.INVALID_METHOD_OVERRIDE)
    return text.upper()


def check_version(headers: Mapping[str, str], *, method: str) -> None:
    """412 unless ``Tus-Resumable`` is 1.0.0; OPTIONS is exempt (the header is ignored).

    ``method`` is the effective one, after :func:`method_override`. A missing header on
    another method is 412 too: the spec requires it on every request.
    """
    if method.upper() == "OPTIONS":
        return
    value = header(headers, "Tus-Resumable")
    if value is None or value.strip(_OWS) != TUS_VERSION:
        raise TusError(TusErrorKind.UNSUPPORTED_VERSION, detail=f"Tus-Resumable: {value!r}")


def check_content_type(value: str | None) -> None:
    """415 unless the media type is ``application/offset+octet-stream``.

    Type and subtype compare case-insensitively and parameters are ignored (RFC 9110).
    tusd answers 400 here; we use the 415 the spec asks for.
    """
    media_type = (value or "").split(";", 1)[0].strip(_OWS).lower()
    if media_type != OFFSET_OCTET_STREAM:
        raise TusError(TusErrorKind.INVALID_CONTENT_TYPE, detail=f"Content-Type: {value!r}")


def format_expires(moment: datetime) -> str:
    """``Upload-Expires`` as an RFC 9110 HTTP-date, e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    if moment.tzinfo is None:
        raise ValueError("Upload-Expires needs a timezone-aware datetime")
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0), usegmt=True)


@dataclass(frozen=True)
class UploadInfo:
    """What the protocol needs to know about one upload; stores keep more.

    ``length`` is ``None`` while deferred. ``metadata_raw`` is ``Upload-Metadata`` exactly
    as the client sent it (``None`` if absent). A final upload's ``length`` is the sum of
    its partials and its ``offset`` reaches it once concatenation has finished.
    """

    id: str
    offset: int
    length: int | None
    created_at: datetime
    metadata_raw: str | None = None
    metadata: Mapping[str, str | None] = field(default_factory=dict)
    is_partial: bool = False
    is_final: bool = False
    partial_ids: tuple[str, ...] = ()
    expires_at: datetime | None = None
    #: What the application records about the upload (ingest outcome, archive key, who
    #: created it). Stores keep it with the info; it is never sent in a tus header.
    notes: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_complete(self) -> bool:
        return self.length is not None and self.offset == self.length


@dataclass(frozen=True)
class PatchPlan:
    """What an accepted PATCH may do.

    ``length`` is the upload's length after this request (set now if it was deferred);
    ``limit`` is the most bytes the body may add, ``None`` if unbounded. The handler must
    stop reading at ``limit`` even without a Content-Length (chunked bodies).
    """

    length: int | None
    limit: int | None


def check_expired(info: UploadInfo, now: datetime) -> None:
    """410 once ``expires_at`` has passed: we still know the upload, so not 404."""
    if info.expires_at is not None and now >= info.expires_at:
        raise TusError(TusErrorKind.GONE, detail=f"expired at {info.expires_at.isoformat()}")


def check_patch(
    info: UploadInfo,
    offset_header: str | None,
    content_type: str | None,
    body_length: int | None,
    max_size: int | None,
    *,
    upload_length: str | None = None,
    now: datetime | None = None,
) -> PatchPlan:
    """Decide whether a PATCH may be applied, before any byte is stored.

    ``body_length`` is Content-Length (``None`` when unknown); ``upload_length`` is the
    ``Upload-Length`` header, which a deferred upload sends once its size is known.
    Re-sending the same length on a known-length upload is accepted (a retried request);
    a different one is 400. Checks run in the order a client can best act on: the request
    shape (415, 400), then the upload's state (410, 403, 409), then sizes (400, 413).
    """
    check_content_type(content_type)
    offset = parse_offset(offset_header)
    if body_length is not None and body_length < 0:
        raise ValueError("body_length must be non-negative")
    if now is not None:
        check_expired(info, now)
    if info.is_final:
        raise TusError(TusErrorKind.MODIFY_FINAL)
    if offset != info.offset:
        raise TusError(TusErrorKind.OFFSET_MISMATCH, detail=f"{offset} != {info.offset}")
    length = info.length
    if upload_length is not None:
        declared = _parse_int(upload_length, TusErrorKind.INVALID_LENGTH)
        if length is not None and declared != length:
            raise TusError(TusErrorKind.INVALID_LENGTH, detail="length is already set")
        if declared < info.offset:
            raise TusError(TusErrorKind.INVALID_LENGTH, detail="length below the offset")
        if max_size is not None and declared > max_size:
            raise TusError(TusErrorKind.MAX_SIZE_EXCEEDED, detail=f"{declared} > {max_size}")
        length = declared
    if length is not None:
        limit: int | None = length - offset
        if body_length is not None and body_length > length - offset:
            raise TusError(TusErrorKind.SIZE_EXCEEDED, detail=f"{offset}+{body_length}>{length}")
    elif max_size is not None:
        limit = max_size - offset
        if body_length is not None and body_length > limit:
            raise TusError(TusErrorKind.MAX_SIZE_EXCEEDED, detail=f"{offset}+{body_length}")
    else:
        limit = None
    return PatchPlan(length=length, limit=limit)


def head_headers(
    info: UploadInfo, now: datetime, *, url_for: Callable[[str], str] = str
) -> dict[str, str]:
    """Headers of a successful HEAD; 410 if the upload has expired.

    ``url_for`` turns a partial's id into the URL echoed in a final ``Upload-Concat``
    (the handler knows its mount point). A final upload shows no ``Upload-Offset`` until
    concatenation has finished, as the spec recommends.
    """
    check_expired(info, now)
    headers = {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store"}
    if not info.is_final or info.is_complete:
        headers["Upload-Offset"] = str(info.offset)
    if info.length is not None:
        headers["Upload-Length"] = str(info.length)
    else:
        headers["Upload-Defer-Length"] = "1"
    if info.metadata_raw is not None:
        headers["Upload-Metadata"] = info.metadata_raw
    if info.is_partial:
        headers["Upload-Concat"] = Concat("partial").header
    elif info.is_final:
        headers["Upload-Concat"] = Concat("final", tuple(map(url_for, info.partial_ids))).header
    if info.expires_at is not None:
        headers["Upload-Expires"] = format_expires(info.expires_at)
    return headers


__all__ = [
    "CHECKSUM_ALGORITHMS",
    "EXTENSIONS",
    "EXT_CHECKSUM",
    "EXT_CONCATENATION",
    "EXT_CREATION",
    "EXT_CREATION_DEFER_LENGTH",
    "EXT_CREATION_WITH_UPLOAD",
    "EXT_EXPIRATION",
    "EXT_TERMINATION",
    "MAX_CONCAT_PARTS",
    "MAX_DIGITS",
    "MAX_HEADER_CHARS",
    "MAX_INT64",
    "OFFSET_OCTET_STREAM",
    "TUS_VERSION",
    "Capabilities",
    "Concat",
    "PatchPlan",
    "TusError",
    "TusErrorKind",
    "UploadInfo",
    "check_checksum",
    "check_content_type",
    "check_expired",
    "check_patch",
    "check_version",
    "format_expires",
    "head_headers",
    "header",
    "method_override",
    "new_hasher",
    "parse_checksum",
    "parse_concat",
    "parse_length",
    "parse_offset",
    "parse_upload_metadata",
    "serialize_upload_metadata",
]
