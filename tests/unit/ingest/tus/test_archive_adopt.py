"""LocalArchive.adopt: how a finished local upload becomes an archive object without a copy."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from hybridvideo.archive.local import LocalArchive
from hybridvideo.errors import Conflict

SECRET = b"adopt-suite-secret-0123456789abcd"


def _archive(tmp_path: Path) -> LocalArchive:
    root = tmp_path / "archive"
    root.mkdir()
    return LocalArchive(root, base_url="http://testserver", secret=SECRET)


def test_adopt_renames_the_file_and_describes_it(tmp_path: Path) -> None:
    archive = _archive(tmp_path)
    source = tmp_path / "upload.bin"
    payload = os.urandom(70_000)
    source.write_bytes(payload)
    inode = source.stat().st_ino
    info = archive.adopt(source, "incoming/abc", content_type="video/mp4", metadata={"K": "v"})
    assert not source.exists()
    assert (tmp_path / "archive" / "incoming" / "abc").stat().st_ino == inode  # no copy
    assert info.size == len(payload)
    assert info.etag == hashlib.sha256(payload).hexdigest()
    assert info.content_type == "video/mp4"
    assert info.metadata == {"k": "v"}
    assert b"".join(archive.open("incoming/abc")) == payload


def test_adopt_never_replaces_an_object(tmp_path: Path) -> None:
    archive = _archive(tmp_path)
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_bytes(b"first")
    second.write_bytes(b"second")
    archive.adopt(first, "incoming/x")
    with pytest.raises(Conflict):
        archive.adopt(second, "incoming/x")
    assert second.read_bytes() == b"second"
    assert b"".join(archive.open("incoming/x")) == b"first"


def test_adopt_copies_across_filesystems(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    archive = _archive(tmp_path)
    if not shm.is_dir() or shm.stat().st_dev == (tmp_path / "archive").stat().st_dev:
        pytest.skip("needs a second filesystem (/dev/shm)")
    source = shm / f"hv-adopt-{os.getpid()}-{tmp_path.name}"
    source.write_bytes(b"elsewhere")
    try:
        info = archive.adopt(source, "incoming/y")
    finally:
        source.unlink(missing_ok=True)
    assert info.size == 9
    assert not source.exists()
    assert b"".join(archive.open("incoming/y")) == b"elsewhere"
    assert list((tmp_path / "archive" / ".tmp").iterdir()) == []
