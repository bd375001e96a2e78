"""tus uploads written straight into the archive's S3 bucket (R2 in production).

Every bit of an upload's state lives in the bucket, like tusd's s3store, so any server
process sharing the bucket can continue an upload another one started, and a restart
loses nothing:

``.tus/<id>.info``
    JSON: the :class:`UploadInfo` (length, metadata, notes, expiry, concatenation) plus
    the multipart upload id and the part size this upload was started with. It never
    holds the offset.
multipart upload on ``incoming/<id>``
    Created with the upload. Its parts, numbered 1, 2, 3..., hold the bytes; every part
    has exactly ``part_size`` bytes except a last, shorter one that is only sent once the
    upload is complete. :meth:`S3UploadStore.finish` completes it in place, so the
    finished upload *is* the archive object ``incoming/<id>``: no copy. Then ``.info``
    is marked ``finished``, so the upload keeps answering (offset == length) after the
    application moved the object to its master key.
``.tus/<id>.part``
    The spool: bytes after the last whole part, fewer than a part (S3 and R2 cannot take
    a short part unless it is the last). Its user metadata ``part`` names the part number
    its bytes will start; once that part exists the spool is stale and ignored, which
    makes "flush a part, then replace the spool" safe against a crash in between.

The offset is recovered from storage on every :meth:`~S3UploadStore.get` and
:meth:`~S3UploadStore.write`, never from memory: the sum of the listed parts (numbered
without a gap from 1, all but the last of the upload's part size) plus the spool when it
is current. When the multipart upload is gone and ``incoming/<id>`` exists, the upload
was finished and its offset is the object's size. So no upload is ever reported at an
offset whose bytes are not stored; a crash can only make the offset go *back* (bytes
that were in flight), which a tus client handles with a HEAD.

Why equal parts: R2 requires every part but the last to have the same size (at least
5 MiB; S3 only requires the 5 MiB minimum). Writing exactly ``part_size`` bytes per part
and spooling the rest satisfies both, whatever chunk sizes clients send. The largest
upload is ``part_size`` x 10,000 parts (78 GiB at the default 8 MiB).

Memory: a write holds at most two parts (one being sent while the next one fills) plus
the chunk being received. A checksummed write (``Upload-Checksum``) is all-or-nothing,
so its body is first received into a local temporary file and hashed; only a matching
chunk is then applied, so a 460 leaves the bucket untouched.

Concatenation (tus-js-client ``parallelUploads``): a complete partial is completed into
its own object ``incoming/<partial id>`` when a final upload first needs it (the
contract never finishes partials for the application; the object is internal and goes
with the partial's termination). The final upload gets a multipart upload of its own;
each of its parts whose bytes lie within one partial is copied server-side
(``UploadPartCopy``), and a part that straddles partials (small partials are common) is
read back and uploaded. Each final part again has exactly ``part_size`` bytes.

Concurrency: two writers on one upload are excluded by the caller's lock (one PATCH per
upload at a time across nodes); the store itself only detects a spool that changed under
it (423). Permissions beyond the archive's: ``s3:ListMultipartUploadParts`` (ListParts),
``s3:ListBucketMultipartUploads`` (orphan sweep) and ``s3:DeleteObject`` (``.info``,
spool, terminated uploads).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn, cast

from botocore.exceptions import BotoCoreError, ClientError

from hybridvideo.archive.s3 import MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, S3Archive
from hybridvideo.errors import BackendUnavailable, ConfigurationError, NotFound
from hybridvideo.ingest.tus.protocol import TusError, TusErrorKind, UploadInfo, new_hasher
from hybridvideo.ingest.tus.store import (
    INCOMING_PREFIX,
    check_finishable,
    check_new_length,
    check_partials,
    content_type_of,
    effective_limit,
    incoming_key,
    info_from_json,
    info_to_json,
    is_upload_id,
    refuse_more,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger(__name__)

MiB = 1024 * 1024
DEFAULT_PART_SIZE = 8 * MiB
#: Where the store keeps its own objects (``.info`` and spools) in the bucket.
STATE_PREFIX = ".tus/"
READ_CHUNK = MiB
_INFO_VERSION = 1


@dataclass(frozen=True, slots=True)
class ListedPart:
    """One uploaded part as ListParts reports it."""

    number: int
    size: int
    etag: str


def usable_parts(listed: Sequence[ListedPart], part_size: int) -> tuple[ListedPart, ...]:
    """The parts that count toward the offset: numbered 1, 2, 3... without a gap, each
    of exactly ``part_size`` bytes except possibly the last. Anything after a gap or a
    short part is debris of an interrupted write; it is overwritten later, and left out
    of the completed object (S3 drops parts a completion does not list)."""
    usable: list[ListedPart] = []
    for expected, part in enumerate(sorted(listed, key=lambda p: p.number), start=1):
        if part.number != expected or (usable and usable[-1].size != part_size):
            break
        usable.append(part)
    return tuple(usable)


#: A slice of one source: ``(source index, start, stop)``, ``stop`` exclusive.
Range = tuple[int, int, int]


def plan_concatenation(sizes: Sequence[int], part_size: int) -> Iterator[tuple[Range, ...]]:
    """Cut the concatenation of sources of ``sizes`` bytes into parts of ``part_size``.

    Yields, for each part in order, the source ranges that fill it; a part with a single
    range can be copied server-side, one with several must be assembled. Empty sources
    contribute nothing; the last part may be short.
    """
    if part_size <= 0:
        raise ValueError("part_size must be positive")
    current: list[Range] = []
    room = part_size
    for index, size in enumerate(sizes):
        start = 0
        while start < size:
            take = min(room, size - start)
            current.append((index, start, start + take))
            start += take
            room -= take
            if room == 0:
                yield tuple(current)
                current, room = [], part_size
    if current:
        yield tuple(current)


@dataclass(frozen=True, slots=True)
class _Record:
    """What ``.tus/<id>.info`` holds."""

    info: UploadInfo
    multipart_id: str
    part_size: int
    #: Set once the bytes became ``incoming/<id>``: from then on the upload answers
    #: offset == length even after the application moved that object elsewhere.
    finished: bool = False


@dataclass(frozen=True, slots=True)
class _State:
    """An upload as recovered from the bucket."""

    record: _Record
    parts: tuple[ListedPart, ...] = ()
    spool: int = 0  # bytes of a current spool (0 when absent or stale)
    spool_exists: bool = False  # a spool object exists, current or stale
    finished_size: int | None = None  # set once the multipart became incoming/<id>

    @property
    def offset(self) -> int:
        if self.finished_size is not None:
            return self.finished_size
        return sum(part.size for part in self.parts) + self.spool

    @property
    def info(self) -> UploadInfo:
        return replace(self.record.info, offset=self.offset)


class _Missing(Exception):
    """The object asked for does not exist (internal: callers decide what that means)."""


class _NoUpload(Exception):
    """The multipart upload is gone: completed or aborted."""


class S3UploadStore:
    """An :class:`~hybridvideo.ingest.tus.store.UploadStore` in an :class:`S3Archive`'s bucket.

    ``part_size`` (default 8 MiB, 5 MiB to 5 GiB) is recorded per upload, so changing it
    affects new uploads only. ``temp_dir`` receives checksummed chunks while they are
    verified (the system default when ``None``).
    """

    def __init__(
        self,
        archive: S3Archive,
        *,
        part_size: int = DEFAULT_PART_SIZE,
        temp_dir: Path | None = None,
    ) -> None:
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ConfigurationError(
                f"tus part size must be between 5 MiB and 5 GiB, got {part_size} bytes"
            )
        self._archive = archive
        self._client: S3Client = archive.client
        self._bucket = archive.bucket
        self._part_size = part_size
        self._temp_dir = temp_dir

    @property
    def part_size(self) -> int:
        return self._part_size

    # -- keys --------------------------------------------------------------------------

    @staticmethod
    def _info_key(upload_id: str) -> str:
        return f"{STATE_PREFIX}{upload_id}.info"

    @staticmethod
    def _spool_key(upload_id: str) -> str:
        return f"{STATE_PREFIX}{upload_id}.part"

    # -- the contract ------------------------------------------------------------------

    def create(self, info: UploadInfo) -> UploadInfo:
        if info.is_final:
            raise ValueError("final uploads are made with concatenate()")
        key = incoming_key(info.id)
        self._check_size(info.length, self._part_size)
        multipart_id = self._start_multipart(key, info)
        info = replace(info, offset=0)
        try:
            self._save(_Record(info, multipart_id, self._part_size))
        except BaseException:
            self._abort_quietly(key, multipart_id)
            raise
        return info

    def get(self, upload_id: str) -> UploadInfo:
        return self._load(upload_id).info

    def declare_length(self, upload_id: str, length: int) -> UploadInfo:
        state = self._load(upload_id)
        info = state.info
        check_new_length(info, length)
        self._check_size(length, state.record.part_size)
        record = state.record
        self._save(replace(record, info=replace(record.info, length=length)))
        return replace(info, length=length)

    def write(
        self,
        upload_id: str,
        offset: int,
        chunks: Iterator[bytes],
        limit: int | None,
        *,
        checksum: tuple[str, bytes] | None = None,
        expires_at: datetime | None = None,
    ) -> int:
        state = self._load(upload_id)
        info = state.info
        if offset != info.offset:
            raise TusError(TusErrorKind.OFFSET_MISMATCH, detail=f"{offset} != {info.offset}")
        if info.is_complete or state.finished_size is not None:
            refuse_more(chunks)
            if expires_at is not None:
                self._set_expiry(state.record, expires_at)
            return info.offset
        limit = effective_limit(info, limit)
        if checksum is None:
            return self._append(state, chunks, limit, expires_at)
        with tempfile.TemporaryFile(dir=self._temp_dir) as held:
            _receive_verified(chunks, limit, checksum, held)
            held.seek(0)
            verified = iter(lambda: held.read(READ_CHUNK), b"")
            return self._append(state, verified, None, expires_at)

    def update(
        self,
        upload_id: str,
        *,
        notes: Mapping[str, str] | None = None,
        expires_at: datetime | None = None,
    ) -> UploadInfo:
        record = self._read_record(upload_id)
        info = record.info
        if notes:
            info = replace(info, notes={**info.notes, **notes})
        if expires_at is not None:
            info = replace(info, expires_at=expires_at)
        self._save(replace(record, info=info))
        return self.get(upload_id)

    def concatenate(self, info: UploadInfo) -> UploadInfo:
        key = incoming_key(info.id)
        states = {pid: self._load(pid) for pid in dict.fromkeys(info.partial_ids)}
        total = check_partials(info, {pid: st.info for pid, st in states.items()})
        part_size = self._part_size
        self._check_size(total, part_size)
        for state in states.values():
            self._complete(state)  # each partial becomes a readable object
        multipart_id = self._start_multipart(key, info)
        try:
            sizes = [states[pid].offset for pid in info.partial_ids]
            for number, ranges in enumerate(plan_concatenation(sizes, part_size), start=1):
                sources = [(incoming_key(info.partial_ids[i]), a, b) for i, a, b in ranges]
                self._fill_part(key, multipart_id, number, sources)
            final = replace(info, offset=0, length=total, is_partial=False)
            self._save(_Record(final, multipart_id, part_size))
        except BaseException:
            self._abort_quietly(key, multipart_id)
            raise
        return replace(final, offset=total)

    def finish(self, upload_id: str) -> str:
        state = self._load(upload_id)
        check_finishable(state.info)
        self._complete(state)
        return incoming_key(upload_id)

    def terminate(self, upload_id: str) -> None:
        """Data first, ``.info`` last: a crash in between leaves an upload that is still
        listed (and answers 404), so the expiry sweep or a repeat finishes the job."""
        record = self._read_record(upload_id)
        key = incoming_key(upload_id)
        with contextlib.suppress(_NoUpload, _Missing), self._errors():
            self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=key, UploadId=record.multipart_id
            )
        for doomed in (self._spool_key(upload_id), key, self._info_key(upload_id)):
            self._delete(doomed)

    def list_uploads(self) -> Iterator[UploadInfo]:
        for key, _ in self._list_state_objects(".info"):
            upload_id = key[len(STATE_PREFIX) : -len(".info")]
            if not is_upload_id(upload_id):
                continue
            with contextlib.suppress(TusError):  # terminated while we list
                yield self._load(upload_id, lenient=True).info

    def purge_orphans(self, older_than: datetime) -> int:
        """Abort multipart uploads under ``incoming/`` that no ``.info`` claims (a crash
        inside :meth:`create` or :meth:`concatenate`) and delete spools whose upload is
        gone, when started before ``older_than`` (timezone-aware)."""
        removed = 0
        for key, multipart_id in self._stale_multipart_uploads(older_than):
            upload_id = key[len(INCOMING_PREFIX) :]
            try:
                if self._read_record(upload_id).multipart_id == multipart_id:
                    continue
            except TusError:
                pass
            self._abort_quietly(key, multipart_id)
            removed += 1
        for key, modified in list(self._list_state_objects(".part")):
            upload_id = key[len(STATE_PREFIX) : -len(".part")]
            if not is_upload_id(upload_id) or modified >= older_than:
                continue
            if not self._exists(self._info_key(upload_id)):
                self._delete(key)
                removed += 1
        return removed

    # -- recovering state --------------------------------------------------------------

    def _load(self, upload_id: str, *, lenient: bool = False) -> _State:
        """The upload as the bucket has it now. ``lenient`` keeps an upload whose data is
        gone (a termination cut short) at offset 0 instead of answering 404."""
        record = self._read_record(upload_id)
        if record.finished:
            return _State(record, finished_size=record.info.length or 0)
        key = incoming_key(upload_id)
        listed = self._list_parts(key, record.multipart_id)
        if listed is None:  # completed (a finish cut short before it was recorded) or aborted
            size = self._size(key)
            if size is None:
                # A finish may be completing the multipart upload right now: the parts are
                # gone before the object shows. Look once more before calling it gone.
                record = self._read_record(upload_id)
                if record.finished:
                    return _State(record, finished_size=record.info.length or 0)
                size = self._size(key)
            if size is None:
                if lenient:
                    return _State(record)
                raise TusError(TusErrorKind.NOT_FOUND, detail=f"{upload_id}: data is gone")
            return _State(record, finished_size=size)
        parts = usable_parts(listed, record.part_size)
        spool = self._head_spool(upload_id)
        current = spool is not None and spool[0] == len(parts) + 1
        return _State(
            record,
            parts=parts,
            spool=spool[1] if spool is not None and current else 0,
            spool_exists=spool is not None,
        )

    def _read_record(self, upload_id: str) -> _Record:
        key = self._info_key(upload_id) if is_upload_id(upload_id) else None
        if key is None:
            raise TusError(TusErrorKind.NOT_FOUND, detail="malformed upload id")
        try:
            with self._errors():
                body = self._client.get_object(Bucket=self._bucket, Key=key)["Body"]
                try:
                    raw = body.read()
                finally:
                    body.close()
        except _Missing:
            raise TusError(TusErrorKind.NOT_FOUND, detail=upload_id) from None
        data = json.loads(raw)
        return _Record(
            info=info_from_json(data),
            multipart_id=str(data["multipart_upload_id"]),
            part_size=int(data["part_size"]),
            finished=bool(data.get("finished", False)),
        )

    def _save(self, record: _Record) -> None:
        data = info_to_json(record.info)
        del data["offset"]  # the offset lives in the parts and the spool, never here
        data.update(
            version=_INFO_VERSION,
            multipart_upload_id=record.multipart_id,
            part_size=record.part_size,
            finished=record.finished,
        )
        with self._errors():
            self._client.put_object(
                Bucket=self._bucket,
                Key=self._info_key(record.info.id),
                Body=json.dumps(data).encode("utf-8"),
                ContentType="application/json",
            )

    def _set_expiry(self, record: _Record, expires_at: datetime) -> None:
        self._save(replace(record, info=replace(record.info, expires_at=expires_at)))

    def _list_parts(self, key: str, multipart_id: str) -> list[ListedPart] | None:
        """Every part of the multipart upload, or ``None`` once it is gone."""
        pages = self._client.get_paginator("list_parts").paginate(
            Bucket=self._bucket, Key=key, UploadId=multipart_id
        )
        parts: list[ListedPart] = []
        try:
            with self._errors():
                for page in pages:
                    for part in page.get("Parts", []):
                        parts.append(ListedPart(part["PartNumber"], part["Size"], part["ETag"]))
        except (_NoUpload, _Missing):
            return None
        return parts

    def _head_spool(self, upload_id: str) -> tuple[int, int] | None:
        """``(part number it starts, size)`` of the spool object, if there is one."""
        try:
            with self._errors():
                got = self._client.head_object(Bucket=self._bucket, Key=self._spool_key(upload_id))
        except _Missing:
            return None
        tag = got.get("Metadata", {}).get("part", "")
        number = int(tag) if tag.isascii() and tag.isdigit() and len(tag) < 7 else 0
        return number, got["ContentLength"]

    def _read_spool(self, upload_id: str, expected: int) -> bytes:
        try:
            with self._errors():
                body = self._client.get_object(Bucket=self._bucket, Key=self._spool_key(upload_id))[
                    "Body"
                ]
                try:
                    data = body.read()
                finally:
                    body.close()
        except _Missing:
            data = b""
        if len(data) != expected:
            raise TusError(TusErrorKind.LOCKED, detail="the spool changed during the write")
        return data

    # -- writing -----------------------------------------------------------------------

    def _append(
        self,
        state: _State,
        chunks: Iterator[bytes],
        limit: int | None,
        expires_at: datetime | None,
    ) -> int:
        """Cut the spool plus ``chunks`` into whole parts; what is left becomes the spool
        (or the last part, once the upload is complete). What arrived before an error is
        kept, as far as the bucket still answers."""
        record = state.record
        upload_id = record.info.id
        part_size = record.part_size
        pending = _Pending(
            parts_bytes=state.offset - state.spool,
            next_part=len(state.parts) + 1,
            buffer=bytearray(self._read_spool(upload_id, state.spool) if state.spool else b""),
            spool_current=state.spool > 0,
            spool_exists=state.spool_exists,
        )
        received = 0
        # One part is sent on a helper thread while the next one fills (the body keeps
        # streaming in instead of waiting for each UploadPart); at most one in flight.
        sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tus-s3-part")
        in_flight: list[Future[str]] = []

        def wait_for_part() -> None:
            while in_flight:
                in_flight.pop().result()  # its error, if any, is this write's error

        try:
            try:
                for chunk in chunks:
                    if not chunk:
                        continue
                    if limit is not None and received + len(chunk) > limit:
                        raise TusError(TusErrorKind.SIZE_EXCEEDED, detail=f"over {limit}")
                    received += len(chunk)
                    view = memoryview(chunk)
                    while view:
                        take = min(part_size - len(pending.buffer), len(view))
                        pending.buffer += view[:take]
                        pending.spool_current = False
                        view = view[take:]
                        if len(pending.buffer) == part_size:
                            wait_for_part()
                            part = (record, pending.next_part, pending.buffer)
                            in_flight.append(sender.submit(self._upload_part, *part))
                            pending.flushed(part_size)  # a new buffer: the sent one stays
                wait_for_part()
            except BaseException:
                try:
                    wait_for_part()  # a part that failed leaves a gap: the spool is stale
                    self._settle(record, pending, expires_at)
                except Exception:  # the original error is the one to report
                    log.warning("tus upload %s: could not keep received bytes", upload_id)
                raise
            return self._settle(record, pending, expires_at)
        finally:
            sender.shutdown(wait=True)

    def _settle(self, record: _Record, pending: _Pending, expires_at: datetime | None) -> int:
        upload_id = record.info.id
        end = pending.parts_bytes + len(pending.buffer)
        if pending.buffer and end == record.info.length:  # complete: the tail is the last part
            self._upload_part(record, pending.next_part, pending.buffer)
            pending.flushed(len(pending.buffer))
        if pending.buffer and not pending.spool_current:
            with self._errors():
                self._client.put_object(
                    Bucket=self._bucket,
                    Key=self._spool_key(upload_id),
                    Body=_body(pending.buffer),
                    Metadata={"part": str(pending.next_part)},
                )
        elif not pending.buffer and pending.spool_exists:
            self._delete(self._spool_key(upload_id))  # stale: its bytes are in a part now
        if expires_at is not None:  # re-read: notes may have changed during a long write
            self._set_expiry(self._read_record(upload_id), expires_at)
        return end

    def _upload_part(self, record: _Record, number: int, data: bytes | bytearray) -> str:
        if number > MAX_PARTS:
            raise TusError(TusErrorKind.MAX_SIZE_EXCEEDED, detail=f"more than {MAX_PARTS} parts")
        try:
            with self._errors():
                sent = self._client.upload_part(
                    Bucket=self._bucket,
                    Key=incoming_key(record.info.id),
                    UploadId=record.multipart_id,
                    PartNumber=number,
                    Body=_body(data),
                )
        except (_NoUpload, _Missing):
            raise TusError(TusErrorKind.NOT_FOUND, detail="the upload was terminated") from None
        return sent["ETag"]

    def _fill_part(
        self, key: str, multipart_id: str, number: int, sources: Sequence[tuple[str, int, int]]
    ) -> None:
        """Part ``number`` of the final upload from ``sources`` (key, start, stop)."""
        try:
            if len(sources) == 1:
                source, start, stop = sources[0]
                with self._errors():
                    self._client.upload_part_copy(
                        Bucket=self._bucket,
                        Key=key,
                        UploadId=multipart_id,
                        PartNumber=number,
                        CopySource={"Bucket": self._bucket, "Key": source},
                        CopySourceRange=f"bytes={start}-{stop - 1}",
                    )
                return
            buffer = bytearray()
            for source, start, stop in sources:
                for chunk in self._archive.open(source, start=start, end=stop - 1):
                    buffer += chunk
            with self._errors():
                self._client.upload_part(
                    Bucket=self._bucket,
                    Key=key,
                    UploadId=multipart_id,
                    PartNumber=number,
                    Body=_body(buffer),
                )
        except (_Missing, _NoUpload, NotFound):
            raise TusError(TusErrorKind.NOT_FOUND, detail="a partial upload is gone") from None

    def _complete(self, state: _State) -> None:
        """Turn a complete upload's multipart upload into ``incoming/<id>`` and record
        that it was (idempotent: a finish cut short is completed on the next call)."""
        record = state.record
        if record.finished:
            return
        if state.finished_size is not None:
            self._save(replace(record, finished=True))
            return
        upload_id = record.info.id
        key = incoming_key(upload_id)
        parts: list[CompletedPartTypeDef] = [
            {"PartNumber": p.number, "ETag": p.etag} for p in state.parts
        ]
        if state.spool:  # completed by declare_length: the spool is the last part
            data = self._read_spool(upload_id, state.spool)
            etag = self._upload_part(record, len(parts) + 1, data)
            parts.append({"PartNumber": len(parts) + 1, "ETag": etag})
        try:
            with self._errors():
                if parts:
                    self._client.complete_multipart_upload(
                        Bucket=self._bucket,
                        Key=key,
                        UploadId=record.multipart_id,
                        MultipartUpload={"Parts": parts},
                    )
                else:  # S3 cannot complete an empty multipart upload
                    self._client.put_object(
                        Bucket=self._bucket, Key=key, Body=b"", **_content_type(record.info)
                    )
                    self._client.abort_multipart_upload(
                        Bucket=self._bucket, Key=key, UploadId=record.multipart_id
                    )
        except (_NoUpload, _Missing):
            if self._size(key) is None:  # completed by a concurrent finish, or terminated?
                raise TusError(
                    TusErrorKind.NOT_FOUND, detail=f"{upload_id}: data is gone"
                ) from None
        if state.spool_exists:
            self._delete(self._spool_key(upload_id))
        self._save(replace(record, finished=True))

    # -- small calls -------------------------------------------------------------------

    def _start_multipart(self, key: str, info: UploadInfo) -> str:
        with self._errors():
            started = self._client.create_multipart_upload(
                Bucket=self._bucket, Key=key, **_content_type(info)
            )
        return started["UploadId"]

    def _abort_quietly(self, key: str, multipart_id: str) -> None:
        with contextlib.suppress(_NoUpload, _Missing, BackendUnavailable), self._errors():
            self._client.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=multipart_id)

    def _size(self, key: str) -> int | None:
        try:
            with self._errors():
                return self._client.head_object(Bucket=self._bucket, Key=key)["ContentLength"]
        except _Missing:
            return None

    def _exists(self, key: str) -> bool:
        return self._size(key) is not None

    def _delete(self, key: str) -> None:
        with contextlib.suppress(_Missing), self._errors():
            self._client.delete_object(Bucket=self._bucket, Key=key)

    def _list_state_objects(self, suffix: str) -> Iterator[tuple[str, datetime]]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=STATE_PREFIX
        )
        with self._errors():
            for page in pages:
                for item in page.get("Contents", []):
                    if item["Key"].endswith(suffix):
                        yield item["Key"], item["LastModified"]

    def _stale_multipart_uploads(self, older_than: datetime) -> list[tuple[str, str]]:
        """``(key, upload id)`` of our multipart uploads started before ``older_than``;
        collected before any is aborted, so the listing's markers stay valid."""
        pages = self._client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self._bucket, Prefix=INCOMING_PREFIX
        )
        found: list[tuple[str, str]] = []
        with self._errors():
            for page in pages:
                for upload in page.get("Uploads", []):
                    key, started = upload["Key"], upload["Initiated"]
                    if is_upload_id(key[len(INCOMING_PREFIX) :]) and started < older_than:
                        found.append((key, upload["UploadId"]))
        return found

    @staticmethod
    def _check_size(length: int | None, part_size: int) -> None:
        if length is not None and length > part_size * MAX_PARTS:
            raise TusError(
                TusErrorKind.MAX_SIZE_EXCEEDED,
                detail=f"{length} > {MAX_PARTS} parts of {part_size} bytes",
            )

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """botocore's exceptions as domain errors (or the two internal markers)."""
        try:
            yield
        except ClientError as exc:
            self._client_error(exc)
        except BotoCoreError as exc:
            raise BackendUnavailable(
                f"the upload store ({self._archive.location}) cannot be reached",
                detail=str(exc),
            ) from exc

    def _client_error(self, exc: ClientError) -> NoReturn:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchUpload":
            raise _NoUpload from exc
        if code in ("NoSuchKey", "404", "NotFound") or (status == 404 and code != "NoSuchBucket"):
            raise _Missing from exc
        raise BackendUnavailable(
            f"the upload store ({self._archive.location}) refused the request",
            detail=f"{code}: {exc}",
        ) from exc


