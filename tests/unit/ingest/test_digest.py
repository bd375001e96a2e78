"""The running sha256: valid only while it covers exactly the stored bytes."""

from __future__ import annotations

import hashlib

from hybridvideo.ingest.tus.digest import RunningDigests

ID = "a" * 32


def _write(d: RunningDigests, offset: int, data: bytes, kept: int | None = None) -> int:
    pending = d.begin(ID, offset)
    for _ in pending.feed(iter([data[:3], data[3:]])):
        pass
    new = offset + (len(data) if kept is None else kept)
    d.commit(pending, new)
    return new


def test_sequential_writes_give_the_whole_digest() -> None:
    d = RunningDigests()
    off = _write(d, 0, b"hello ")
    off = _write(d, off, b"world")
    assert d.result(ID, off) == hashlib.sha256(b"hello world").hexdigest()
    assert d.result(ID, off) is None  # forgotten once taken


def test_a_rejected_chunk_leaves_the_digest_as_it_was() -> None:
    d = RunningDigests()
    off = _write(d, 0, b"hello ")
    _write(d, off, b"garbage", kept=0)  # e.g. 460: nothing kept
    off = _write(d, off, b"world")
    assert d.result(ID, off) == hashlib.sha256(b"hello world").hexdigest()


def test_partly_kept_chunk_drops_the_digest() -> None:
    d = RunningDigests()
    off = _write(d, 0, b"hello ")
    off = _write(d, off, b"world", kept=2)
    assert d.result(ID, off) is None


def test_a_gap_means_unknown() -> None:
    d = RunningDigests()
    _write(d, 0, b"hello ")
    # another node wrote 6..11; this one continues at 11
    off = _write(d, 11, b"!")
    assert d.result(ID, off) is None


def test_empty_upload_and_capacity() -> None:
    d = RunningDigests(capacity=2)
    assert d.result(ID, 0) == hashlib.sha256(b"").hexdigest()
    for name in ("b" * 32, "c" * 32, "d" * 32):
        p = d.begin(name, 0)
        list(p.feed(iter([b"x"])))
        d.commit(p, 1)
    assert d.result("b" * 32, 1) is None  # evicted
    assert d.result("d" * 32, 1) == hashlib.sha256(b"x").hexdigest()
