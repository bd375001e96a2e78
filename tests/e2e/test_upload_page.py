"""The admin upload page: its router over HTTP, then the page itself in real Chromium.

The browser tests drive ``/admin/upload`` on the real app (see ``serve_ingest`` in
conftest.py) the way a person would: type (or paste) a token, choose or drop a file, press
Upload, pause, reload mid-upload and choose the file again. The server's own record of
requests, its archived bytes and the upload's outcome are the evidence: one upload
created, resumed where it stopped, bytes equal to the source, and the page showing what
the server made of them (a real clip: "Ready." and its video id; other bytes: "Failed:"
with the server's NOT_A_VIDEO message).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI

from hybridvideo.api import errors
from hybridvideo.api.routers.admin_pages import STATIC_DIR, build_admin_pages_router
from hybridvideo.ingest.tus.handler import PRINCIPAL_NOTE
from tests.e2e.conftest import OUTCOME_TIMEOUT, IngestServer, RequestRecord, serve_ingest
from tests.services import serve_asgi

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page

pytestmark = pytest.mark.slow
MiB = 1024 * 1024
TIMEOUT_MS = 60_000
#: Playwright's ``expect`` has its own 5 s default (not the page's): the server's outcome
#: (archive, probe, thumbnail) and the page's polling of it get this long instead.
OUTCOME_MS = int(OUTCOME_TIMEOUT * 1000)
#: Bytes the browser already handed to the kernel still reach the server after a pause or
#: a reload (here up to ~12 MB; at most tcp_rmem's 32 MiB + tcp_wmem's 4 MiB on Linux):
#: files bigger than that make sure the upload is really cut part-way.
BEYOND_SOCKET_BUFFERS = 48 * MiB


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the router over HTTP -----------------------------------------------------------------


@pytest.fixture(scope="module")
def pages_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestServer]:
    """One app for the read-only checks of the pages router (nothing is uploaded)."""
    with serve_ingest(tmp_path_factory.mktemp("pages")) as server:
        yield server


def test_page_and_files_carry_types_security_headers_and_etags(
    admin_bundle: Path, pages_server: IngestServer
) -> None:
    with httpx.Client(base_url=pages_server.base) as http:
        page = http.get("/admin/upload")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert 'id="file"' in page.text
        for response in [page, http.get("/admin/static/upload.js")]:
            csp = response.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "script-src 'self'" in csp
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
            assert "frame-ancestors 'none'" in csp
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["cache-control"] == "no-cache"
        expected = {
            "upload.js": "text/javascript; charset=utf-8",
            "admin.css": "text/css; charset=utf-8",
            "favicon.svg": "image/svg+xml",
        }
        for name, content_type in expected.items():
            response = http.get(f"/admin/static/{name}")
            assert response.status_code == 200, name
            assert response.headers["content-type"] == content_type
            assert response.content == (STATIC_DIR / name).read_bytes()
            etag = response.headers["etag"]
            again = http.get(f"/admin/static/{name}", headers={"If-None-Match": etag})
            assert again.status_code == 304 and again.content == b""
        head = http.head("/admin/static/upload.js")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(admin_bundle.stat().st_size)


@pytest.mark.parametrize(
    "name",
    [
        "upload.html",  # the page has its own route; no HTML under /static
        "UPLOAD.JS",
        ".upload.js",
        "nope.js",
        "upload.js.bak",
        "..%2fupload.html",
        "%2e%2e%2f..%2fpyproject.toml",
        "admin.css%00.js",
        "upload",
    ],
)
def test_static_names_are_checked_strictly(name: str, pages_server: IngestServer) -> None:
    response = httpx.get(f"{pages_server.base}/admin/static/{name}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


def test_a_missing_bundle_is_a_clear_503(tmp_path: Path) -> None:
    folder = tmp_path / "admin"
    folder.mkdir()
    for name in ("upload.html", "admin.css"):
        shutil.copy(STATIC_DIR / name, folder / name)
    app = FastAPI()
    errors.install(app)
    app.include_router(build_admin_pages_router(folder))
    with serve_asgi(app) as base, httpx.Client(base_url=base) as http:
        page = http.get("/admin/upload")
        assert page.status_code == 503
        assert page.headers["content-type"].startswith("text/html")
        assert "npm run build" in page.text and "web/" in page.text
        bundle = http.get("/admin/static/upload.js")
        assert bundle.status_code == 503
        assert "npm run build" in bundle.text
        assert http.get("/admin/static/admin.css").status_code == 200
        assert http.get("/admin/static/other.js").status_code == 404


# --- the page in Chromium -----------------------------------------------------------------


def open_page(browser: Browser, server: IngestServer) -> tuple[Page, list[str]]:
    """The upload page, wired up; the list collects console errors and page errors
    (a CSP violation shows up there)."""
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if _is_problem(m) else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{server.base}/admin/upload")
    page.wait_for_selector("#app[data-ready='true']", state="attached")
    return page, problems


def _is_problem(message: ConsoleMessage) -> bool:
    """Console errors, except the network log of answers tus-js-client handles by retrying:
    409 (offset moved on) and 423 (the server still finishing the interrupted request)."""
    if message.type != "error":
        return False
    return _RETRIED.search(message.text) is None


_RETRIED = re.compile(r"^Failed to load resource: .* status of (409|423) ")


def wait_for(condition: object, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def patches(server: IngestServer) -> list[RequestRecord]:
    return [r for r in server.requests if r.method == "PATCH"]


def only_upload(server: IngestServer) -> str:
    """The URL of the one upload the server holds."""
    ids = server.upload_ids()
    assert len(ids) == 1, f"expected exactly one upload, found {ids}"
    return f"{server.endpoint}/{ids[0]}"


def stored_upload(server: IngestServer) -> tuple[str, bytes]:
    """The one upload the server holds, and its bytes (archived, once it has an outcome)."""
    url = only_upload(server)
    return IngestServer.upload_id(url), server.stored(url)


def expect_ready(page: Page, server: IngestServer) -> dict[str, Any]:
    """The server made a video of the one upload and the page says so, with its id;
    returns the video (``GET /api/v1/videos/{id}``)."""
    from playwright.sync_api import expect

    outcome = server.outcome(only_upload(server))
    assert outcome["state"] == "ready" and outcome["error"] is None, outcome
    video_id = outcome["videoId"]
    expect(page.locator("#status")).to_have_text("Ready.", timeout=OUTCOME_MS)
    expect(page.locator("#status")).not_to_have_class(re.compile(r"\berror\b"))
    expect(page.locator("#result")).to_have_text(f"Video {video_id}")
    expect(page.locator("#result")).to_have_attribute("data-video-id", video_id)
    return server.api(f"videos/{video_id}")


def expect_not_a_video(page: Page, server: IngestServer) -> None:
    """The server refused the one upload as not a video, and the page shows its message."""
    from playwright.sync_api import expect

    outcome = server.outcome(only_upload(server))
    assert outcome["state"] == "failed" and outcome["videoId"] is None, outcome
    assert outcome["error"]["code"] == "NOT_A_VIDEO", outcome
    message = outcome["error"]["message"]
    assert message
    expect(page.locator("#status")).to_have_text(f"Failed: {message}", timeout=OUTCOME_MS)
    expect(page.locator("#status")).to_have_class("error")
    expect(page.locator("#result")).to_have_text(message)
    expect(page.locator("#result")).to_have_class(re.compile(r"\berror\b"))


def test_upload_a_video(
    browser: Browser, admin_bundle: Path, ingest_server: IngestServer, sample_video: Path
) -> None:
    from playwright.sync_api import expect

    page, problems = open_page(browser, ingest_server)
    expect(page.locator("#start")).to_be_disabled()
    page.fill("#token", ingest_server.token)
    page.fill("#collection", "work")
    page.set_input_files("#file", str(sample_video))
    expect(page.locator("#title")).to_have_value("sample")  # from the file name
    page.fill("#title", "Intro, take 2")
    page.click("#start")

    expect(page.locator("#percent")).to_have_text("100 %", timeout=TIMEOUT_MS)
    video = expect_ready(page, ingest_server)
    assert (video["title"], video["collection"]) == ("Intro, take 2", "work")
    upload_id, data = stored_upload(ingest_server)
    assert video["spec"]["archiveKey"].startswith("masters/")
    assert sha256(data) == sha256(sample_video.read_bytes())
    info = ingest_server.store.get(upload_id)
    assert info.metadata == {
        "filename": "sample.mp4",
        "filetype": "video/mp4",
        "title": "Intro, take 2",
        "collection": "work",
    }
    assert float(page.locator("#progress").get_attribute("value") or 0) == 100
    # Done uploads are not offered for resuming; the token stays for this tab only.
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('tus::'))") == []
    assert page.evaluate("sessionStorage.getItem('hybridvideo.upload.token')") == (
        ingest_server.token
    )
    assert page.evaluate("localStorage.getItem('hybridvideo.upload.token')") is None
    assert problems == []


def test_an_upload_token_uploads_and_reads_its_own_outcome(
    browser: Browser, admin_bundle: Path, ingest_server: IngestServer, sample_video: Path
) -> None:
    """What an app does for its users: mint an upload token (admin API), hand it to the
    page; the upload, and the page's polling of its outcome, then go with that token."""
    from playwright.sync_api import expect

    minted = httpx.post(
        f"{ingest_server.base}/api/v1/upload-tokens",
        headers=ingest_server.headers,
        json={"ttl": 600, "collection": "guests", "ownerId": "user-42"},
    )
    assert minted.status_code == 201, minted.text
    token = minted.json()["token"]
    assert token != ingest_server.token
    assert minted.json()["uploadUrl"] == f"{ingest_server.base}/files/"

    page, problems = open_page(browser, ingest_server)
    page.fill("#token", token)
    page.set_input_files("#file", str(sample_video))
    page.click("#start")
    expect(page.locator("#percent")).to_have_text("100 %", timeout=TIMEOUT_MS)
    video = expect_ready(page, ingest_server)
    # The token's pins, not the page's fields, decided where the video went.
    assert (video["collection"], video["ownerId"]) == ("guests", "user-42")
    upload_id, data = stored_upload(ingest_server)
    assert sha256(data) == sha256(sample_video.read_bytes())
    grant = ingest_server.container.upload_tokens.verify(token)
    assert ingest_server.store.get(upload_id).notes[PRINCIPAL_NOTE] == f"token:{grant.id}"
    # The page read that outcome with the only token it had: the status route answers the
    # token that created the upload (and the admin), and no other upload token.
    status = httpx.get(
        f"{ingest_server.base}/api/v1/uploads/{upload_id}",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert status.status_code == 200 and status.json()["videoId"] == video["id"]
    other = ingest_server.container.upload_tokens.mint(ttl=600)[0]
    hidden = httpx.get(
        f"{ingest_server.base}/api/v1/uploads/{upload_id}",
        headers={"Authorization": f"Bearer {other}"},
    )
    assert hidden.status_code == 404
    assert page.evaluate("sessionStorage.getItem('hybridvideo.upload.token')") == token
    assert problems == []


def test_a_failed_outcome_shows_the_servers_message(
    browser: Browser, admin_bundle: Path, ingest_server: IngestServer, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    source = tmp_path / "notes.bin"
    source.write_bytes(os.urandom(300_000))
    page, problems = open_page(browser, ingest_server)
    page.fill("#token", ingest_server.token)
    page.set_input_files("#file", str(source))
    page.click("#start")
    expect(page.locator("#percent")).to_have_text("100 %", timeout=TIMEOUT_MS)
    expect_not_a_video(page, ingest_server)
    _, data = stored_upload(ingest_server)
    assert sha256(data) == sha256(source.read_bytes())
    assert problems == []


def test_a_dropped_file_is_uploaded(
    browser: Browser, admin_bundle: Path, ingest_server: IngestServer
) -> None:
    from playwright.sync_api import expect

    page, problems = open_page(browser, ingest_server)
    page.fill("#token", ingest_server.token)
    size = 700_001
    transfer = page.evaluate_handle(
        """(size) => {
            const bytes = new Uint8Array(size)
            for (let i = 0; i < size; i++) bytes[i] = i % 251
            const dt = new DataTransfer()
            dt.items.add(new File([bytes], 'dropped clip.mp4', { type: 'video/mp4' }))
            return dt
        }""",
        size,
    )
    page.dispatch_event("#dropzone", "dragover", {"dataTransfer": transfer})
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": transfer})
    expect(page.locator("#chosen")).to_contain_text("dropped clip.mp4")
    expect(page.locator("#title")).to_have_value("dropped clip")
    page.click("#start")
    expect(page.locator("#percent")).to_have_text("100 %", timeout=TIMEOUT_MS)
    expect_not_a_video(page, ingest_server)  # named .mp4, typed video/mp4: still bytes
    _, data = stored_upload(ingest_server)
    assert data == bytes(i % 251 for i in range(size))
    assert problems == []


def test_pause_then_resume(browser: Browser, admin_bundle: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    source = tmp_path / "big.mp4"
    size = BEYOND_SOCKET_BUFFERS
    source.write_bytes(os.urandom(size))
    with serve_ingest(tmp_path / "server", bytes_per_second=2_000_000) as server:
        page, problems = open_page(browser, server)
        page.fill("#token", server.token)
        page.set_input_files("#file", str(source))
        page.click("#start")
        wait_for(lambda: any(p.received >= MiB for p in patches(server)), what="1 MiB sent")
        expect(page.locator("#speed")).to_have_text(re.compile(r"^\d+\.\d MB/s$"))
        page.click("#pause")
        server.set_speed(None)
        expect(page.locator("#status")).to_have_text(re.compile(r"^Paused at \d+ %\.$"))
        expect(page.locator("#resume")).to_be_enabled()
        expect(page.locator("#pause")).to_be_disabled()
        wait_for(lambda: patches(server)[0].status is not None, what="the paused PATCH to end")
        upload_id = server.upload_ids()[0]
        kept = server.store.get(upload_id).offset
        assert 0 < kept < size, "paused part-way"
        page.click("#resume")
        expect(page.locator("#percent")).to_have_text("100 %", timeout=TIMEOUT_MS)
        expect_not_a_video(page, server)
        stored_id, data = stored_upload(server)
        assert stored_id == upload_id
        assert sha256(data) == sha256(source.read_bytes())
        # Resumed, not restarted: one creation; after the pause the page asked for the
        # offset (HEAD) and the next PATCH went on from the bytes the server had kept.
        methods = [r.method for r in server.requests if r.path.startswith("/files")]
        assert methods.count("POST") == 1
        assert "HEAD" in methods[methods.index("PATCH") :]
        resumed = [p for p in patches(server) if p.status == 204]
        assert len(resumed) == 1 and resumed[0].received == size - kept
        assert problems == []


def test_a_reload_mid_upload_resumes_the_same_upload(
    browser: Browser, admin_bundle: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    size = BEYOND_SOCKET_BUFFERS
    source = tmp_path / "reload me.mp4"
    source.write_bytes(os.urandom(size))
    with serve_ingest(tmp_path / "server", bytes_per_second=2_000_000) as server:
        page, problems = open_page(browser, server)
        page.fill("#token", server.token)
        page.set_input_files("#file", str(source))
        page.click("#start")
        wait_for(lambda: any(p.received >= MiB for p in patches(server)), what="1 MiB sent")
        stored_urls = page.evaluate(
            """Object.keys(localStorage).filter(k => k.startsWith('tus::'))
                 .map(k => JSON.parse(localStorage.getItem(k)).uploadUrl)"""
        )
        assert len(stored_urls) == 1
        upload_url = stored_urls[0]

        page.reload()
        server.set_speed(None)
        page.wait_for_selector("#app[data-ready='true']", state="attached")
        expect(page.locator("#token")).to_have_value(server.token)  # kept for this tab
        expect(page.locator("#previous")).to_be_visible()
        expect(page.locator("#previous")).to_contain_text("reload me.mp4")
        # The interrupted PATCH is answered once the server has recorded what it got.
        wait_for(lambda: patches(server)[0].status is not None, what="the cut PATCH to end")
        kept = server.store.get(IngestServer.upload_id(upload_url)).offset
        page.set_input_files("#file", str(source))
        page.click("#start")
        expect(page.locator("#percent")).to_have_text("100 %", timeout=TIMEOUT_MS)
        expect_not_a_video(page, server)

        upload_id, data = stored_upload(server)
        assert f"{server.endpoint}/{upload_id}" == upload_url
        assert sha256(data) == sha256(source.read_bytes())
        methods = [r.method for r in server.requests if r.path.startswith("/files")]
        assert methods.count("POST") == 1, methods
        first_patch = methods.index("PATCH")
        assert "HEAD" in methods[first_patch:], "the reloaded page asked for the offset"
        assert 0 < kept < size, "the reload landed mid-upload"
        resumed = [p for p in patches(server) if p.status == 204]
        assert len(resumed) == 1 and resumed[0].received == size - kept
        assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('tus::'))") == []
        assert problems == []
