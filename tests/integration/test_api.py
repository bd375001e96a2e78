from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from hybridvideo.api.app import create_app
from hybridvideo.container import Container


def add(container: Container, path: Path, **kw: str) -> str:
    return container.videos.add_file(path, **kw).video.id  # type: ignore[arg-type]


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {"catalog": "ok", "archive": "ok", "queue": "ok", "engine": "ok"},
    }


def test_readiness_fails_when_the_archive_is_gone(client: TestClient, data_dir: Path) -> None:
    shutil.rmtree(data_dir / "archive")
    (data_dir / "archive").write_text("not a folder")
    ready = client.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["archive"] == "BACKEND_UNAVAILABLE"
    assert body["checks"]["catalog"] == "ok"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing bearer token"),
        ({"Authorization": "Basic abc"}, "missing bearer token"),
        ({"Authorization": "Bearer "}, "missing bearer token"),
        ({"Authorization": "Bearer wrong-token-wrong-token"}, "invalid admin token"),
    ],
)
def test_admin_api_requires_the_token(
    client: TestClient, headers: dict[str, str], message: str
) -> None:
    response = client.get("/api/v1/videos", headers={**headers, "X-Request-ID": "req-42"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["x-request-id"] == "req-42"
    error = response.json()["error"]
    assert error["code"] == "UNAUTHORIZED"
    assert message in error["message"]
    assert error["request_id"] == "req-42"


def test_list_show_and_edit(
    client: TestClient, container: Container, admin: dict[str, str], sample_video: Path
) -> None:
    video_id = add(container, sample_video, title="Intro", collection="work")
    listed = client.get("/api/v1/videos", headers=admin).json()
    assert listed["total"] == 1
    item = listed["items"][0]
    assert item["id"] == video_id and item["collection"] == "work"
    spec = item["spec"]
    assert spec["streamStatus"] == "NOT_DELIVERED"
    assert spec["fileSize"] == sample_video.stat().st_size
    assert spec["format"] == "mp4" and spec["duration"] == pytest.approx(1.0, abs=0.1)
    assert spec["archiveKey"].startswith("masters/") and len(spec["sha256"]) == 64

    shown = client.get(f"/api/v1/videos/{video_id}", headers=admin)
    assert shown.status_code == 200 and shown.json() == item

    patched = client.patch(
        f"/api/v1/videos/{video_id}",
        json={"title": "Intro (new)", "collection": "inbound", "pinned": True},
        headers=admin,
    )
    assert patched.status_code == 200
    assert (patched.json()["title"], patched.json()["pinned"]) == ("Intro (new)", True)
    by_collection = client.get("/api/v1/videos?collection=inbound", headers=admin).json()
    assert by_collection["total"] == 1
    assert client.get("/api/v1/videos?collection=work", headers=admin).json()["total"] == 0
    assert client.get("/api/v1/videos?status=READY", headers=admin).json()["total"] == 0
    assert client.get("/api/v1/videos?q=NEW", headers=admin).json()["total"] == 1


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("get", "/api/v1/videos/unknown", None, 404, "NOT_FOUND"),
        ("patch", "/api/v1/videos/unknown", {"title": "x"}, 404, "NOT_FOUND"),
        ("get", "/api/v1/videos?status=DONE", None, 422, "INVALID_INPUT"),
        ("get", "/api/v1/videos?limit=0", None, 422, "INVALID_INPUT"),
        ("get", "/api/v1/videos?limit=201", None, 422, "INVALID_INPUT"),
        ("get", "/api/v1/videos?offset=99999999999999999999", None, 422, "INVALID_INPUT"),
        ("get", "/api/v1/videos?offset=-1", None, 422, "INVALID_INPUT"),
        ("get", "/api/v1/nothing-here", None, 404, "NOT_FOUND"),
    ],
)
def test_bad_requests_get_precise_errors(
    client: TestClient,
    admin: dict[str, str],
    method: str,
    path: str,
    body: dict[str, str] | None,
    status: int,
    code: str,
) -> None:
    response = client.request(method, path, json=body, headers=admin)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_invalid_edits_change_nothing(
    client: TestClient, container: Container, admin: dict[str, str], sample_video: Path
) -> None:
    video_id = add(container, sample_video, title="Keep me", collection="work")
    url = f"/api/v1/videos/{video_id}"
    for body, status in [
        ({"collection": "Bad Collection!"}, 400),
        ({"title": ""}, 422),
        ({"title": "x" * 301}, 422),
        ({"unknown": 1}, 422),
        ({"pinned": "maybe"}, 422),
    ]:
        response = client.patch(url, json=body, headers=admin)
        assert response.status_code == status, body
        assert "error" in response.json()
    after = client.get(url, headers=admin).json()
    assert (after["title"], after["collection"], after["pinned"]) == ("Keep me", "work", False)


def test_internal_errors_do_not_leak(
    client: TestClient, container: Container, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_: object) -> None:
        raise RuntimeError("password=hunter2 in a driver message")

    monkeypatch.setattr(container.catalog, "list_videos", boom)
    response = client.get("/api/v1/videos", headers={**admin, "X-Request-ID": "r-500"})
    assert response.status_code == 500
    assert response.json()["error"] == {
        "code": "INTERNAL",
        "message": "internal error",
        "request_id": "r-500",
    }
    assert response.headers["x-request-id"] == "r-500"
    assert "hunter2" not in response.text


def test_signed_archive_urls_are_served_by_the_app(
    client: TestClient, container: Container, sample_video: Path
) -> None:
    video_id = add(container, sample_video)
    key = container.catalog.get_video(video_id).spec.archive_key
    url = urlsplit(container.archive.presign_get(key, expires_in=60))
    path = f"{url.path}?{url.query}"
    full = client.get(path)
    assert full.status_code == 200 and full.content == sample_video.read_bytes()
    part = client.get(path, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == sample_video.read_bytes()[10:20]
    tampered = client.get(path.replace("signature=", "signature=0"))
    assert tampered.status_code == 401


def test_openapi_docs(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    ids = {op["operationId"] for item in spec["paths"].values() for op in item.values()}
    assert {"videos-list_videos", "videos-show_video", "videos-edit_video"} <= ids


def test_readiness_reports_the_embedded_worker(container: Container) -> None:
    with TestClient(create_app(container, run_worker=True)) as client:
        checks = client.get("/readyz").json()["checks"]
        assert checks["worker"] == "ok"
        worker = client.app.state.worker  # type: ignore[attr-defined]
        assert worker.stop(timeout=10)
        stopped = client.get("/readyz")
        assert stopped.status_code == 503 and stopped.json()["checks"]["worker"] == "STOPPED"


def test_the_app_needs_an_admin_token(data_dir: Path) -> None:
    from hybridvideo.config import load_settings
    from hybridvideo.container import build_container
    from hybridvideo.errors import ConfigurationError

    bare = build_container(load_settings(data_dir=data_dir / "other"))
    try:
        with pytest.raises(ConfigurationError, match="admin token"):
            create_app(bare)
    finally:
        bare.close()
