"""The admin migrations page (``/admin/migrations``) in real Chromium, on the real app.

The server is the app with its embedded engine and its worker, on loopback: a migration
run through ``container.migrations`` copies catalog videos to that engine over HTTP, one
of them failing because its master was deleted from the archive. The page, driven the
way a person would (type the token, choose the run, press "Retry failed"), must show the
run's counts and the failure's reason, and the retry must become a queued run that the
worker executes: the table shows it finished with the video copied once the master is
back. The catalog and the journal are the evidence, not the page alone.
"""

from __future__ import annotations

import io
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import FastAPI

from hybridvideo.api import errors
from hybridvideo.api.app import create_app
from hybridvideo.api.routers.admin_pages import STATIC_DIR, build_admin_pages_router
from hybridvideo.config import load_settings
from hybridvideo.container import Container, build_container
from hybridvideo.domain.video import StreamStatus, VideoState
from hybridvideo.migrate.journal import MigrationRun, RunState
from hybridvideo.migrate.plan import MigrationOptions, build_scan
from tests.e2e.conftest import unavailable
from tests.masters import add_tiny_master
from tests.services import free_port, serve_asgi

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Locator, Page

pytestmark = pytest.mark.slow
TIMEOUT_MS = 30_000
#: The page refreshes every 3 s; the worker picks a job up within a second or two.
RUN_MS = 60_000
MISSING_MESSAGE = "the master is missing from the archive"
TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")


@pytest.fixture(scope="session")
def migrations_bundle() -> Path:
    """The built bundle (``npm run build`` in web/) the page needs."""
    bundle = STATIC_DIR / "migrations.js"
    if not bundle.is_file():
        unavailable("the admin bundle is not built", "run `npm ci && npm run build` in web/")
    return bundle


@dataclass
class Server:
    base: str
    container: Container
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def add(self, n: int) -> VideoState:
        """A catalog row over unique bytes, as the Phase 1 import records masters."""
        container = self.container
        return add_tiny_master(container.catalog, container.archive, n, salt=self.base)

    def migrate(self) -> MigrationRun:
        service = self.container.migrations
        run = service.start(build_scan(), MigrationOptions(concurrency=2))
        return service.execute(run).run


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """The real app (engine, admin pages, API, embedded worker) over a fresh data dir."""
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    container = build_container(
        load_settings(data_dir=tmp_path / "data", port=port, public_url=public), serving=True
    )
    assert container.admin_token is not None and container.engine is not None
    try:
        with serve_asgi(create_app(container, run_worker=True), port=port) as base:
            yield Server(base=base, container=container, token=container.admin_token)
    finally:
        container.close()


def open_page(browser: Browser, server: Server) -> tuple[Page, list[str]]:
    """The migrations page, wired up; the list collects console and page errors (a CSP
    violation shows up there)."""
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if _is_problem(m) else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{server.base}/admin/migrations")
    page.wait_for_selector("#app[data-ready='true']", state="attached")
    return page, problems


def _is_problem(message: ConsoleMessage) -> bool:
    """Console errors, except Chromium's network log of the error answers a test asks
    for (a refused token, a refused retry): the page shows those, and the tests check it."""
    if message.type != "error":
        return False
    return _ANSWERED.search(message.text) is None


_ANSWERED = re.compile(r"^Failed to load resource: .* status of (401|409) ")


def row(page: Page, run_id: str, cell: str) -> Locator:
    return page.locator(f"#runs-body tr[data-run-id='{run_id}'] td.{cell}")


