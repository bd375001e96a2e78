"""Adding masters: nothing half-done is ever left in the archive or the catalog."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import boto3
import pytest

from hybridvideo.archive.base import ArchiveStore
from hybridvideo.archive.local import LocalArchive
from hybridvideo.archive.s3 import S3Archive, client_config
from hybridvideo.container import Container, read_or_create_secret
from hybridvideo.domain.video import MediaInfo, VideoFilter
from hybridvideo.errors import Conflict, InvalidInput
from hybridvideo.media.probe import probe
from hybridvideo.videos.service import VideoService


@pytest.fixture(params=["local", "s3"])
def archive(request: pytest.FixtureRequest, tmp_path: Path) -> ArchiveStore:
    if request.param == "local":
        root = tmp_path / "archive"
        root.mkdir()
        return LocalArchive(root, base_url="http://127.0.0.1:1", secret=b"s" * 32)
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", config=client_config()
    ).create_bucket(Bucket=bucket)
    return S3Archive(
        bucket=bucket,
        endpoint_url=endpoint,
        access_key_id="testing",
        secret_access_key="testing",
        part_size=5 * 1024 * 1024,
    )


def test_a_file_that_changes_during_add_is_not_stored(
    container: Container, archive: ArchiveStore, sample_video: Path, tmp_path: Path
) -> None:
    clip = tmp_path / "growing.mp4"
    clip.write_bytes(sample_video.read_bytes())

    def probe_then_change(path: Path) -> MediaInfo:
        info = probe(path)
        with path.open("ab") as fh:  # the copy into the drop folder was still running
            fh.write(b"\0" * 4096)
        return info

    service = VideoService(catalog=container.catalog, archive=archive, prober=probe_then_change)
    with pytest.raises(Conflict, match="changed while it was being added"):
        service.add_file(clip)
    assert list(archive.list("")) == []
    assert container.catalog.list_videos(VideoFilter()).total == 0

    # Once the file is stable it goes in, under the hash of what was stored.
    result = VideoService(catalog=container.catalog, archive=archive, prober=probe).add_file(clip)
    assert result.created and result.video.spec.sha256 in result.video.spec.archive_key
    assert result.video.spec.size == clip.stat().st_size


def test_invalid_fields_are_refused_before_anything_is_stored(
    container: Container, sample_video: Path, data_dir: Path
) -> None:
    for kwargs, message in [
        ({"owner_id": "o" * 200}, "owner id must be"),
        ({"owner_id": "bad\u202eid"}, "control characters"),
        ({"title": "evil\u202etitle"}, "bidi-override"),
        ({"collection": "Nope"}, "collection may contain only"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            container.videos.add_file(sample_video, **kwargs)  # type: ignore[arg-type]
    assert list(container.archive.list("")) == []


def test_the_content_type_comes_from_the_probed_container(
    container: Container, sample_video: Path, tmp_path: Path
) -> None:
    disguised = tmp_path / "clip.html"
    disguised.write_bytes(sample_video.read_bytes())
    video = container.videos.add_file(disguised).video
    assert container.archive.head(video.spec.archive_key).content_type == "video/mp4"


def test_concurrent_starts_agree_on_one_secret(tmp_path: Path) -> None:
    def start(path: Path, barrier: threading.Barrier, results: list[str]) -> None:
        barrier.wait()
        results.append(read_or_create_secret(path)[0])

    for round_ in range(10):
        path = tmp_path / f"secret-{round_}"
        results: list[str] = []
        barrier = threading.Barrier(8)
        threads = [threading.Thread(target=start, args=(path, barrier, results)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(results)) == 1 and results[0] == path.read_text().strip()
        assert path.stat().st_mode & 0o777 == 0o600
