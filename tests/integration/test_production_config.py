"""The composition root on production settings: PostgreSQL, Redis or PostgreSQL queue, S3.

The contract suites prove each adapter; this proves the settings reach them: the same
commands an operator runs (`db upgrade`, `doctor`, `videos add`) against real servers.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import boto3
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from hybridvideo.api.app import create_app
from hybridvideo.archive.s3 import client_config
from hybridvideo.cli.main import app
from hybridvideo.config import load_settings
from hybridvideo.container import build_container

runner = CliRunner()
TOKEN = "production-admin-token-0123456789"


@pytest.fixture(params=["redis", "postgres"])
def production_env(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    postgres_db: str,
    s3_endpoint: str,
    tmp_path: Path,
) -> str:
    bucket = f"archive-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name="us-east-1", config=client_config()
    ).create_bucket(Bucket=bucket)
    env = {
        # postgresql:// as users write it; the settings add the driver.
        "DATABASE_URL": postgres_db.replace("postgresql+psycopg://", "postgresql://"),
        "HYBRIDVIDEO_ADMIN_TOKEN": TOKEN,
        "HYBRIDVIDEO_DATA_DIR": str(tmp_path / "node"),
        "HYBRIDVIDEO_S3_BUCKET": bucket,
        "HYBRIDVIDEO_S3_ENDPOINT_URL": s3_endpoint,
        "HYBRIDVIDEO_S3_ACCESS_KEY_ID": "testing",
        "HYBRIDVIDEO_S3_SECRET_ACCESS_KEY": "testing",
        "HYBRIDVIDEO_S3_PART_SIZE": str(5 * 1024 * 1024),
    }
    if request.param == "redis":
        env["REDIS_URL"] = request.getfixturevalue("redis_url")
    else:
        env["HYBRIDVIDEO_QUEUE_BACKEND"] = "postgres"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return bucket


def test_operator_commands_on_production_parts(production_env: str, sample_video: Path) -> None:
    bucket = production_env
    # PostgreSQL is never migrated behind the operator's back.
    doctor = runner.invoke(app, ["doctor"])
    assert doctor.exit_code == 1 and "db upgrade" in doctor.stdout
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    doctor = runner.invoke(app, ["doctor"])
    assert doctor.exit_code == 0, doctor.stdout
    assert f"S3 bucket {bucket}" in doctor.stdout and "PostgreSQL, migrated" in doctor.stdout

    added = runner.invoke(app, ["videos", "add", str(sample_video), "--collection", "inbound"])
    assert added.exit_code == 0, added.stderr
    video_id = added.stdout.split()[1]
    shown = json.loads(runner.invoke(app, ["videos", "show", video_id, "--json"]).stdout)
    assert shown["spec"]["archiveBucket"] == bucket

    settings = load_settings()
    container = build_container(settings)
    try:
        key = shown["spec"]["archiveKey"]
        assert container.archive.head(key).size == sample_video.stat().st_size
        # No local archive: the app does not mount our own signed-URL routes.
        with TestClient(create_app(container, run_worker=False)) as client:
            assert client.get("/readyz").status_code == 200
            listed = client.get(
                "/api/v1/videos", headers={"Authorization": f"Bearer {TOKEN}"}
            ).json()
            assert [v["id"] for v in listed["items"]] == [video_id]
            assert client.get("/archive/signed/" + key).status_code == 404
    finally:
        container.close()