def test_the_page_lists_runs_shows_failures_and_retries_them(
    browser: Browser, migrations_bundle: Path, server: Server
) -> None:
    from playwright.sync_api import expect

    videos = [server.add(n) for n in range(2)]
    lost_key = videos[1].spec.archive_key
    lost = b"".join(server.container.archive.open(lost_key))
    server.container.archive.delete(lost_key)
    first = server.migrate()
    assert first.state == RunState.FINISHED
    assert dict(first.counts) == {"copied": 1, "failed": 1}

    page, problems = open_page(browser, server)
    expect(page.locator("#detail")).to_be_hidden()
    page.fill("#token", server.token)
    page.click("#load")

    runs = page.locator("#runs-body tr")
    expect(runs).to_have_count(1)
    expect(page.locator("#status")).to_have_text("1 run.")
    cells = {
        "state": "finished",
        "total": "2",
        "count-copied": "1",
        "count-present": "0",
        "count-failed": "1",
        "count-deferred": "0",
        "error-text": "",
    }
    for cell, text in cells.items():
        expect(row(page, first.id, cell)).to_have_text(text)
    expect(row(page, first.id, "started")).to_have_text(TIME)
    expect(row(page, first.id, "finished")).to_have_text(TIME)
    assert page.locator("#app").get_attribute("data-refreshing") == "false"

    # Choose the run: its failure, with the reason the runner recorded.
    page.click(f"#runs-body tr[data-run-id='{first.id}'] button.run-id")
    expect(page.locator("#detail")).to_be_visible()
    expect(page.locator("#detail-title")).to_have_text(f"Run {first.id}")
    expect(page.locator("#detail-state")).to_have_text("finished")
    expect(page.locator("#detail-filters")).to_have_text("statuses: NOT_DELIVERED")
    failures = page.locator("#failures-body tr")
    expect(failures).to_have_count(1)
    failure = page.locator(f"#failures-body tr[data-video-id='{videos[1].id}']")
    expect(failure.locator("td.video-id")).to_have_text(videos[1].id)
    expect(failure.locator("td.title")).to_have_text("Lesson 1")
    expect(failure.locator("td.code")).to_have_text("MASTER_MISSING")
    expect(failure.locator("td.message")).to_have_text(MISSING_MESSAGE)
    expect(page.locator("#failures-empty")).to_be_hidden()
    expect(page.locator("#retry")).to_be_enabled()

    # Put the master back, retry: a queued run the worker executes; the table follows it.
    server.container.archive.put(lost_key, io.BytesIO(lost))
    page.click("#retry")
    status = page.locator("#retry-status")
    expect(status).to_have_text(re.compile(r"^Queued run \S+ to retry 1 failed video\.$"))
    retry_id = status.get_attribute("data-run-id")
    assert retry_id and retry_id != first.id
    retry = server.container.runs.get_run(retry_id)
    assert retry.parent_id == first.id and retry.total == 1
    expect(runs).to_have_count(2)
    expect(runs.first).to_have_attribute("data-run-id", retry_id)  # newest first
    expect(runs.first).to_have_class(re.compile(r"\bnew\b"))
    expect(row(page, retry_id, "state")).to_have_text("finished", timeout=RUN_MS)
    expect(row(page, retry_id, "count-copied")).to_have_text("1")
    expect(row(page, retry_id, "count-failed")).to_have_text("0")
    expect(row(page, first.id, "count-failed")).to_have_text("1")
    expect(page.locator("#app")).to_have_attribute("data-refreshing", "false")

    done = server.container.runs.get_run(retry_id)
    assert done.state == RunState.FINISHED and dict(done.counts) == {"copied": 1}
    spec = server.container.catalog.get_video(videos[1].id).spec
    assert spec.stream_uid is not None and spec.stream_status is not StreamStatus.ERROR

    # The retry run itself failed nothing: nothing to retry there.
    page.click(f"#runs-body tr[data-run-id='{retry_id}'] button.run-id")
    expect(page.locator("#detail-title")).to_have_text(f"Run {retry_id}")
    expect(page.locator("#detail-parent")).to_have_text(first.id)
    expect(page.locator("#failures-empty")).to_be_visible()
    expect(page.locator("#retry")).to_be_disabled()

    # Retrying the first run again: refused, and the page says why.
    page.click(f"#runs-body tr[data-run-id='{first.id}'] button.run-id")
    expect(page.locator("#retry")).to_be_enabled()
    page.click("#retry")
    expect(page.locator("#retry-status")).to_have_text(
        f"Retry refused: the failed videos of migration run {first.id} were all delivered "
        "since (HTTP 409)."
    )
    expect(page.locator("#retry-status")).to_have_class(re.compile(r"\berror\b"))
    expect(runs).to_have_count(2)

    # The token is the upload page's: kept for this tab, and that page has it too.
    assert page.evaluate("sessionStorage.getItem('hybridvideo.upload.token')") == server.token
    assert page.evaluate("localStorage.getItem('hybridvideo.upload.token')") is None
    page.click("nav.admin-nav a[href='upload']")
    page.wait_for_url(f"{server.base}/admin/upload")
    expect(page.locator("#token")).to_have_value(server.token)
    assert problems == []


