"""The archive in an S3-compatible bucket: Cloudflare R2 in production, any S3 API otherwise.

Storage layout: one object per key, exactly as the key reads (no hidden prefix), so a
bucket filled by another tool can be adopted as is. Content type and caller metadata are
stored as the object's ``Content-Type`` and S3 user metadata (``x-amz-meta-*``); S3 folds
metadata names to lower case, and so does this store.

Uploads: a stream that ends within the first ``part_size`` bytes goes up in one
``PutObject``; anything longer becomes a multipart upload with parts of exactly
``part_size`` (R2 wants every part but the last to be the same size, at least 5 MiB), so the
largest object is ``part_size`` x 10,000 parts (78 GiB at the default 8 MiB; raise
``part_size`` for bigger masters). A failed upload is aborted on the spot, so no invisible,
billed parts are left behind; a lifecycle rule ``AbortIncompleteMultipartUpload`` is still
a good safety net for crashes.

Permissions the credentials need: ``s3:GetObject`` (also covers HeadObject and presigned
GETs), ``s3:PutObject`` (also covers CreateMultipartUpload, UploadPart,
CompleteMultipartUpload), ``s3:AbortMultipartUpload``, ``s3:ListBucket`` (listing, and a
404 rather than 403 for missing keys) and HeadBucket for ``ping``. ``s3:DeleteObject`` is
needed only by the explicit operator delete command; the service never deletes masters.
On R2 an "Object Read & Write" token scoped to the bucket covers all of this.

R2 checksum gotcha: boto3 >= 1.36 adds CRC32 checksum headers to every upload by default
and R2 has rejected them. The client is therefore built with
``request_checksum_calculation="when_required"`` and
``response_checksum_validation="when_required"``. No ACL headers are ever sent: R2 ignores
or rejects them, and public access is a bucket setting (custom domain), not an object one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn, cast
from urllib.parse import quote, urlsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from hybridvideo.archive.base import MAX_PRESIGN_SECONDS, Capabilities, ObjectInfo, check_range
from hybridvideo.domain.keys import validate_key, validate_prefix
from hybridvideo.errors import (
    BackendUnavailable,
    ConfigurationError,
    Conflict,
    InvalidInput,
    NotFound,
    RangeNotSatisfiable,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * 1024 * MiB
MAX_PARTS = 10_000
READ_CHUNK = MiB
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


def client_config() -> Config:
    """The botocore settings R2 needs (path-style, SigV4, checksums only when required)."""
    return Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=10,
    )


class S3Archive:
    """An :class:`~hybridvideo.archive.base.ArchiveStore` on R2 or any S3 API."""

    capabilities = Capabilities(multipart=True)

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None,
        region: str = "auto",
        access_key_id: str | None,
        secret_access_key: str | None,
        public_base_url: str | None = None,
        part_size: int = 8 * MiB,
        client: Any | None = None,
    ) -> None:
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ConfigurationError(
                f"archive part size must be between 5 MiB and 5 GiB, got {part_size} bytes"
            )
        if not bucket:
            raise ConfigurationError("archive bucket name is empty")
        self._bucket = bucket
        self._endpoint = endpoint_url
        self._public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self._part_size = part_size
        if client is None:
            # A session of our own: boto3's default session is not safe to share across threads.
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region,
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                config=client_config(),
            )
        self._client = cast("S3Client", client)

    @property
    def bucket(self) -> str:
        return self._bucket

    @property
    def client(self) -> S3Client:
        """The boto3 client, for stores that build on this bucket (the tus upload store)."""
        return self._client

    @property
    def location(self) -> str:
        """Bucket and endpoint host, safe for messages (no credentials, no userinfo)."""
        return self._where()

    # -- writing ---------------------------------------------------------------------------

    def put(
        self,
        key: str,
        data: BinaryIO,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        validate_key(key)
        extra: dict[str, Any] = {"Metadata": {k.lower(): v for k, v in (metadata or {}).items()}}
        if content_type:
            extra["ContentType"] = content_type
        first = _read_part(data, self._part_size)
        second = _read_part(data, self._part_size) if len(first) == self._part_size else b""
        if not second:
            with self._errors(key):
                self._client.put_object(Bucket=self._bucket, Key=key, Body=first, **extra)
        else:
            self._multipart(key, data, [first, second], extra)
        return self.head(key)

    def _multipart(
        self, key: str, data: BinaryIO, pending: list[bytes], extra: dict[str, Any]
    ) -> None:
        with self._errors(key):
            upload = self._client.create_multipart_upload(Bucket=self._bucket, Key=key, **extra)
        upload_id = upload["UploadId"]
        parts: list[CompletedPartTypeDef] = []
        try:
            while pending:
                number = len(parts) + 1
                if number > MAX_PARTS:
                    raise InvalidInput(
                        f"object is larger than {MAX_PARTS} parts of {self._part_size} bytes"
                    )
                with self._errors(key):
                    sent = self._client.upload_part(
                        Bucket=self._bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=pending.pop(0),
                    )
                parts.append({"ETag": sent["ETag"], "PartNumber": number})
                # The caller's read errors pass through unchanged (after the abort below).
                if nxt := _read_part(data, self._part_size):
                    pending.append(nxt)
            with self._errors(key):
                self._client.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            with contextlib.suppress(BotoCoreError, ClientError):
                self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=key, UploadId=upload_id
                )
            raise

    def move(self, source: str, target: str, *, content_type: str | None = None) -> ObjectInfo:
        """Server-side copy then delete: the bytes never pass through us. boto3's managed
        copy switches to a multipart copy (UploadPartCopy, equal parts) above its
        threshold, which also covers objects beyond CopyObject's 5 GiB limit."""
        validate_key(source)
        validate_key(target)
        if not self.exists(source):
            if self.exists(target):
                return self.head(target)  # a repeated move
            raise NotFound(f"archive object {source!r} does not exist")
        if self.exists(target):
            raise Conflict(f"archive object {target!r} already exists")
        head = self.head(source)
        extra: dict[str, Any] = {"MetadataDirective": "REPLACE", "Metadata": dict(head.metadata)}
        if content_type or head.content_type:
            extra["ContentType"] = content_type or head.content_type
        config = TransferConfig(
            multipart_threshold=self._part_size, multipart_chunksize=self._part_size
        )
        with self._errors(source):
            self._client.copy(
                {"Bucket": self._bucket, "Key": source},
                self._bucket,
                target,
                ExtraArgs=extra,
                Config=config,
            )
        with self._errors(source):
            self._client.delete_object(Bucket=self._bucket, Key=source)
        return self.head(target)

    def delete(self, key: str) -> None:
        self.head(key)  # S3 deletes silently; the contract wants NotFound for a missing key.
        with self._errors(key):
            self._client.delete_object(Bucket=self._bucket, Key=key)

    # -- reading ---------------------------------------------------------------------------

    def head(self, key: str) -> ObjectInfo:
        validate_key(key)
        with self._errors(key):
            got = self._client.head_object(Bucket=self._bucket, Key=key)
        return ObjectInfo(
            key=key,
            size=got["ContentLength"],
            etag=_etag(got.get("ETag")),
            content_type=got.get("ContentType"),
            last_modified=_utc(got.get("LastModified")),
            metadata={k.lower(): v for k, v in got.get("Metadata", {}).items()},
        )

    def exists(self, key: str) -> bool:
        try:
            self.head(key)
        except NotFound:
            return False
        return True

    def open(self, key: str, *, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        size = self.head(key).size
        stop = check_range(start, end, size)
        if stop <= start:
            return iter(())  # an empty object: S3 answers any Range on it with 416
        return self._stream(key, start, stop - 1, size)

    def _stream(self, key: str, first: int, last: int, size: int) -> Iterator[bytes]:
        with self._errors(key, size=size):
            got = self._client.get_object(
                Bucket=self._bucket, Key=key, Range=f"bytes={first}-{last}"
            )
        body = got["Body"]
        try:
            with self._errors(key, size=size):
                yield from body.iter_chunks(READ_CHUNK)
        finally:
            body.close()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        return self._list(prefix)

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=prefix
        )
        with self._errors(None):
            for page in pages:
                for item in page.get("Contents", []):
                    yield ObjectInfo(
                        key=item["Key"],
                        size=item["Size"],
                        etag=_etag(item.get("ETag")),
                        last_modified=_utc(item.get("LastModified")),
                    )

    # -- URLs ------------------------------------------------------------------------------

    def presign_get(self, key: str, *, expires_in: int) -> str:
        validate_key(key)
        if not 1 <= expires_in <= MAX_PRESIGN_SECONDS:
            raise InvalidInput(f"expires_in must be between 1 and {MAX_PRESIGN_SECONDS} seconds")
        with self._errors(key):
            return self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self._bucket, "Key": key},
                ExpiresIn=expires_in,
            )

    def public_url(self, key: str) -> str | None:
        validate_key(key)
        if self._public_base_url is None:
            return None
        return f"{self._public_base_url}/{quote(key, safe='/')}"

    # -- health ----------------------------------------------------------------------------

    def ping(self) -> None:
        with self._errors(None):
            self._client.head_bucket(Bucket=self._bucket)

    # -- errors ----------------------------------------------------------------------------

    def _where(self) -> str:
        """Bucket and endpoint host for messages: never the credentials or a URL's userinfo."""
        host = urlsplit(self._endpoint).netloc.rpartition("@")[2] if self._endpoint else "AWS"
        return f"bucket {self._bucket!r} at {host}"

    @contextlib.contextmanager
    def _errors(self, key: str | None, *, size: int | None = None) -> Iterator[None]:
        """Translate botocore's exceptions into domain errors at the edge."""
        try:
            yield
        except ClientError as exc:
            self._client_error(exc, key, size)
        except ParamValidationError as exc:
            raise InvalidInput("the archive refused the request", detail=str(exc)) from exc
        except BotoCoreError as exc:
            raise BackendUnavailable(
                f"the archive ({self._where()}) cannot be reached", detail=str(exc)
            ) from exc

    def _client_error(self, exc: ClientError, key: str | None, size: int | None) -> NoReturn:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket" or (key is None and status == 404):
            raise BackendUnavailable(
                f"the archive {self._where()} does not exist", detail=code
            ) from exc
        if key is not None and (code in _NOT_FOUND_CODES or status == 404):
            raise NotFound(f"archive object {key!r} does not exist") from exc
        if code == "InvalidRange" or status == 416:
            reported = _size(error.get("ActualObjectSize"))
            known = reported if reported is not None else size or 0
            raise RangeNotSatisfiable(
                f"byte range starts beyond the object ({known} bytes)", size=known
            ) from exc
        raise BackendUnavailable(
            f"the archive ({self._where()}) refused the request", detail=f"{code}: {exc}"
        ) from exc


def _read_part(data: BinaryIO, size: int) -> bytes:
    """Read exactly ``size`` bytes unless the stream ends first (``read`` may return less)."""
    head = data.read(size)
    if not head or len(head) == size:
        return head
    buf = bytearray(head)
    while len(buf) < size:
        chunk = data.read(size - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def _size(value: object) -> int | None:
    """A byte count the server reported, or None unless it is plain ASCII digits of sane length.

    ``str.isdigit`` alone also takes "²" (which ``int`` refuses) and any length (``int``
    refuses over 4,300 digits): either would turn a 416 into an unexpected 500.
    """
    if isinstance(value, str) and 0 < len(value) <= 20 and value.isascii() and value.isdigit():
        return int(value)
    return None


def _utc(when: datetime | None) -> datetime | None:
    """Listings may come back in local time; the contract speaks UTC everywhere."""
    return when.astimezone(UTC) if when else None


def _etag(value: str | None) -> str | None:
    return value.strip('"') if value else None
