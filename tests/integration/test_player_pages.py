"""``/watch/{id}``, ``/embed/{id}``: the config the server writes and the page headers."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from hybridvideo.api import errors
from hybridvideo.api.routers.player_pages import STATIC_DIR, build_player_pages_router
from hybridvideo.config import load_settings


def client(tmp_path: Path, static: Path = STATIC_DIR, **settings: object) -> TestClient:
    app = FastAPI()
    errors.install(app)
    config = load_settings(data_dir=tmp_path, **settings)
    app.include_router(build_player_pages_router(config, static_dir=static))
    return TestClient(app, raise_server_exceptions=False)


def config_of(page: str) -> dict[str, object]:
    found = re.search(r'data-config="([^"]*)"', page)
    assert found is not None
    parsed: dict[str, object] = json.loads(html.unescape(found.group(1)))
    return parsed


def fake_static(tmp_path: Path, *, bundle: bool) -> Path:
    folder = tmp_path / "static"
    folder.mkdir()
    for name in ("watch.html", "embed.html", "player.css"):
        (folder / name).write_bytes((STATIC_DIR / name).read_bytes())
    if bundle:
        (folder / "player.js").write_text("/* built */\n")
    return folder


def test_watch_carries_the_settings_and_may_not_be_framed(tmp_path: Path) -> None:
    static = fake_static(tmp_path, bundle=True)
    with client(tmp_path, static, player_abr=False, player_cohort="b") as c:
        page = c.get("/watch/abc-123?next=def-456")
    assert page.status_code == 200 and page.headers["x-frame-options"] == "DENY"
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self';" in csp
    config = config_of(page.text)
    assert config["videoId"] == "abc-123" and config["next"] == "def-456"
    assert config["abr"] is False and config["cache"] is True
    assert config["cohort"] == {
        "cohort": "b", "segment_cache": "on", "preload_next": "on", "abr": "off"
    }  # fmt: skip
    assert page.headers["cache-control"] == "no-store"


def test_embed_is_framed_by_the_configured_origins_only(tmp_path: Path) -> None:
    static = fake_static(tmp_path, bundle=True)
    origins = ["https://app.example.com", "javascript:alert(1)"]
    with client(tmp_path, static, player_embed_origins=origins) as c:
        page = c.get("/embed/abc")
    assert page.status_code == 200 and "x-frame-options" not in page.headers
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'self' https://app.example.com" in csp
    assert "javascript" not in csp


def test_bad_ids_unknown_files_and_a_missing_bundle(tmp_path: Path) -> None:
    static = fake_static(tmp_path, bundle=False)
    with client(tmp_path, static) as c:
        assert c.get("/watch/abc").status_code == 503
        assert "npm run build" in c.get("/watch/abc").text
        assert c.get("/watch/" + "x" * 40).status_code == 404
        assert c.get("/player/static/player.css").status_code == 200
        assert c.get("/player/static/watch.html").status_code == 404
        assert c.get("/player/static/player.js").status_code == 404
    static_built = tmp_path / "b"
    static_built.mkdir()
    (static_built / "watch.html").write_text('<main data-config="__PLAYER_CONFIG__">')
    (static_built / "player.js").write_text("")
    with client(tmp_path, static_built) as c:
        assert c.get("/watch/abc?next=%22%3E%3Cscript%3E").status_code == 400
        page = c.get("/watch/a_b")
        assert "<script" not in page.text and config_of(page.text)["videoId"] == "a_b"