def test_a_refused_token_is_said_and_shows_nothing(
    browser: Browser, migrations_bundle: Path, server: Server
) -> None:
    from playwright.sync_api import expect

    server.add(0)
    server.migrate()
    page, problems = open_page(browser, server)
    page.fill("#token", "not-the-token")
    page.click("#load")
    expect(page.locator("#status")).to_have_text(
        re.compile(r"^Could not load the runs: the server refused the token \(HTTP 401\)")
    )
    expect(page.locator("#status")).to_have_class("error")
    expect(page.locator("#runs-body tr")).to_have_count(0)
    assert page.locator("#app").get_attribute("data-refreshing") == "false"
    page.fill("#token", server.token)
    page.click("#load")
    expect(page.locator("#runs-body tr")).to_have_count(1)
    expect(page.locator("#status")).not_to_have_class("error")
    assert problems == []


def test_the_page_and_its_files_carry_the_admin_headers(
    migrations_bundle: Path, server: Server
) -> None:
    with httpx.Client(base_url=server.base) as http:
        page = http.get("/admin/migrations")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert 'id="runs"' in page.text and 'href="upload"' in page.text
        assert "<style" not in page.text and "style=" not in page.text
        assert re.search(r"<script(?![^>]*\bsrc=)", page.text) is None  # no inline script
        upload = http.get("/admin/upload")
        assert upload.status_code == 200 and 'href="migrations"' in upload.text
        for name, content_type in {
            "migrations.js": "text/javascript; charset=utf-8",
            "migrations.css": "text/css; charset=utf-8",
        }.items():
            response = http.get(f"/admin/static/{name}")
            assert response.status_code == 200, name
            assert response.headers["content-type"] == content_type
            assert response.content == (STATIC_DIR / name).read_bytes()
        for response in (page, http.get("/admin/static/migrations.js")):
            csp = response.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "style-src 'self'" in csp
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
            assert response.headers["x-frame-options"] == "DENY"
        assert http.get("/admin/static/migrations.html").status_code == 404
        # The page holds no data: the API behind it needs the token.
        assert http.get("/api/v1/migrations").status_code == 401


def test_each_page_needs_only_its_own_bundle(tmp_path: Path) -> None:
    """An install whose migrations bundle is missing still serves the upload page, and
    the migrations page says how to build it."""
    folder = tmp_path / "admin"
    folder.mkdir()
    for name in ("upload.html", "migrations.html", "admin.css", "migrations.css"):
        shutil.copy(STATIC_DIR / name, folder / name)
    (folder / "upload.js").write_text("// built\n")
    app = FastAPI()
    errors.install(app)
    app.include_router(build_admin_pages_router(folder))
    with serve_asgi(app) as base, httpx.Client(base_url=base) as http:
        assert http.get("/admin/upload").status_code == 200
        page = http.get("/admin/migrations")
        assert page.status_code == 503
        assert "npm run build" in page.text
        bundle = http.get("/admin/static/migrations.js")
        assert bundle.status_code == 503 and "npm run build" in bundle.text
        assert http.get("/admin/static/migrations.css").status_code == 200
