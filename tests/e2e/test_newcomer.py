"""The newcomer path in real Chromium: upload on ``/admin/upload``, press Play, watch.

The server is what a fresh clone runs: the real app with its embedded engine and worker,
the default playback policy (``owner,grant,admin``) and no viewer sign-in configured. The
only credential is the admin token typed into the upload page; the player, finding no
viewer JWT, plays as the admin (``/player/admin-playback/{id}``), waiting while the
just-uploaded video is still being delivered.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from hybridvideo.api.app import create_app
from hybridvideo.config import load_settings
from hybridvideo.container import Container, build_container
from hybridvideo.delivery.webhook_secrets import subscribe_embedded_engine
from tests.conftest import make_clip
from tests.e2e.conftest import OUTCOME_TIMEOUT
from tests.services import free_port, serve_asgi

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.slow

#: Upload, probe, archive, engine encode and first frames of a 2 s clip, with room to spare.
PLAY_TIMEOUT_MS = 90_000


@dataclass
class Fresh:
    base: str
    container: Container
    token: str


@contextlib.contextmanager
def serve_fresh(root: Path, **overrides: object) -> Iterator[Fresh]:
    port = free_port()
    settings = load_settings(
        data_dir=root / "data", port=port, public_url=f"http://127.0.0.1:{port}", **overrides
    )
    container = build_container(settings, serving=True)
    subscribe_embedded_engine(container)
    try:
        assert container.admin_token is not None
        with serve_asgi(create_app(container, run_worker=True), port=port) as base:
            yield Fresh(base, container, container.admin_token)
    finally:
        container.close()


@pytest.fixture
def fresh(tmp_path: Path, admin_bundle: Path) -> Iterator[Fresh]:
    with serve_fresh(tmp_path / "fresh") as server:
        yield server


def test_upload_then_play_as_the_admin(fresh: Fresh, browser: Browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    clip = make_clip(tmp_path / "first.mp4", seconds=2.0, size="320x180")
    page = browser.new_context().new_page()
    page.goto(f"{fresh.base}/admin/upload")
    expect(page.locator("#play")).to_be_hidden()
    page.fill("#token", fresh.token)
    page.set_input_files("#file", str(clip))
    page.click("#start")
    expect(page.locator("#result")).to_have_text(
        re.compile(r"^Video \S+$"), timeout=OUTCOME_TIMEOUT * 1000
    )
    video_id = page.locator("#result").get_attribute("data-video-id")
    assert video_id
    play = page.locator("#play")
    expect(play).to_be_visible()
    expect(play).to_have_attribute("href", f"/watch/{video_id}")
    play.click()
    page.wait_for_url(f"**/watch/{video_id}")
    try:
        page.wait_for_function(
            "() => { const v = document.getElementById('video');"
            " return v.currentTime > 0.5 && v.getVideoPlaybackQuality().totalVideoFrames > 5; }",
            timeout=PLAY_TIMEOUT_MS,
        )
    except Exception:
        state = page.evaluate(
            "() => [window.hybridvideoPlayer.phase, window.hybridvideoPlayer.error]"
        )
        raise AssertionError(f"not playing: {state}") from None
    first = page.evaluate("() => document.getElementById('video').currentTime")
    page.wait_for_timeout(400)
    assert page.evaluate("() => document.getElementById('video').currentTime") > first
    assert page.evaluate("() => window.hybridvideoPlayer.error") is None


def test_the_admin_playback_route_needs_the_admin_token(fresh: Fresh) -> None:
    url = f"{fresh.base}/player/admin-playback/{'0' * 26}"
    assert httpx.get(url, timeout=10).status_code == 401
    bad = httpx.get(url, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert bad.status_code == 401
    unknown = httpx.get(url, headers={"Authorization": f"Bearer {fresh.token}"}, timeout=10)
    assert unknown.status_code == 404


def test_without_the_admin_rule_the_admin_token_does_not_play(
    tmp_path: Path, admin_bundle: Path
) -> None:
    with serve_fresh(tmp_path / "closed", playback_policy="owner,grant") as server:
        url = f"{server.base}/player/admin-playback/{'0' * 26}"
        refused = httpx.get(url, headers={"Authorization": f"Bearer {server.token}"}, timeout=10)
        assert refused.status_code == 403
        assert "no 'admin' rule" in refused.json()["error"]["message"]


def test_the_player_bundle_is_served_compressed_to_clients_that_accept_it(fresh: Fresh) -> None:
    """The bundle is most of a first visit's bytes (bench/startup.py: ~0.4 s on 4G)."""
    url = f"{fresh.base}/player/static/player.js"
    plain = httpx.get(url, headers={"Accept-Encoding": "identity"}, timeout=10)
    packed = httpx.get(url, headers={"Accept-Encoding": "gzip, br"}, timeout=10)
    assert plain.status_code == packed.status_code == 200
    assert "content-encoding" not in plain.headers
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.content == plain.content  # httpx decodes it
    assert int(packed.headers["content-length"]) < len(plain.content) / 2
    assert packed.headers["vary"] == "Accept-Encoding"
    assert packed.headers["etag"] != plain.headers["etag"]
    again = httpx.get(
        url,
        headers={"Accept-Encoding": "gzip", "If-None-Match": packed.headers["etag"]},
        timeout=10,
    )
    assert again.status_code == 304
    mixed = httpx.get(
        url,
        headers={"Accept-Encoding": "identity", "If-None-Match": packed.headers["etag"]},
        timeout=10,
    )
    assert mixed.status_code == 200 and mixed.content == plain.content
