"""One behaviour suite for every ArchiveStore: the local folder and S3 (moto on loopback).

Each test gets its own folder or bucket, so the suite is safe under pytest-xdist.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import uuid
from datetime import UTC

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hybridvideo.api import errors as api_errors
from hybridvideo.api.routers.archive_files import build_router
from hybridvideo.archive.base import MAX_PRESIGN_SECONDS, ArchiveStore
from hybridvideo.archive.local import LocalArchive
from hybridvideo.archive.s3 import S3Archive, client_config
from hybridvideo.errors import (
    BackendUnavailable,
    ConfigurationError,
    Conflict,
    InvalidInput,
    InvalidKey,
    NotFound,
    RangeNotSatisfiable,
)
from tests.services import free_port

MiB = 1024 * 1024
SECRET = b"contract-suite-secret-0123456789"


# Status per domain error, most specific first: what api/errors.py is expected to do.
def serving_app(store: ArchiveStore) -> FastAPI:
    """A minimal app around ``build_router`` with the real central error handler."""
    app = FastAPI()
    app.include_router(build_router(store))
    api_errors.install(app)
    return app


@functools.cache
def admin_client(endpoint: str):
    """The test's own view of the S3 server (bucket setup and inspection), one per server."""
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", config=client_config()
    )


def public_thumbnails(bucket: str) -> dict:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/thumbnails/*",
            }
        ],
    }


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        root = tmp_path / "archive"
        root.mkdir()
        return LocalArchive(root, base_url="http://testserver", secret=SECRET)
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = f"hv-{uuid.uuid4().hex[:20]}"
    admin = admin_client(endpoint)
    admin.create_bucket(Bucket=bucket)
    # Public reads are a bucket setting (an R2 custom domain), never an object ACL.
    admin.put_bucket_policy(Bucket=bucket, Policy=json.dumps(public_thumbnails(bucket)))
    return S3Archive(
        bucket=bucket,
        endpoint_url=endpoint,
        access_key_id="testing",
        secret_access_key="testing",
        public_base_url=f"{endpoint}/{bucket}",
        part_size=5 * MiB,
    )


@pytest.fixture
def leftovers(store, request, tmp_path):
    """What a failed put could leave behind: temp files, or unfinished multipart uploads."""
    if isinstance(store, S3Archive):
        client = admin_client(request.getfixturevalue("s3_endpoint"))
        return lambda: client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
    return lambda: sorted(p.name for p in (tmp_path / "archive" / ".tmp").glob("*"))


@pytest.fixture
def http(store):
    """An HTTP client able to fetch the store's URLs: our own app, or the S3 server."""
    if store.capabilities.serves_signed_urls:
        with TestClient(serving_app(store)) as client:
            yield client
    else:
        with httpx.Client() as client:
            yield client


class Boom(Exception):
    """Raised by a source stream, standing for a client that went away mid-upload."""


class FlakyStream(io.RawIOBase):
    """Gives ``ok`` random bytes in small reads, then raises :class:`Boom` (or ends)."""

    def __init__(self, ok: int, *, fail: bool = True, step: int = 256 * 1024) -> None:
        self.data = os.urandom(ok)
        self.pos, self.fail, self.step = 0, fail, step

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.pos >= len(self.data):
            if self.fail:
                raise Boom("client went away")
            return b""
        size = self.step if size < 0 else min(size, self.step)
        chunk = self.data[self.pos : self.pos + size]
        self.pos += len(chunk)
        return chunk


def read_all(store, key, **span) -> bytes:
    return b"".join(store.open(key, **span))


def test_round_trip_keeps_bytes_content_type_and_metadata(store):
    info = store.put(
        "masters/v1/source.mp4",
        io.BytesIO(b"hello video"),
        content_type="video/mp4",
        metadata={"video-id": "v1", "origin": "upload"},
    )
    assert info.size == 11
    head = store.head("masters/v1/source.mp4")
    assert head.size == 11
    assert head.etag and head.etag == info.etag
    assert head.content_type == "video/mp4"
    assert dict(head.metadata) == {"video-id": "v1", "origin": "upload"}
    assert head.last_modified is not None and head.last_modified.utcoffset() == UTC.utcoffset(None)
    assert store.exists("masters/v1/source.mp4")
    assert read_all(store, "masters/v1/source.mp4") == b"hello video"


def test_large_put_goes_up_in_parts_and_reads_back_identical(store):
    data = os.urandom(11 * MiB)
    info = store.put(
        "masters/big.bin", io.BytesIO(data), content_type="video/mp4", metadata={"a": "b"}
    )
    assert info.size == len(data)
    if store.capabilities.multipart:
        assert info.etag.endswith("-3")  # 5 + 5 + 1 MiB
    # The multipart path keeps the content type and metadata too (set at create time).
    assert (info.content_type, dict(info.metadata)) == ("video/mp4", {"a": "b"})
    digest = hashlib.sha256()
    for chunk in store.open("masters/big.bin"):
        digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()


def test_short_reads_from_the_source_still_fill_whole_parts(store):
    source = FlakyStream(6 * MiB, fail=False, step=100_000)
    store.put("masters/trickle.bin", source)
    assert read_all(store, "masters/trickle.bin") == source.data


@pytest.mark.parametrize("fail_after", [3 * MiB, 12 * MiB], ids=["first-part", "multipart"])
def test_failed_put_leaves_no_object_and_no_upload(store, leftovers, fail_after):
    with pytest.raises(Boom):
        store.put("masters/broken.bin", FlakyStream(fail_after))
    assert not store.exists("masters/broken.bin")
    assert list(store.list("masters/")) == []
    assert leftovers() == []


@pytest.mark.parametrize(
    ("span", "expected"),
    [
        ({"start": 10}, slice(10, None)),
        ({"start": 10, "end": 19}, slice(10, 20)),
        ({"start": 90, "end": 1000}, slice(90, None)),
        ({"start": 99, "end": 99}, slice(99, 100)),
        ({"start": 0, "end": 0}, slice(0, 1)),
    ],
)
def test_ranged_reads(store, span, expected):
    data = bytes(range(100))
    store.put("k/range.bin", io.BytesIO(data))
    assert read_all(store, "k/range.bin", **span) == data[expected]


def test_range_beyond_the_object_is_refused_before_reading(store):
    store.put("k/range.bin", io.BytesIO(b"x" * 100))
    with pytest.raises(RangeNotSatisfiable) as caught:
        store.open("k/range.bin", start=100)  # no next(): the check is eager
    assert caught.value.size == 100


def test_empty_object(store):
    assert store.put("k/empty", io.BytesIO(b"")).size == 0
    assert read_all(store, "k/empty") == b""


def test_missing_key(store):
    assert not store.exists("nope/missing")
    with pytest.raises(NotFound):
        store.head("nope/missing")
    with pytest.raises(NotFound):
        store.open("nope/missing")  # eager, before the first chunk
    with pytest.raises(NotFound):
        store.delete("nope/missing")


def test_list_by_prefix_in_key_order(store):
    keys = ["a/2/x", "b/1", "a0", "a.b", "a/1", "a-b", "ab/1"]
    for key in keys:
        store.put(key, io.BytesIO(key.encode()))
    assert [o.key for o in store.list()] == sorted(keys)
    assert [o.key for o in store.list("a/")] == ["a/1", "a/2/x"]
    assert [o.key for o in store.list("a")] == sorted(k for k in keys if k.startswith("a"))
    assert [o.key for o in store.list("zz/")] == []
    listed = {o.key: o for o in store.list("b/")}
    assert listed["b/1"].size == 3
    assert listed["b/1"].etag == store.head("b/1").etag


def test_presigned_get_serves_ranges(store, http):
    data = bytes(range(256)) * 4
    store.put("masters/v2/source.mp4", io.BytesIO(data), content_type="video/mp4")
    url = store.presign_get("masters/v2/source.mp4", expires_in=300)
    whole = http.get(url)
    assert whole.status_code == 200
    assert whole.content == data
    assert whole.headers["content-type"] == "video/mp4"
    part = http.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    assert part.headers["content-type"] == "video/mp4"
    if store.capabilities.serves_signed_urls:  # our own origin: never sniffed
        assert whole.headers["x-content-type-options"] == "nosniff"
        assert whole.headers["content-disposition"].startswith("inline;")


def test_presigned_get_never_serves_a_page_from_our_origin(store, http):
    page = b"<html><script>alert(document.cookie)</script></html>"
    store.put("masters/v2/page.html", io.BytesIO(page), content_type="text/html")
    assert store.head("masters/v2/page.html").content_type == "text/html"  # stored as given
    got = http.get(store.presign_get("masters/v2/page.html", expires_in=300))
    assert got.status_code == 200
    assert got.content == page
    if store.capabilities.serves_signed_urls:
        assert got.headers["content-type"] == "application/octet-stream"
        assert got.headers["content-disposition"].startswith("attachment;")
        assert got.headers["x-content-type-options"] == "nosniff"
    else:  # S3/R2 answer from their own origin, under the stored type
        assert got.headers["content-type"] == "text/html"


@pytest.mark.parametrize("seconds", [0, -5, MAX_PRESIGN_SECONDS + 1])
def test_presign_expiry_bounds(store, seconds):
    with pytest.raises(InvalidInput):
        store.presign_get("masters/any", expires_in=seconds)


def test_presign_accepts_the_whole_allowed_window(store):
    assert store.presign_get("masters/any", expires_in=1)
    assert store.presign_get("masters/any", expires_in=MAX_PRESIGN_SECONDS)


def test_public_url_serves_thumbnails(store, http):
    store.put("thumbnails/v1 cover.jpg", io.BytesIO(b"jpeg bytes"), content_type="image/jpeg")
    url = store.public_url("thumbnails/v1 cover.jpg")
    assert url is not None and url.endswith("/thumbnails/v1%20cover.jpg")
    got = http.get(url)
    assert got.status_code == 200
    assert got.content == b"jpeg bytes"


BAD_KEYS = ["../x", "/abs", "a//b", "a\x00b", "a" * 1025, "a/./b", "", "a/.."]
CALLS = {
    "put": lambda s, k: s.put(k, io.BytesIO(b"x")),
    "open": lambda s, k: s.open(k),
    "head": lambda s, k: s.head(k),
    "exists": lambda s, k: s.exists(k),
    "presign_get": lambda s, k: s.presign_get(k, expires_in=60),
    "public_url": lambda s, k: s.public_url(k),
    "list": lambda s, k: s.list(k),
    "delete": lambda s, k: s.delete(k),
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_every_method_refuses_bad_keys(store, call):
    for key in BAD_KEYS:
        if call is CALLS["list"] and key == "":
            continue  # the empty prefix lists everything
        with pytest.raises(InvalidKey):
            call(store, key)


def test_ping(store):
    store.ping()


def test_delete_then_head(store):
    store.put("k/doomed", io.BytesIO(b"bye"), metadata={"a": "b"})
    store.delete("k/doomed")
    with pytest.raises(NotFound):
        store.head("k/doomed")
    assert list(store.list("k/")) == []


@pytest.fixture(params=["local", "s3"])
def unreachable(request, tmp_path):
    if request.param == "local":
        blocker = tmp_path / "a-file"
        blocker.write_bytes(b"")  # a root below a regular file can never exist
        return LocalArchive(blocker / "archive", base_url="http://x", secret=SECRET)
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    quick = Config(retries={"max_attempts": 1}, connect_timeout=1)
    client = boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="auto", config=client_config().merge(quick)
    )
    return S3Archive(
        bucket="archive",
        endpoint_url=endpoint,
        access_key_id="testing",
        secret_access_key="testing",
        client=client,
    )


def test_ping_fails_when_the_store_is_unreachable(unreachable):
    with pytest.raises(BackendUnavailable) as caught:
        unreachable.ping()
    assert "testing" not in caught.value.message  # never echo credentials


# S3-only details that the shared suite cannot express.


def test_s3_refuses_parts_smaller_than_r2_allows():
    with pytest.raises(ConfigurationError):
        S3Archive(
            bucket="b",
            endpoint_url=None,
            access_key_id="x",
            secret_access_key="y",
            part_size=5 * MiB - 1,
        )


def test_s3_public_url_needs_a_base_url():
    s3 = S3Archive(bucket="b", endpoint_url=None, access_key_id="x", secret_access_key="y")
    assert s3.public_url("thumbnails/a.jpg") is None


@pytest.mark.parametrize(
    ("reported", "size"), [("123", 123), ("²", 7), ("9" * 5000, 7), ("", 7), (None, 7)]
)
def test_s3_range_error_survives_an_odd_reported_size(reported, size):
    s3 = S3Archive(bucket="b", endpoint_url=None, access_key_id="x", secret_access_key="y")
    error = {"Code": "InvalidRange"}
    if reported is not None:
        error["ActualObjectSize"] = reported
    exc = ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 416}}, "GetObject")
    with pytest.raises(RangeNotSatisfiable) as caught, s3._errors("k", size=7):
        raise exc
    assert caught.value.size == size


def test_move_renames_keeps_bytes_and_metadata_and_repeats_safely(store):
    data = os.urandom(11 * MiB)  # above the part size: S3 copies in parts
    store.put("incoming/u1", io.BytesIO(data), content_type="application/octet-stream",
              metadata={"origin": "upload"})  # fmt: skip
    info = store.move("incoming/u1", "masters/ab/abc.mp4", content_type="video/mp4")
    assert info.size == len(data)
    assert not store.exists("incoming/u1")
    head = store.head("masters/ab/abc.mp4")
    assert head.content_type == "video/mp4"
    assert dict(head.metadata) == {"origin": "upload"}
    assert (
        hashlib.sha256(read_all(store, "masters/ab/abc.mp4")).digest()
        == hashlib.sha256(data).digest()
    )
    # a repeated move (source gone, target there) answers with the target
    assert store.move("incoming/u1", "masters/ab/abc.mp4").size == len(data)
    with pytest.raises(NotFound):
        store.move("incoming/missing", "masters/ab/none.mp4")
    store.put("incoming/u2", io.BytesIO(b"other"))
    with pytest.raises(Conflict):
        store.move("incoming/u2", "masters/ab/abc.mp4")  # never overwrites
    assert read_all(store, "incoming/u2") == b"other"
    assert store.head("masters/ab/abc.mp4").size == len(data)
