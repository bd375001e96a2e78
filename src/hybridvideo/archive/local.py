"""The archive as a folder on a local disk, for single-machine installs and tests.

Layout under ``root``::

    <key>                 the object's bytes, exactly as uploaded
    .meta/<key>.json      sidecar: content type, metadata, size, sha256 (the etag)
    .tmp/                 in-flight writes; never listed, never reachable as a key

Every write goes to a temp file in ``.tmp`` (same filesystem as the target), is fsynced and
then renamed into place with :func:`os.replace`, so a reader sees the old object or the new
one, never a prefix of it. The sidecar is written the same way *after* the object; if a crash
falls between the two, :meth:`LocalArchive.head` still describes the object from ``stat``.

The root itself is never created here: a missing root usually means an unmounted volume,
and writing into the bare mount point would fill the wrong disk.

Presigned URLs point at this app (``/archive/signed/<key>``, see
``hybridvideo.api.routers.archive_files``) and carry an HMAC-SHA256 of ``key`` and the
expiry time, so the app can serve them without any state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, NoReturn
from urllib.parse import quote

from hybridvideo.archive.base import MAX_PRESIGN_SECONDS, Capabilities, ObjectInfo, check_range
from hybridvideo.domain.keys import validate_key, validate_prefix
from hybridvideo.errors import (
    BackendUnavailable,
    ConfigurationError,
    Conflict,
    InvalidInput,
    InvalidKey,
    NotFound,
    Unauthorized,
)

CHUNK = 1024 * 1024
#: Top-level folders the store keeps for itself; keys may not start with them.
RESERVED = frozenset({".tmp", ".meta"})
#: Below this an HMAC secret could be guessed offline from one signed URL.
MIN_SECRET_BYTES = 16
#: The longest ``expires`` a signed URL may carry (a Unix time; ours have 10 digits).
MAX_EXPIRES_DIGITS = 20


class LocalArchive:
    """An :class:`~hybridvideo.archive.base.ArchiveStore` backed by a folder."""

    capabilities = Capabilities(serves_signed_urls=True)

    def __init__(
        self,
        root: Path,
        *,
        base_url: str,
        secret: bytes,
        bucket: str = "local",
        public_prefixes: tuple[str, ...] = ("thumbnails/",),
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigurationError(
                f"the local archive's signing secret must be at least {MIN_SECRET_BYTES} bytes"
            )
        for prefix in public_prefixes:
            validate_prefix(prefix)
        self._root = Path(root).resolve()
        self._base_url = base_url.rstrip("/")
        self._secret = secret
        self._bucket = bucket
        self._public_prefixes = public_prefixes
        self._clock = clock

    @property
    def bucket(self) -> str:
        return self._bucket

    # -- writing ---------------------------------------------------------------------------

    def put(
        self,
        key: str,
        data: BinaryIO,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        target = self._object_path(key)
        tmp = self._temp_file()
        try:
            size, sha256 = _fill(tmp, data)
            self._make_room_for_sidecar(key)
            _commit(tmp, target)
        except BaseException:
            # Errors raised by ``data`` itself are the caller's and pass through unchanged.
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        meta = {k.lower(): v for k, v in (metadata or {}).items()}
        self._write_sidecar(key, _Sidecar(content_type, meta, size, sha256))
        return self.head(key)

    def adopt(
        self,
        path: Path,
        key: str,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        known_sha256: str | None = None,
    ) -> ObjectInfo:
        """Move the finished file ``path`` into the archive as ``key``, without copying it.

        ``known_sha256`` (the archive's own etag of an object being moved) spares reading
        the whole file again; the file is still fsynced.

        For the tus upload store: an upload already lies on this disk, so it is renamed into
        place rather than streamed through :meth:`put` (a copy of a file that can be many
        GiB). The file is read once for its sha256 (the etag) and fsynced. Unlike
        :meth:`put`, the sidecar is written *before* the object appears: once the object is
        visible it is fully described, and a crash in between leaves only a sidecar that
        names no object (a retry rewrites it). An existing ``key`` is never replaced
        (``Conflict``): adopting is for fresh keys such as ``incoming/<upload id>``. When
        ``path`` is on another filesystem it is copied through ``.tmp`` and then removed.
        """
        target = self._object_path(key)
        with _disk_errors(key):
            if target.exists() or target.is_symlink():
                raise FileExistsError(str(target))
            if known_sha256 is None:
                size, sha256 = _hash_durably(path)
            else:
                size, sha256 = _fsync_file(path), known_sha256
            same_disk = path.stat().st_dev == self._root.stat().st_dev
        self._make_room_for_sidecar(key)
        meta = {k.lower(): v for k, v in (metadata or {}).items()}
        self._write_sidecar(key, _Sidecar(content_type, meta, size, sha256))
        if same_disk:
            _commit(path, target)
        else:
            tmp = self._temp_file()
            try:
                with _disk_errors(key), path.open("rb") as source:
                    _fill(tmp, source)
                _commit(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
            with _disk_errors(key):
                path.unlink()
        return self.head(key)

    def move(self, source: str, target: str, *, content_type: str | None = None) -> ObjectInfo:
        """A rename on this disk (via :meth:`adopt`, so the target is whole and durable
        before it appears); the source's sidecar goes once the object has moved."""
        src = self._object_path(source)
        with _disk_errors(source):
            present = src.is_file()
        if not present:
            if self.exists(target):
                return self.head(target)  # a repeated move
            raise NotFound(f"archive object {source!r} does not exist")
        if self.exists(target):
            raise Conflict(f"archive object {target!r} already exists")
        head = self.head(source)
        info = self.adopt(
            src,
            target,
            content_type=content_type or head.content_type,
            metadata=head.metadata,
            known_sha256=head.etag,  # hashed when the object was stored: no second read
        )
        with _disk_errors(source), contextlib.suppress(FileNotFoundError):
            self._sidecar_path(source).unlink()
        return info

    def delete(self, key: str) -> None:
        path = self._object_path(key)
        with _disk_errors(key):
            try:
                path.unlink()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                raise NotFound(f"archive object {key!r} does not exist") from None
            with contextlib.suppress(FileNotFoundError):
                self._sidecar_path(key).unlink()

    # -- reading ---------------------------------------------------------------------------

    def head(self, key: str) -> ObjectInfo:
        path = self._object_path(key)
        st = _stat_file(path, key)
        side = self._read_sidecar(key, st.st_size)
        return ObjectInfo(
            key=key,
            size=st.st_size,
            etag=side.sha256,
            content_type=side.content_type,
            last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
            metadata=dict(side.metadata),
        )

    def exists(self, key: str) -> bool:
        try:
            self.head(key)
        except NotFound:
            return False
        return True

    def open(self, key: str, *, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        path = self._object_path(key)
        size = _stat_file(path, key).st_size
        stop = check_range(start, end, size)
        return _read_chunks(path, key, start, stop)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects under ``prefix`` in key order, with size, etag and mtime only.

        Content type and metadata are left out on purpose: S3 listings do not carry them,
        and a caller that relied on them here would break on R2.
        """
        validate_prefix(prefix)
        folder = prefix.rpartition("/")[0]
        if folder.split("/", 1)[0] in RESERVED:
            raise InvalidKey("archive keys may not start with a reserved folder")
        start = self._root / folder
        if start.resolve() != start:
            return iter(())  # a symlink on the way: listings never follow them
        return self._walk(start, folder, prefix)

    def _walk(self, folder: Path, rel: str, prefix: str) -> Iterator[ObjectInfo]:
        try:
            with os.scandir(folder) as scan:
                entries = [*scan]
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise BackendUnavailable("the local archive cannot be read", detail=str(exc)) from exc
        # A folder sorts as "name/" so its whole subtree lands where its keys belong in
        # plain string order ("a-b" < "a.b" < "a/…" < "a0"), which is S3's listing order.
        named = []
        for entry in entries:
            if entry.is_symlink() or (not rel and entry.name in RESERVED):
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            named.append((entry.name + "/" if is_dir else entry.name, entry, is_dir))
        for _, entry, is_dir in sorted(named, key=lambda item: item[0]):
            key = f"{rel}/{entry.name}" if rel else entry.name
            if is_dir:
                if (key + "/").startswith(prefix) or prefix.startswith(key + "/"):
                    yield from self._walk(Path(entry.path), key, prefix)
            elif key.startswith(prefix) and entry.is_file(follow_symlinks=False):
                yield self._listed(key, entry)

    def _listed(self, key: str, entry: os.DirEntry[str]) -> ObjectInfo:
        st = entry.stat(follow_symlinks=False)
        return ObjectInfo(
            key=key,
            size=st.st_size,
            etag=self._read_sidecar(key, st.st_size).sha256,
            last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
        )

    # -- URLs ------------------------------------------------------------------------------

    def presign_get(self, key: str, *, expires_in: int) -> str:
        self._check_key(key)
        if not 1 <= expires_in <= MAX_PRESIGN_SECONDS:
            raise InvalidInput(f"expires_in must be between 1 and {MAX_PRESIGN_SECONDS} seconds")
        expires = int(self._clock()) + expires_in
        signature = self._sign(key, expires)
        path = quote(key, safe="/")
        return f"{self._base_url}/archive/signed/{path}?expires={expires}&signature={signature}"

    def verify_signed(self, key: str, *, expires: str, signature: str) -> None:
        self._check_key(key)
        # Only the canonical spelling presign_get writes: int() would also take "+12", "1_2"
        # or "012", aliases of one signature. The length bound keeps int() away from
        # client-sized numbers (Python refuses over 4,300 digits); no expiry we sign has
        # more than MAX_EXPIRES_DIGITS, so a longer one can never carry a valid signature.
        if not _canonical_number(expires):
            raise Unauthorized("invalid signature")
        when = int(expires)
        expected = self._sign(key, when).encode()
        if not hmac.compare_digest(expected, signature.encode("utf-8", "replace")):
            raise Unauthorized("invalid signature")
        if self._clock() > when:
            raise Unauthorized("signature expired")

    def is_public(self, key: str) -> bool:
        """Whether ``key`` may be served without a signature (thumbnails by default)."""
        self._check_key(key)
        return key.startswith(self._public_prefixes)

    def public_url(self, key: str) -> str | None:
        if not self.is_public(key):
            return None
        return f"{self._base_url}/archive/public/{quote(key, safe='/')}"

    def _sign(self, key: str, expires: int) -> str:
        message = f"{key}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    # -- health ----------------------------------------------------------------------------

    def ping(self) -> None:
        try:
            if not self._root.is_dir():
                raise NotADirectoryError(str(self._root))
            probe = self._temp_file()
            probe.unlink()
        except (OSError, BackendUnavailable) as exc:
            raise BackendUnavailable(
                "the local archive folder is missing or not writable", detail=str(exc)
            ) from exc

    # -- paths -----------------------------------------------------------------------------

    def _check_key(self, key: str) -> str:
        validate_key(key)
        if key.split("/", 1)[0] in RESERVED:
            raise InvalidKey("archive keys may not start with a reserved folder")
        return key

    def _inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if not resolved.is_relative_to(self._root):
            raise InvalidKey("archive key resolves outside the archive folder")
        return resolved

    def _object_path(self, key: str) -> Path:
        return self._inside(self._root / self._check_key(key))

    def _sidecar_path(self, key: str) -> Path:
        return self._inside(self._root / ".meta" / f"{key}.json")

    def _temp_file(self) -> Path:
        folder = self._root / ".tmp"
        with _disk_errors(None):
            if not self._root.is_dir():
                raise FileNotFoundError(f"archive root {self._root} does not exist")
            folder.mkdir(exist_ok=True)
            fd, name = tempfile.mkstemp(dir=folder, prefix="put-")
            os.close(fd)
        return Path(name)

    def _make_room_for_sidecar(self, key: str) -> None:
        """Fail with ``Conflict`` *before* the object appears if its sidecar cannot be written.

        ``.meta/x.json`` clashes with ``.meta/x.json/…`` (keys ``x`` and ``x.json/y``), a
        clash the object folder itself does not have.
        """
        side = self._sidecar_path(key)
        with _disk_errors(key):
            side.parent.mkdir(parents=True, exist_ok=True)
            if side.is_dir():
                raise IsADirectoryError(str(side))

    def _write_sidecar(self, key: str, sidecar: _Sidecar) -> None:
        tmp = self._temp_file()
        try:
            with _disk_errors(key), tmp.open("w", encoding="utf-8") as fh:
                json.dump(dataclasses.asdict(sidecar), fh)
                fh.flush()
                os.fsync(fh.fileno())
            _commit(tmp, self._sidecar_path(key))
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def _read_sidecar(self, key: str, size: int) -> _Sidecar:
        """The sidecar of ``key``, or an empty one if it is missing, unreadable or stale.

        A size that differs from the file's means a crash fell between writing a new
        object and its sidecar: the old etag would lie, so none is reported.
        """
        try:
            with self._sidecar_path(key).open(encoding="utf-8") as fh:
                raw = json.load(fh)
        except (OSError, ValueError):
            return _Sidecar()
        if not isinstance(raw, dict) or raw.get("size") != size:
            return _Sidecar()
        content_type, sha256, meta = raw.get("content_type"), raw.get("sha256"), raw.get("metadata")
        return _Sidecar(
            content_type=content_type if isinstance(content_type, str) else None,
            metadata={str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {},
            size=size,
            sha256=sha256 if isinstance(sha256, str) else None,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class _Sidecar:
    """What a file cannot say about itself, kept next to it in ``.meta``."""

    content_type: str | None = None
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    size: int | None = None
    sha256: str | None = None


def _canonical_number(text: str) -> bool:
    """ASCII digits without a leading zero, short enough to hand to ``int()`` safely."""
    return (
        0 < len(text) <= MAX_EXPIRES_DIGITS
        and text.isascii()
        and text.isdigit()
        and (text == "0" or not text.startswith("0"))
    )


@contextlib.contextmanager
def _disk_errors(key: str | None) -> Iterator[None]:
    """Turn the disk's ``OSError`` into domain errors; everything else passes through."""
    try:
        yield
    except (NotADirectoryError, IsADirectoryError, FileExistsError) as exc:
        # A folder cannot also be a file: "a" and "a/b" cannot both exist on a disk.
        raise Conflict(
            f"archive key {key!r} clashes with an existing object or folder", detail=str(exc)
        ) from exc
    except OSError as exc:
        raise BackendUnavailable("the local archive cannot be written", detail=str(exc)) from exc


def _fill(tmp: Path, data: BinaryIO) -> tuple[int, str]:
    """Copy ``data`` into ``tmp`` chunk by chunk and make it durable; return size and sha256."""
    digest = hashlib.sha256()
    size = 0
    with _disk_errors(None):
        fh = tmp.open("wb")
    with fh:
        while chunk := data.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            with _disk_errors(None):
                fh.write(chunk)
        with _disk_errors(None):
            fh.flush()
            os.fsync(fh.fileno())
    return size, digest.hexdigest()


def _hash_durably(path: Path) -> tuple[int, str]:
    """Size and sha256 of the file at ``path``, which is fsynced on the way."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
        os.fsync(fh.fileno())
    return size, digest.hexdigest()


def _fsync_file(path: Path) -> int:
    """Fsync ``path``; its size."""
    with path.open("rb") as fh:
        os.fsync(fh.fileno())
        return os.fstat(fh.fileno()).st_size


def _commit(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` over ``target`` and make the rename itself durable."""
    with _disk_errors(str(target)):
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)
        if hasattr(os, "O_DIRECTORY"):
            fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _stat_file(path: Path, key: str) -> os.stat_result:
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        _missing(key)
    except OSError as exc:
        raise BackendUnavailable("the local archive cannot be read", detail=str(exc)) from exc
    if not path.is_file():
        _missing(key)
    return st


def _missing(key: str) -> NoReturn:
    raise NotFound(f"archive object {key!r} does not exist")


def _read_chunks(path: Path, key: str, start: int, stop: int) -> Iterator[bytes]:
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        _missing(key)
    with fh:
        fh.seek(start)
        remaining = stop - start
        while remaining > 0:
            chunk = fh.read(min(CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk
