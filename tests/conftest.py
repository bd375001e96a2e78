from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hybridvideo.media.testclip import make_test_clip
from tests import services

# Tests never talk to the real Cloudflare or AWS, and never pick up a developer's setup
# (a developer's HYBRIDVIDEO_ARCHIVE_DIR must not receive test files).
for _name in list(os.environ):
    if _name.startswith(("HYBRIDVIDEO_", "CLOUDFLARE_", "AWS_")) or _name in (
        "DATABASE_URL",
        "REDIS_URL",
    ):
        os.environ.pop(_name, None)
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with services.postgres_server() as url:
        yield url


@pytest.fixture
def postgres_db(postgres_url: str) -> Iterator[str]:
    """A fresh empty PostgreSQL database for one test (parallel-safe)."""
    with services.postgres_database(postgres_url) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with services.redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    with services.s3_server() as url:
        yield url


def make_clip(path: Path, *, seconds: float = 1.0, size: str = "160x90") -> Path:
    """A tiny real H.264/AAC MP4 from ffmpeg's test sources."""
    return make_test_clip(path, seconds=seconds, size=size, fps=15)


@pytest.fixture(scope="session")
def sample_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("media") / "sample.mp4")


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """A test that configures logging (a CLI command, `build_container`) points the root
    logger at its captured stderr, closed when the test ends; servers shared with later
    tests would then log into a closed file. Put the root logger back after each test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level
