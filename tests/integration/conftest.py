from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hybridvideo.api.app import create_app
from hybridvideo.config import load_settings
from hybridvideo.container import Container, build_container


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def container(data_dir: Path) -> Iterator[Container]:
    c = build_container(load_settings(data_dir=data_dir), serving=True)
    yield c
    c.close()


@pytest.fixture
def client(container: Container) -> Iterator[TestClient]:
    app = create_app(container, run_worker=False)
    with TestClient(app, raise_server_exceptions=False) as tc:
        yield tc


@pytest.fixture
def admin(container: Container) -> dict[str, str]:
    return {"Authorization": f"Bearer {container.admin_token}"}