@dataclass(slots=True)
class _Pending:
    """A write in progress: bytes in whole parts so far, and the buffered tail."""

    parts_bytes: int
    next_part: int
    buffer: bytearray
    spool_current: bool  # the spool object holds exactly ``buffer``, for ``next_part``
    spool_exists: bool

    def flushed(self, size: int) -> None:
        self.parts_bytes += size
        self.next_part += 1
        self.buffer = bytearray()
        self.spool_current = False


def _body(data: bytes | bytearray) -> bytes:
    """A part's buffer as a request body, without a second copy of it in memory.

    botocore sends any bytes-like body as is (its stubs only name ``bytes``); converting
    with ``bytes()`` would briefly hold every part twice.
    """
    return cast("bytes", data)


def _content_type(info: UploadInfo) -> dict[str, Any]:
    """``ContentType`` for S3 calls, from the client's metadata when it names one."""
    content_type = content_type_of(info.metadata)
    return {"ContentType": content_type} if content_type else {}


def _receive_verified(
    chunks: Iterator[bytes], limit: int | None, checksum: tuple[str, bytes], held: IO[bytes]
) -> int:
    """Receive a whole checksummed body into ``held``: 413 past ``limit``, 460 unless the
    digest matches. The bucket is not touched, so a failure discards the chunk."""
    hasher = new_hasher(checksum[0])
    received = 0
    for chunk in chunks:
        if limit is not None and received + len(chunk) > limit:
            raise TusError(TusErrorKind.SIZE_EXCEEDED, detail=f"over {limit}")
        held.write(chunk)
        hasher.update(chunk)
        received += len(chunk)
    if not hmac.compare_digest(checksum[1], hasher.digest()):
        raise TusError(TusErrorKind.CHECKSUM_MISMATCH)
    return received


__all__ = [
    "DEFAULT_PART_SIZE",
    "STATE_PREFIX",
    "ListedPart",
    "S3UploadStore",
    "plan_concatenation",
    "usable_parts",
]
