"""The tus handler over a real socket: the tuspy client end to end, then edge cases by hand."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from tusclient import client as tus_client

from hybridvideo.ingest.tus.handler import build_tus_router
from hybridvideo.ingest.tus.protocol import Capabilities, TusError, UploadInfo
from hybridvideo.ingest.tus.store import LocalUploadStore, new_upload_id
from tests.services import serve_asgi

MAX_SIZE = 8 * 1024 * 1024
V = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"

ALL = Capabilities(
    creation=True,
    creation_with_upload=True,
    creation_defer_length=True,
    checksum=True,
    termination=True,
    max_size=MAX_SIZE,
)


@pytest.fixture
def store(tmp_path: Path) -> LocalUploadStore:
    return LocalUploadStore(tmp_path / "uploads")


def _serve(store: LocalUploadStore, caps: Capabilities) -> Iterator[str]:
    app = FastAPI()
    app.include_router(build_tus_router(store, caps))
    with serve_asgi(app) as base:
        yield base


@pytest.fixture
def base(store: LocalUploadStore) -> Iterator[str]:
    yield from _serve(store, ALL)


@pytest.fixture
def http(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, headers=V) as c:
        yield c


def _create(http: httpx.Client, length: int = 10, **headers: str) -> str:
    r = http.post("/files", headers={"Upload-Length": str(length), **headers})
    assert r.status_code == 201, r.text
    return str(r.headers["Location"])


def _patch(
    http: httpx.Client, url: str, data: bytes, offset: int = 0, **headers: str
) -> httpx.Response:
    h = {"Content-Type": OCTETS, "Upload-Offset": str(offset), **headers}
    return http.patch(url, content=data, headers=h)


def _digest(algorithm: str, data: bytes) -> str:
    return f"{algorithm} " + base64.b64encode(hashlib.new(algorithm, data).digest()).decode()


def _stored(store: LocalUploadStore, url: str) -> bytes:
    return store.data_path(url.rsplit("/", 1)[1]).read_bytes()[: _offset(store, url)]


def _offset(store: LocalUploadStore, url: str) -> int:
    return store.get(url.rsplit("/", 1)[1]).offset


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "video.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 12345))
    return path


def test_tuspy_uploads_a_file_in_chunks(base: str, store: LocalUploadStore, source: Path) -> None:
    c = tus_client.TusClient(base + "/files")
    uploader = c.uploader(
        str(source), chunk_size=256 * 1024, metadata={"filename": "vidéo.bin"}, upload_checksum=True
    )
    uploader.upload()
    url = str(uploader.url)
    assert (
        hashlib.sha256(_stored(store, url)).digest() == hashlib.sha256(source.read_bytes()).digest()
    )
    info = store.get(url.rsplit("/", 1)[1])
    assert info.is_complete
    assert info.metadata["filename"] == "vidéo.bin"


def test_tuspy_resumes_with_a_new_uploader(
    base: str, store: LocalUploadStore, source: Path
) -> None:
    c = tus_client.TusClient(base + "/files")
    first = c.uploader(str(source), chunk_size=256 * 1024, upload_checksum=True)
    first.upload(stop_at=1024 * 1024)
    url = str(first.url)
    assert _offset(store, url) == 1024 * 1024
    second = c.uploader(str(source), chunk_size=256 * 1024, url=url, upload_checksum=True)
    assert second.offset == 1024 * 1024
    second.upload()
    assert _stored(store, url) == source.read_bytes()


def test_options_headers_come_from_capabilities(http: httpx.Client) -> None:
    r = http.options("/files", headers={"Tus-Resumable": "0.1"})  # ignored on OPTIONS
    assert r.status_code == 204
    assert r.headers["Tus-Version"] == "1.0.0"
    assert r.headers["Tus-Resumable"] == "1.0.0"
    assert r.headers["Tus-Extension"] == (
        "creation,creation-with-upload,creation-defer-length,checksum,termination"
    )
    assert r.headers["Tus-Max-Size"] == str(MAX_SIZE)
    assert r.headers["Tus-Checksum-Algorithm"] == "sha1,md5,sha256"


def test_disabled_extensions_are_absent(store: LocalUploadStore) -> None:
    for base in _serve(store, Capabilities(creation=True)):
        with httpx.Client(base_url=base, headers=V) as http:
            r = http.options("/files")
            assert r.headers["Tus-Extension"] == "creation"
            assert "Tus-Max-Size" not in r.headers
            assert "Tus-Checksum-Algorithm" not in r.headers
            url = _create(http, 3)
            assert http.delete(url).status_code == 405
            r = http.post("/files", headers={"Upload-Defer-Length": "1"})
            assert r.status_code == 400


def test_unsupported_version_is_412(http: httpx.Client) -> None:
    r = http.post("/files", headers={"Tus-Resumable": "0.2.2", "Upload-Length": "1"})
    assert r.status_code == 412
    assert r.headers["Tus-Version"] == "1.0.0"
    assert r.headers["Tus-Resumable"] == "1.0.0"
    with httpx.Client(base_url=str(http.base_url)) as bare:
        assert bare.head("/files/" + "0" * 32).status_code == 412


def test_wrong_content_type_is_415(http: httpx.Client) -> None:
    url = _create(http)
    r = http.patch(url, content=b"x", headers={"Content-Type": "text/plain", "Upload-Offset": "0"})
    assert r.status_code == 415
    assert r.headers["Tus-Resumable"] == "1.0.0"


def test_offset_mismatch_is_409(http: httpx.Client, store: LocalUploadStore) -> None:
    url = _create(http)
    assert _patch(http, url, b"abc").headers["Upload-Offset"] == "3"
    r = _patch(http, url, b"def", offset=0)
    assert r.status_code == 409
    assert _stored(store, url) == b"abc"


@pytest.mark.parametrize("algorithm", ["sha1", "md5", "sha256"])
def test_checksum_match_and_mismatch(
    http: httpx.Client, store: LocalUploadStore, algorithm: str
) -> None:
    url = _create(http)
    r = _patch(http, url, b"hello", **{"Upload-Checksum": _digest(algorithm, b"hello")})
    assert r.status_code == 204
    r = _patch(http, url, b"world", 5, **{"Upload-Checksum": _digest(algorithm, b"WORLD")})
    assert r.status_code == 460
    assert r.text == "checksum mismatch"
    assert http.head(url).headers["Upload-Offset"] == "5"
    assert _stored(store, url) == b"hello"
    r = _patch(http, url, b"world", 5, **{"Upload-Checksum": _digest(algorithm, b"world")})
    assert r.headers["Upload-Offset"] == "10"
    assert _stored(store, url) == b"helloworld"


def test_bad_requests_are_400(http: httpx.Client) -> None:
    url = _create(http)
    r = _patch(http, url, b"x", **{"Upload-Checksum": "crc32 AAAAAA=="})
    assert r.status_code == 400
    assert r.text == "unsupported checksum algorithm"
    assert http.head(url).headers["Upload-Offset"] == "0"
    for headers in (
        {"Upload-Length": "10", "Upload-Metadata": "name not*base64"},
        {"Upload-Length": "10", "Upload-Metadata": "a YQ==,a YQ=="},
        {"Upload-Length": "-1"},
        {"Upload-Length": "ten"},
        {},
        {"Upload-Length": "1", "Upload-Defer-Length": "1"},
        {"Upload-Defer-Length": "2"},
    ):
        r = http.post("/files", headers=headers)
        assert r.status_code == 400, headers
        assert r.headers["Tus-Resumable"] == "1.0.0"
    assert http.patch(url, headers={"Content-Type": OCTETS}).status_code == 400  # no offset


def test_max_size_is_enforced_at_creation_and_by_patch(
    http: httpx.Client, store: LocalUploadStore
) -> None:
    r = http.post("/files", headers={"Upload-Length": str(MAX_SIZE + 1)})
    assert r.status_code == 413
    url = _create(http, MAX_SIZE)
    assert _patch(http, url, b"a" * 10).status_code == 204
    deferred = http.post("/files", headers={"Upload-Defer-Length": "1"}).headers["Location"]
    r = _patch(http, deferred, b"b" * (MAX_SIZE + 1))
    assert r.status_code == 413
    assert _offset(store, deferred) == 0
    r = _patch(http, deferred, b"", **{"Upload-Length": str(MAX_SIZE + 1)})
    assert r.status_code == 413
    small = _create(http, 4)
    assert _patch(http, small, b"12345").status_code == 413
    assert _offset(store, small) == 0


def test_body_beyond_length_without_content_length_is_413(
    http: httpx.Client, store: LocalUploadStore
) -> None:
    url = _create(http, 4)

    def body() -> Iterator[bytes]:
        yield b"12"
        yield b"345"

    r = http.patch(url, content=body(), headers={"Content-Type": OCTETS, "Upload-Offset": "0"})
    assert r.status_code == 413
    # Bytes received before the overflowing read are kept; the server may see both pieces
    # in a single read, so either nothing or exactly the first piece was stored.
    assert _stored(store, url) in (b"", b"12")


def test_termination(http: httpx.Client, store: LocalUploadStore) -> None:
    url = _create(http)
    r = http.delete(url)
    assert r.status_code == 204
    assert r.headers["Tus-Resumable"] == "1.0.0"
    assert http.head(url).status_code == 404
    assert _patch(http, url, b"x").status_code == 404
    assert http.delete(url).status_code == 404
    assert list((store.root).iterdir()) == []


def test_unknown_and_malformed_ids_are_404(http: httpx.Client) -> None:
    assert http.head("/files/" + "a" * 32).status_code == 404
    assert http.head("/files/..%2F..%2Fetc").status_code == 404
    assert http.head("/files/ABCDEF").status_code == 404


def test_head_echoes_metadata_and_is_not_cached(http: httpx.Client) -> None:
    raw = "filename dmlkw6kubXA0,is_confidential,title IA=="
    url = _create(http, 10, **{"Upload-Metadata": raw})
    r = http.head(url)
    assert r.status_code == 200
    assert r.headers["Upload-Metadata"] == raw
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["Upload-Offset"] == "0"
    assert r.headers["Upload-Length"] == "10"
    assert r.headers["Tus-Resumable"] == "1.0.0"


def test_defer_length_then_set_it_on_patch(http: httpx.Client, store: LocalUploadStore) -> None:
    r = http.post("/files", headers={"Upload-Defer-Length": "1"})
    url = r.headers["Location"]
    head = http.head(url)
    assert head.headers["Upload-Defer-Length"] == "1"
    assert "Upload-Length" not in head.headers
    assert _patch(http, url, b"abc").headers["Upload-Offset"] == "3"
    r = _patch(http, url, b"def", 3, **{"Upload-Length": "6"})
    assert r.status_code == 204
    head = http.head(url)
    assert head.headers["Upload-Length"] == "6"
    assert "Upload-Defer-Length" not in head.headers
    assert _patch(http, url, b"", 6, **{"Upload-Length": "7"}).status_code == 400
    assert _stored(store, url) == b"abcdef"


def test_creation_with_upload(http: httpx.Client, store: LocalUploadStore) -> None:
    headers = {
        "Upload-Length": "11",
        "Content-Type": OCTETS,
        "Upload-Checksum": _digest("sha1", b"hello"),
    }
    r = http.post("/files", content=b"hello", headers=headers)
    assert r.status_code == 201
    assert r.headers["Upload-Offset"] == "5"
    url = r.headers["Location"]
    assert url.startswith("/files/")
    assert _patch(http, url, b" world", 5).headers["Upload-Offset"] == "11"
    assert _stored(store, url) == b"hello world"
    assert store.get(url.rsplit("/", 1)[1]).is_complete


def test_zero_length_upload_is_complete(http: httpx.Client, store: LocalUploadStore) -> None:
    url = _create(http, 0)
    assert http.head(url).headers["Upload-Offset"] == "0"
    assert store.get(url.rsplit("/", 1)[1]).is_complete


def test_method_override(http: httpx.Client, store: LocalUploadStore) -> None:
    url = _create(http)
    h = {"X-HTTP-Method-Override": "PATCH", "Content-Type": OCTETS, "Upload-Offset": "0"}
    r = http.post(url, content=b"abc", headers=h)
    assert r.status_code == 204
    assert r.headers["Upload-Offset"] == "3"
    assert _stored(store, url) == b"abc"
    r = http.post(url, headers={"X-HTTP-Method-Override": "HEAD"})
    assert r.headers["Upload-Offset"] == "3"
    assert http.post(url, headers={"X-HTTP-Method-Override": "DELETE"}).status_code == 204
    assert http.head(url).status_code == 404
    assert http.post(url, headers={"X-HTTP-Method-Override": "bad value"}).status_code == 400
    assert http.get(url).status_code == 405


@pytest.mark.parametrize("lock_wait", [0.0, 3.0], ids=["refused-423", "holder-lets-go"])
def test_a_second_writer_is_refused_or_takes_over(
    store: LocalUploadStore, lock_wait: float
) -> None:
    """With no wait the second PATCH gets 423. With a wait (the default) it asks the holder
    to let go, as tusd does: the holder stops reading its (stalled) body, keeps and records
    what arrived, and the newcomer sees the new offset (409: HEAD and resume from there)."""
    import threading

    from hybridvideo.ingest.locks import InProcessLocker
    from hybridvideo.ingest.tus.handler import LockHandle, TusOptions

    held = threading.Event()

    class Signalling(InProcessLocker):
        def acquire(self, upload_id: str, *, wait: float = 0.0) -> LockHandle | None:
            handle = super().acquire(upload_id, wait=wait)
            if handle is not None:
                held.set()
            return handle

    from hybridvideo.ingest.metrics import TusMetrics

    got_bytes = threading.Event()

    class Watching(TusMetrics):
        def received(self, n: int) -> None:
            super().received(n)
            got_bytes.set()

    options = TusOptions(locker=Signalling(), lock_wait=lock_wait, metrics=Watching())
    app = FastAPI()
    app.include_router(build_tus_router(store, ALL, options))
    release = threading.Event()

    def stalled() -> Iterator[bytes]:
        yield b"a" * 10
        release.wait(15)  # a client that went silent without closing its connection
        yield b"b" * 10

    result: dict[str, httpx.Response] = {}
    with serve_asgi(app) as base, httpx.Client(base_url=base, headers=V) as http:
        url = _create(http, 1024)

        def first() -> None:
            with httpx.Client(base_url=base, headers=V, timeout=30) as other:
                h = {"Content-Type": OCTETS, "Upload-Offset": "0"}
                with contextlib.suppress(httpx.HTTPError):  # answered before the body ended
                    result["r"] = other.patch(url, content=stalled(), headers=h)

        t = threading.Thread(target=first)
        t.start()
        try:
            assert held.wait(10)  # the first PATCH holds the upload now ...
            assert got_bytes.wait(10)  # ... and has read its first 10 bytes
            r = _patch(http, url, b"c", offset=0)
            if lock_wait == 0:
                assert r.status_code == 423
                assert http.delete(url).status_code == 423
            else:
                assert r.status_code == 409  # the holder let go after storing 10 bytes
                assert http.head(url).headers["Upload-Offset"] == "10"
                assert _patch(http, url, b"c", offset=10).status_code == 204
        finally:
            release.set()
            t.join(20)
    if lock_wait == 0:
        assert result["r"].status_code == 204
        assert result["r"].headers["Upload-Offset"] == "20"
    else:
        assert store.data_path(store.get(url.rsplit("/", 1)[1]).id).read_bytes() == b"a" * 10 + b"c"


def _new_info(length: int | None) -> UploadInfo:
    return UploadInfo(id=new_upload_id(), offset=0, length=length, created_at=datetime.now(UTC))


def test_store_keeps_durable_bytes_of_a_broken_stream(store: LocalUploadStore) -> None:
    info = store.create(_new_info(100))

    def broken() -> Iterator[bytes]:
        yield b"abc"
        raise ConnectionResetError

    with pytest.raises(ConnectionResetError):
        store.write(info.id, 0, broken(), 100)
    assert store.get(info.id).offset == 3
    with pytest.raises(ConnectionResetError):  # with a checksum, a partial chunk is dropped
        store.write(info.id, 3, broken(), 97, checksum=("sha1", hashlib.sha1(b"abc").digest()))
    assert store.get(info.id).offset == 3
    assert store.write(info.id, 3, iter([b"de"]), 97) == 5
    assert store.data_path(info.id).read_bytes() == b"abcde"


def test_store_refuses_ids_that_are_not_32_hex(store: LocalUploadStore) -> None:
    for bad in ("../x", "A" * 32, "a" * 31, "a" * 33, ""):
        with pytest.raises(TusError) as err:
            store.get(bad)
        assert err.value.status == 404
    with pytest.raises(TusError):
        store.create(UploadInfo(id="../evil", offset=0, length=1, created_at=datetime.now(UTC)))


def test_an_offset_is_recorded_only_once_its_bytes_are_on_disk(
    store: LocalUploadStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the moment the new offset is saved, the data file must already hold every byte
    it counts (nothing left in a userspace buffer), and a file shorter than the recorded
    offset is never zero-filled: the offset comes down to what is really stored."""
    info = store.create(_new_info(100_000))
    seen: list[tuple[int, int]] = []
    real_save = store._save

    def checking_save(saved: UploadInfo) -> None:
        seen.append((saved.offset, store.data_path(info.id).stat().st_size))
        real_save(saved)

    monkeypatch.setattr(store, "_save", checking_save)
    store.write(info.id, 0, iter([b"x" * 65_536, b"y" * 1_000]), None)
    assert seen and all(size >= offset for offset, size in seen), seen
    monkeypatch.undo()
    # a disk that lost the tail: the offset drops to the bytes there, never zero-filled
    with store.data_path(info.id).open("r+b") as fh:
        fh.truncate(60_000)
    with pytest.raises(TusError) as caught:
        store.write(info.id, 66_536, iter([b"z"]), None)
    assert caught.value.status == 409
    assert store.get(info.id).offset == 60_000
    assert store.data_path(info.id).read_bytes() == b"x" * 60_000
