"""``archive import``: cataloging the masters already in a bucket, on a folder and on S3."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from typer.testing import CliRunner

from hybridvideo.archive.base import ArchiveStore
from hybridvideo.archive.local import LocalArchive
from hybridvideo.archive.s3 import S3Archive, client_config
from hybridvideo.catalog.sql import SqlCatalog, create_catalog_engine, upgrade
from hybridvideo.cli.main import app
from hybridvideo.config import load_settings
from hybridvideo.container import build_container
from hybridvideo.domain.video import VideoFilter
from hybridvideo.media.probe import probe_source
from hybridvideo.media.reader import ArchiveReader
from hybridvideo.media.thumbnail import make_thumbnail
from hybridvideo.videos.importer import (
    ArchiveImporter,
    ImportOutcome,
    ImportStatus,
    ImportSummary,
)
from hybridvideo.videos.service import thumbnail_key
from tests.conftest import make_clip

S = ImportStatus
SECRET = b"archive-import-test-secret-0123456789"
POSTER = b"\xff\xd8\xff\xe0 a team's own poster \xff\xd9"


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    folder = tmp_path_factory.mktemp("import-clips")
    a = make_clip(folder / "a.mp4", seconds=1.0, size="160x90")
    b = make_clip(folder / "b.mp4", seconds=1.0, size="128x72")
    return a.read_bytes(), b.read_bytes()


@pytest.fixture(params=["local", "s3"])
def archive(request: pytest.FixtureRequest, tmp_path: Path) -> ArchiveStore:
    if request.param == "local":
        root = tmp_path / "archive"
        root.mkdir()
        return LocalArchive(root, base_url="http://testserver", secret=SECRET)
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = f"hv-import-{uuid.uuid4().hex[:16]}"
    admin = boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", config=client_config()
    )
    admin.create_bucket(Bucket=bucket)
    return S3Archive(
        bucket=bucket,
        endpoint_url=endpoint,
        access_key_id="testing",
        secret_access_key="testing",
        public_base_url=f"{endpoint}/{bucket}",
    )


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[SqlCatalog]:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    upgrade(url)
    engine = create_catalog_engine(url)
    try:
        yield SqlCatalog(engine)
    finally:
        engine.dispose()


def put(archive: ArchiveStore, key: str, data: bytes) -> None:
    archive.put(key, io.BytesIO(data))


def team_bucket(archive: ArchiveStore, clips: tuple[bytes, bytes]) -> None:
    """Two masters (one with its poster beside it), a fake .mp4, junk, a lone poster."""
    put(archive, "team/launch/a.mp4", clips[0])
    put(archive, "team/launch/a.jpg", POSTER)
    put(archive, "team/b.mov", clips[1])
    put(archive, "team/notes.mp4", b"definitely not a video\n" * 40)
    put(archive, "team/meta.json", b'{"exported": true}')
    put(archive, "team/lonely.jpg", POSTER)
    put(archive, "elsewhere/c.mp4", clips[1])  # outside the prefix


def run(importer: ArchiveImporter, **kw: object) -> tuple[dict[str, ImportOutcome], ImportSummary]:
    summary = ImportSummary()
    outcomes = list(importer.scan("team/", summary=summary, **kw))  # type: ignore[arg-type]
    return {o.key: o for o in outcomes}, summary


def keys(archive: ArchiveStore, prefix: str = "") -> list[str]:
    return [o.key for o in archive.list(prefix)]


def test_import_registers_exactly_the_masters_in_place(
    archive: ArchiveStore, catalog: SqlCatalog, clips: tuple[bytes, bytes]
) -> None:
    team_bucket(archive, clips)
    before = keys(archive)
    importer = ArchiveImporter(catalog, archive, probe_source, make_thumbnail, ArchiveReader)

    dry, dry_summary = run(importer, dry_run=True, collection="inbound")
    assert dry_summary.counts[S.REGISTERED] == 2 and dry_summary.dry_run
    assert catalog.list_videos(VideoFilter()).total == 0
    assert keys(archive) == before  # a dry run writes nothing, not even thumbnails

    got, summary = run(importer, collection="inbound")
    assert {k: o.status for k, o in got.items()} == {
        "team/launch/a.mp4": S.REGISTERED,
        "team/launch/a.jpg": S.IGNORED,
        "team/b.mov": S.REGISTERED,
        "team/notes.mp4": S.NOT_A_VIDEO,
        "team/meta.json": S.IGNORED,
        "team/lonely.jpg": S.IGNORED,
    }
    assert "notes.mp4" in (got["team/notes.mp4"].reason or "")
    assert summary.as_dict()["registered"] == 2 and summary.as_dict()["not a video"] == 1

    videos = {v.spec.archive_key: v for v in catalog.list_videos(VideoFilter()).items}
    assert set(videos) == {"team/launch/a.mp4", "team/b.mov"}
    sha_a, sha_b = (hashlib.sha256(c).hexdigest() for c in clips)
    a, b = videos["team/launch/a.mp4"], videos["team/b.mov"]
    assert (a.title, a.collection, a.spec.sha256, a.spec.size) == (
        "a",
        "inbound",
        sha_a,
        len(clips[0]),
    )
    assert (b.title, b.spec.sha256, b.spec.format) == ("b", sha_b, "mov")
    assert a.spec.archive_bucket == archive.bucket and a.spec.duration

    # a: the poster beside it. A store that serves it publicly (S3 here) links it in place;
    # the local folder serves only thumbnails/, so the poster is copied there.
    a_thumb = got["team/launch/a.mp4"].thumbnail_key
    if archive.public_url("team/launch/a.jpg") is not None:
        assert a_thumb == "team/launch/a.jpg"
    else:
        assert a_thumb == thumbnail_key(sha_a)
        assert b"".join(archive.open(a_thumb)) == POSTER
    assert a.spec.thumbnail_url == archive.public_url(a_thumb) is not None
    # b: none matched, so one was made from the master, like ingest does.
    b_thumb = thumbnail_key(sha_b)
    assert got["team/b.mov"].thumbnail_key == b_thumb
    assert b"".join(archive.open(b_thumb)).startswith(b"\xff\xd8")
    assert b.spec.thumbnail_url == archive.public_url(b_thumb)

    # Masters stay where the team put them, byte for byte; only thumbnails were added.
    assert b"".join(archive.open("team/launch/a.mp4")) == clips[0]
    assert [k for k in keys(archive) if k not in before] == sorted({a_thumb, b_thumb} - set(before))
    assert [e.kind for e in catalog.events(a.id)] == ["created", "imported"]

    again, again_summary = run(importer)
    assert again_summary.counts[S.REGISTERED] == 0
    assert again["team/launch/a.mp4"].status is S.KNOWN
    assert again["team/launch/a.mp4"].video_id == a.id
    assert again["team/notes.mp4"].status is S.NOT_A_VIDEO
    assert catalog.list_videos(VideoFilter()).total == 2


def test_same_bytes_at_two_keys_are_cataloged_once(
    archive: ArchiveStore, catalog: SqlCatalog, clips: tuple[bytes, bytes]
) -> None:
    put(archive, "team/a.mp4", clips[0])
    put(archive, "team/copy/a-again.mp4", clips[0])
    put(archive, "team/z.webm.txt", b"not by name")
    importer = ArchiveImporter(catalog, archive, probe_source, make_thumbnail, ArchiveReader)

    dry, _ = run(importer, dry_run=True)
    assert dry["team/copy/a-again.mp4"].status is S.DUPLICATE
    assert dry["team/z.webm.txt"].status is S.IGNORED

    got, summary = run(importer)
    first = got["team/a.mp4"]
    assert first.status is S.REGISTERED
    dup = got["team/copy/a-again.mp4"]
    assert (dup.status, dup.video_id) == (S.DUPLICATE, first.video_id)
    assert dup.reason == "same bytes as team/a.mp4"
    assert summary.counts[S.DUPLICATE] == 1
    assert catalog.list_videos(VideoFilter()).total == 1


def test_limit_stops_after_that_many_registrations(
    archive: ArchiveStore, catalog: SqlCatalog, clips: tuple[bytes, bytes]
) -> None:
    put(archive, "team/1.mp4", clips[0])
    put(archive, "team/2.mp4", clips[1])
    importer = ArchiveImporter(catalog, archive, probe_source, make_thumbnail, ArchiveReader)
    first, _ = run(importer, limit=1)
    assert [o.status for o in first.values()] == [S.REGISTERED]
    second, _ = run(importer, limit=1)
    assert [o.status for o in second.values()] == [S.KNOWN, S.REGISTERED]
    assert catalog.list_videos(VideoFilter()).total == 2


def test_cli_import_prints_totals_and_writes_json(
    tmp_path: Path, clips: tuple[bytes, bytes]
) -> None:
    data_dir = tmp_path / "data"
    container = build_container(load_settings(data_dir=data_dir))
    try:
        team_bucket(container.archive, clips)
    finally:
        container.close()
    runner = CliRunner()
    report = tmp_path / "import.json"
    args = ["archive", "import", "--prefix", "team/", "--collection", "inbound"]
    result = runner.invoke(app, [*args, "--json", str(report), "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "not a video: team/notes.mp4" in result.stderr
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in result.stdout.splitlines()
        if line.count("│") == 3
    }
    assert rows["registered"] == "2" and rows["not a video"] == "1"
    assert rows["already known"] == "0" and rows["ignored"] == "3"
    document = json.loads(report.read_text())
    assert document["summary"]["registered"] == 2 and document["summary"]["dry_run"] is False
    registered = {o["key"] for o in document["outcomes"] if o["status"] == "registered"}
    assert registered == {"team/launch/a.mp4", "team/b.mov"}

    listed = runner.invoke(app, ["videos", "list", "--json", "--data-dir", str(data_dir)])
    assert json.loads(listed.stdout)["total"] == 2
    again = runner.invoke(app, [*args, "--dry-run", "--data-dir", str(data_dir)])
    assert again.exit_code == 0
    assert "dry run" in again.stdout
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in again.stdout.splitlines()
        if line.count("│") == 3
    }
    assert rows["registered"] == "0" and rows["already known"] == "2"
