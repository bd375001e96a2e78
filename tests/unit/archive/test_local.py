"""LocalArchive specifics: its signed URLs, the routes serving them, and its folder layout."""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
import os
from urllib.parse import parse_qs, urlsplit

import pytest

from hybridvideo.api.routers.archive_files import build_router
from hybridvideo.archive.local import LocalArchive
from hybridvideo.archive.s3 import S3Archive
from hybridvideo.errors import (
    BackendUnavailable,
    ConfigurationError,
    Conflict,
    InvalidInput,
    InvalidKey,
    Unauthorized,
)
from tests.contract.test_archive import SECRET, TestClient, serving_app

DATA = b"0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def root(tmp_path):
    folder = tmp_path / "archive"
    folder.mkdir()
    return folder


@pytest.fixture
def archive(root, clock):
    store = LocalArchive(root, base_url="http://testserver/", secret=SECRET, clock=clock)
    store.put("masters/v1.mp4", io.BytesIO(DATA), content_type="video/mp4")
    store.put("thumbnails/v1.jpg", io.BytesIO(b"jpeg"), content_type="image/jpeg")
    return store


@pytest.fixture
def client(archive):
    with TestClient(serving_app(archive)) as c:
        yield c


def signed_parts(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    return parts.path, query["expires"][0], query["signature"][0]


def sign(key: str, expires: int) -> str:
    return hmac.new(SECRET, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()


# -- signed URLs -------------------------------------------------------------------------


def test_signed_url_format(archive, clock):
    url = archive.presign_get("masters/v1.mp4", expires_in=60)
    expires = int(clock.now) + 60
    assert url == (
        f"http://testserver/archive/signed/masters/v1.mp4"
        f"?expires={expires}&signature={sign('masters/v1.mp4', expires)}"
    )


def tampered(url: str, what: str) -> str:
    path, expires, signature = signed_parts(url)
    if what == "key":
        path = path.replace("v1.mp4", "v2.mp4")
    elif what == "expires":
        expires = str(int(expires) + 3600)
    elif what == "signature":
        signature = ("0" if signature[0] != "0" else "1") + signature[1:]
    elif what == "plus-sign":
        expires = "+" + expires  # same number, different spelling
    elif what == "leading-zero":
        expires = "0" + expires  # same number, different spelling
    elif what == "missing":
        return path
    elif what == "non-ascii":
        signature = "é" * len(signature)
    return f"{path}?expires={expires}&signature={signature}"


@pytest.mark.parametrize(
    "what", ["key", "expires", "signature", "plus-sign", "leading-zero", "non-ascii"]
)
def test_tampered_signed_url_is_refused(archive, client, what):
    archive.put("masters/v2.mp4", io.BytesIO(b"other"))
    url = archive.presign_get("masters/v1.mp4", expires_in=60)
    assert client.get(url).status_code == 200
    got = client.get(tampered(url, what))
    assert got.status_code == 401
    assert got.json()["error"]["message"] == "invalid signature"


def test_missing_signature_is_refused(archive, client):
    url = archive.presign_get("masters/v1.mp4", expires_in=60)
    got = client.get(tampered(url, "missing"))
    assert got.status_code == 401


@pytest.mark.parametrize("digits", [21, 4301, 10_000])
@pytest.mark.parametrize("route", ["signed", "public"])
def test_over_long_expiry_is_an_invalid_signature_not_a_crash(
    archive, client, caplog, digits, route
):
    # int() refuses more than 4,300 digits; a client must not turn that into a 500.
    key = "masters/v1.mp4" if route == "signed" else "thumbnails/v1.jpg"
    got = client.get(f"/archive/{route}/{key}?expires={'9' * digits}&signature={'0' * 64}")
    if route == "public":  # the public route ignores signatures altogether
        assert got.status_code == 200
    else:
        assert got.status_code == 401
        assert got.json()["error"]["message"] == "invalid signature"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_over_long_expiry_is_refused_by_the_store_itself(archive):
    for expires in ["9" * 21, "9" * 5000, "0" * 5000 + "1"]:
        with pytest.raises(Unauthorized):
            archive.verify_signed("masters/v1.mp4", expires=expires, signature=sign("x", 1))


def test_expired_signed_url_is_refused(archive, client, clock):
    url = archive.presign_get("masters/v1.mp4", expires_in=60)
    clock.now += 60
    assert client.get(url).status_code == 200  # valid up to and including its last second
    clock.now += 1
    got = client.get(url)
    assert got.status_code == 401
    assert got.json()["error"]["message"] == "signature expired"


# -- serving -----------------------------------------------------------------------------


def test_head_returns_headers_without_body(archive, client):
    got = client.head(archive.presign_get("masters/v1.mp4", expires_in=60))
    assert got.status_code == 200
    assert got.content == b""
    assert got.headers["content-length"] == str(len(DATA))
    assert got.headers["content-type"] == "video/mp4"
    assert got.headers["accept-ranges"] == "bytes"
    assert got.headers["etag"] == f'"{hashlib.sha256(DATA).hexdigest()}"'
    assert "last-modified" in got.headers


def test_head_with_range(archive, client):
    url = archive.presign_get("masters/v1.mp4", expires_in=60)
    got = client.head(url, headers={"Range": "bytes=2-4"})
    assert got.status_code == 206
    assert got.content == b""
    assert got.headers["content-range"] == "bytes 2-4/10"
    assert got.headers["content-length"] == "3"


@pytest.mark.parametrize(
    ("header", "body", "content_range"),
    [
        ("bytes=2-4", DATA[2:5], "bytes 2-4/10"),
        ("bytes=7-", DATA[7:], "bytes 7-9/10"),
        ("bytes=-3", DATA[-3:], "bytes 7-9/10"),
        ("bytes=-50", DATA, "bytes 0-9/10"),
        ("bytes=8-100", DATA[8:], "bytes 8-9/10"),
        ("BYTES = 0-0", DATA[:1], "bytes 0-0/10"),
    ],
)
def test_ranges(archive, client, header, body, content_range):
    got = client.get(
        archive.presign_get("masters/v1.mp4", expires_in=60), headers={"Range": header}
    )
    assert got.status_code == 206
    assert got.content == body
    assert got.headers["content-range"] == content_range
    assert got.headers["content-length"] == str(len(body))


@pytest.mark.parametrize(
    "header", ["bytes=abc", "items=0-1", "bytes=5-2", "bytes=0-1,3-4", "bytes=", "bytes 1-2"]
)
def test_malformed_ranges_are_ignored(archive, client, header):
    got = client.get(
        archive.presign_get("masters/v1.mp4", expires_in=60), headers={"Range": header}
    )
    assert got.status_code == 200
    assert got.content == DATA


HUGE = "9" * 5000  # past int()'s 4,300-digit limit


@pytest.mark.parametrize(
    ("header", "body", "content_range"),
    [
        (f"bytes=0-{HUGE}", DATA, "bytes 0-9/10"),
        (f"bytes=3-{'9' * 21}", DATA[3:], "bytes 3-9/10"),
        (f"bytes=-{HUGE}", DATA, "bytes 0-9/10"),
        (f"bytes={'0' * 5000}2-{'0' * 5000}4", DATA[2:5], "bytes 2-4/10"),
    ],
)
def test_over_long_range_numbers_mean_what_they_say(
    archive, client, caplog, header, body, content_range
):
    # Read as "past the end" without int(): the answer an exact parse would give.
    got = client.get(
        archive.presign_get("masters/v1.mp4", expires_in=60), headers={"Range": header}
    )
    assert got.status_code == 206
    assert got.content == body
    assert got.headers["content-range"] == content_range
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("header", [f"bytes={HUGE}-", f"bytes={HUGE}-{HUGE}", f"bytes={'1' * 21}-"])
def test_over_long_first_byte_is_416_not_500(archive, client, caplog, header):
    got = client.get("/archive/public/thumbnails/v1.jpg", headers={"Range": header})
    assert got.status_code == 416
    assert got.headers["content-range"] == "bytes */4"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_over_long_range_is_still_checked_for_order(archive, client):
    got = client.get(
        "/archive/public/thumbnails/v1.jpg", headers={"Range": f"bytes={HUGE}-{'9' * 20}"}
    )
    assert got.status_code == 200  # last < first: malformed, ignored
    assert got.content == b"jpeg"


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=10-20", "bytes=-0"])
def test_unsatisfiable_range_is_416(archive, client, header):
    got = client.get(
        archive.presign_get("masters/v1.mp4", expires_in=60), headers={"Range": header}
    )
    assert got.status_code == 416
    assert got.headers["content-range"] == "bytes */10"


def test_any_range_on_an_empty_object_is_416(archive, client):
    archive.put("masters/empty", io.BytesIO(b""))
    url = archive.presign_get("masters/empty", expires_in=60)
    assert client.get(url).status_code == 200
    got = client.get(url, headers={"Range": "bytes=0-"})
    assert got.status_code == 416
    assert got.headers["content-range"] == "bytes */0"


def test_public_route_serves_only_public_keys(archive, client):
    assert archive.is_public("thumbnails/v1.jpg")
    assert not archive.is_public("masters/v1.mp4")
    assert archive.public_url("masters/v1.mp4") is None
    got = client.get(archive.public_url("thumbnails/v1.jpg"))
    assert (got.status_code, got.content) == (200, b"jpeg")
    assert client.get("/archive/public/masters/v1.mp4").status_code == 404
    assert client.get("/archive/public/thumbnails/missing.jpg").status_code == 404


# -- content type and disposition --------------------------------------------------------


def fetch(archive, client, key, data, content_type, *, method="GET"):
    archive.put(key, io.BytesIO(data), content_type=content_type)
    return client.request(method, archive.presign_get(key, expires_in=60))


def assert_locked_down(got):
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-security-policy"] == "default-src 'none'; sandbox"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize(
    "content_type",
    [
        "text/html",
        "text/html; charset=utf-8",
        "TEXT/HTML",
        "image/svg+xml",
        "Image/SVG+XML; charset=utf-8",
        "application/xhtml+xml",
        "application/javascript",
        "application/json",
        "text/plain",
        "application/pdf",
        "video/mp4\u0085",  # not a token: never echoed back
        "video/mp4\r\nSet-Cookie: a=b",
        "video/é",
        "video",
        "",
        None,
    ],
)
def test_anything_but_media_is_an_octet_stream_attachment(archive, client, content_type, method):
    page = b"<html><script>alert(document.cookie)</script></html>"
    got = fetch(archive, client, "masters/page.html", page, content_type, method=method)
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["content-disposition"] == (
        "attachment; filename=\"page.html\"; filename*=UTF-8''page.html"
    )
    assert_locked_down(got)
    assert got.content == (page if method == "GET" else b"")


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize(
    ("content_type", "served"),
    [
        ("video/mp4", "video/mp4"),
        ('video/mp4; codecs="avc1.42E01E, mp4a.40.2"', "video/mp4"),
        ("Video/MP4", "video/mp4"),
        ("audio/mpeg", "audio/mpeg"),
        ("image/jpeg", "image/jpeg"),
        ("image/webp", "image/webp"),
        ("application/vnd.apple.mpegurl", "application/vnd.apple.mpegurl"),
        ("application/dash+xml", "application/dash+xml"),
    ],
)
def test_media_is_served_inline_with_nosniff(archive, client, content_type, served, method):
    got = fetch(archive, client, "masters/v9.mp4", DATA, content_type, method=method)
    assert got.status_code == 200
    assert got.headers["content-type"] == served
    assert got.headers["content-disposition"].startswith("inline;")
    assert_locked_down(got)


def test_ranged_answers_carry_the_same_headers(archive, client):
    got = fetch(archive, client, "masters/page.html", DATA, "text/html")
    ranged = client.get(got.url, headers={"Range": "bytes=0-1"})
    assert ranged.status_code == 206
    assert ranged.headers["content-type"] == "application/octet-stream"
    assert ranged.headers["content-disposition"].startswith("attachment;")
    assert_locked_down(ranged)


def test_public_svg_thumbnail_is_an_attachment(archive, client):
    archive.put(
        "thumbnails/v1.svg", io.BytesIO(b"<svg onload=alert(1)/>"), content_type="image/svg+xml"
    )
    got = client.get(archive.public_url("thumbnails/v1.svg"))
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["content-disposition"].startswith("attachment;")
    assert_locked_down(got)
    thumb = client.get(archive.public_url("thumbnails/v1.jpg"))
    assert thumb.headers["content-type"] == "image/jpeg"
    assert thumb.headers["content-disposition"].startswith("inline;")
    assert_locked_down(thumb)


def test_attachment_filename_is_rfc6266_quoted(archive, client):
    got = fetch(archive, client, 'masters/v1/résumé "final";1%.html', b"x", "text/html")
    assert got.headers["content-disposition"] == (
        'attachment; filename="r_sum_ _final_;1%.html"; '
        "filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22%3B1%25.html"
    )


def test_router_refuses_a_store_that_does_not_serve_its_urls():
    s3 = S3Archive(bucket="b", endpoint_url=None, access_key_id="x", secret_access_key="y")
    with pytest.raises(ConfigurationError):
        build_router(s3)


# -- layout and safety -------------------------------------------------------------------


@pytest.mark.parametrize("key", [".tmp/x", ".meta/masters/v1.mp4.json", ".tmp", ".meta"])
def test_reserved_folders_are_not_keys(archive, key):
    with pytest.raises(InvalidKey):
        archive.put(key, io.BytesIO(b"x"))
    with pytest.raises(InvalidKey):
        archive.head(key)
    with pytest.raises(InvalidKey):
        archive.open(key)
    with pytest.raises(InvalidKey):
        archive.list(key + "/")


def test_reserved_folders_are_never_listed(archive, root):
    assert (root / ".meta").is_dir() and (root / ".tmp").is_dir()
    assert [o.key for o in archive.list()] == ["masters/v1.mp4", "thumbnails/v1.jpg"]
    assert list(archive.list(".m")) == []


def test_put_leaves_no_temp_files_and_overwrites_whole(archive, root):
    archive.put("masters/v1.mp4", io.BytesIO(b"new"))
    assert b"".join(archive.open("masters/v1.mp4")) == b"new"
    assert archive.head("masters/v1.mp4").etag == hashlib.sha256(b"new").hexdigest()
    assert list((root / ".tmp").iterdir()) == []


def test_head_survives_a_missing_or_stale_sidecar(archive, root):
    (root / ".meta" / "masters" / "v1.mp4.json").unlink()
    info = archive.head("masters/v1.mp4")
    assert (info.size, info.etag, info.content_type) == (10, None, None)
    (root / "thumbnails" / "v1.jpg").write_bytes(b"rewritten behind our back")
    assert archive.head("thumbnails/v1.jpg").etag is None


def test_a_key_cannot_be_both_object_and_folder(archive, root):
    with pytest.raises(Conflict):
        archive.put("masters/v1.mp4/inner", io.BytesIO(b"x"))
    with pytest.raises(Conflict):
        archive.put("masters", io.BytesIO(b"x"))
    with pytest.raises(Conflict):  # its sidecar would need .meta/masters/v1.mp4.json/
        archive.put("masters/v1.mp4.json/y", io.BytesIO(b"x"))
    assert not archive.exists("masters/v1.mp4.json/y")
    assert list((root / ".tmp").iterdir()) == []


def test_bad_byte_ranges(archive):
    with pytest.raises(InvalidInput):
        archive.open("masters/v1.mp4", start=5, end=4)
    with pytest.raises(InvalidInput):
        archive.open("masters/v1.mp4", start=-1)


def test_short_secret_is_a_configuration_error(root):
    with pytest.raises(ConfigurationError):
        LocalArchive(root, base_url="http://x", secret=b"short")


def test_missing_root_is_never_created(tmp_path):
    store = LocalArchive(tmp_path / "unmounted", base_url="http://x", secret=SECRET)
    with pytest.raises(BackendUnavailable):
        store.ping()
    with pytest.raises(BackendUnavailable):
        store.put("a", io.BytesIO(b"x"))
    assert not (tmp_path / "unmounted").exists()


def test_ping_fails_when_root_is_not_writable(tmp_path):
    if os.geteuid() == 0:
        # chmod does not stop root: a root below a regular file can never be written.
        (tmp_path / "file").write_bytes(b"")
        folder = tmp_path / "file" / "archive"
    else:
        folder = tmp_path / "readonly"
        folder.mkdir()
        folder.chmod(0o500)
    store = LocalArchive(folder, base_url="http://x", secret=SECRET)
    try:
        with pytest.raises(BackendUnavailable):
            store.ping()
    finally:
        if folder.is_dir():
            folder.chmod(0o700)


def test_encoded_traversal_cannot_escape_the_root(archive, client, tmp_path):
    (tmp_path / "secret.txt").write_bytes(b"top secret")
    for path in [
        "/archive/public/thumbnails/..%2F..%2Fsecret.txt",
        "/archive/public/..%2Fsecret.txt",
        "/archive/public/thumbnails%2F..%2F..%2Fsecret.txt",
    ]:
        got = client.get(path)
        assert got.status_code in (400, 404)
        assert b"top secret" not in got.content
    # Even a correctly signed URL for an escaping key is refused by the key rules.
    expires = 1_800_000_000
    got = client.get(f"/archive/signed/..%2Fsecret.txt?expires={expires}&signature=")
    assert got.status_code == 401
    signature = sign("../secret.txt", expires)
    got = client.get(f"/archive/signed/..%2Fsecret.txt?expires={expires}&signature={signature}")
    assert got.status_code == 400
    assert b"top secret" not in got.content


def test_symlinks_out_of_the_root_are_not_followed(archive, root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"top secret")
    (root / "escape").symlink_to(outside)
    with pytest.raises(InvalidKey):
        archive.head("escape/secret.txt")
    assert [o.key for o in archive.list()] == ["masters/v1.mp4", "thumbnails/v1.jpg"]
    assert list(archive.list("escape/")) == []
