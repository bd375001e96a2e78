"""Real clients for end-to-end tests: Chromium (Debian's, driven by Playwright), Node with
tus-js-client from ``web/node_modules``, and an ingest server on loopback for them to hit.

Missing tools skip with the reason and the fix, or fail when ``CI=true`` (CI installs
them), like :func:`tests.services.missing`.

Playwright never downloads a browser here: it drives the system Chromium through
``executable_path``. Its sync API runs its own event loop in the calling thread until it
is stopped, so each browser test gets a fresh Playwright (function scope) rather than one
left running under other tests of the same worker.

The ingest server is, for now, a bare app: the tus router over a :class:`LocalUploadStore`,
the admin pages and a stand-in for ``GET /api/v1/uploads/{id}``. When the real app mounts
ingest, :func:`serve_ingest` is the one place to switch to it (see its docstring).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from hybridvideo.api import errors
from hybridvideo.api.routers.admin_pages import STATIC_DIR, build_admin_pages_router
from hybridvideo.ingest.tus.handler import build_tus_router
from hybridvideo.ingest.tus.protocol import Capabilities, TusError
from hybridvideo.ingest.tus.store import LocalUploadStore
from tests.services import in_ci, serve_asgi

if TYPE_CHECKING:
    from playwright.sync_api import Browser

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
SCENARIO = ROOT / "tests" / "node" / "tus_scenario.mjs"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
#: Headless as root on a closed network: without the background-networking flags Chromium
#: floods the sandbox with refused connections (see shared/design/test-infra.md).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MAX_UPLOAD = 256 * 1024 * 1024

# Nothing in the test run may fetch a browser build (it would fail here and is not ours).
os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"


def unavailable(what: str, fix: str) -> None:
    """Skip (developer machine) or fail (CI) because ``what`` is missing; say the fix."""
    message = f"{what} ({fix})"
    if in_ci():
        pytest.fail(f"CI=true but {message}", pytrace=False)
    pytest.skip(message)


# --- Chromium -----------------------------------------------------------------------------


def find_chromium() -> str | None:
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found is not None:
            return found
    return None


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = find_chromium()
    if path is None:
        unavailable("Chromium is not installed", "apt-get install -y chromium")
        raise AssertionError("unreachable")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        unavailable("Playwright is not installed", "./scripts/test installs the test extra")
    return path


@pytest.fixture
def browser(chromium_path: str) -> Iterator[Browser]:
    """Headless system Chromium for one test (use it from a plain, non-async test)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            launched.close()


# --- Node + tus-js-client -----------------------------------------------------------------


@dataclass(frozen=True)
class NodeTus:
    """Runs ``tests/node/tus_scenario.mjs`` (tus-js-client under Node) and parses its result."""

    node: str

    def run(self, timeout: float = 90.0, **options: Any) -> dict[str, Any]:
        options = {key: str(value) if isinstance(value, Path) else value
                   for key, value in options.items()}  # fmt: skip
        options.setdefault("timeoutMs", int(timeout * 1000) - 5000)
        proc = subprocess.run(
            [self.node, str(SCENARIO), json.dumps(options)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )
        lines = proc.stdout.strip().splitlines()
        assert proc.returncode == 0 and lines, (
            f"scenario failed (exit {proc.returncode}): {proc.stdout}\n{proc.stderr}"
        )
        result: dict[str, Any] = json.loads(lines[-1])
        return result


@pytest.fixture(scope="session")
def node_tus() -> NodeTus:
    node = shutil.which("node")
    if node is None:
        unavailable("Node.js is not installed", "install Node.js 20+, then ./scripts/test")
        raise AssertionError("unreachable")
    if not (WEB / "node_modules" / "tus-js-client" / "package.json").is_file():
        unavailable("web/node_modules is missing", "run `npm ci` in web/ or ./scripts/test")
    return NodeTus(node=node)


@pytest.fixture(scope="session")
def admin_bundle() -> Path:
    """The built admin bundle (``npm run build`` in web/), needed by the upload page."""
    bundle = STATIC_DIR / "upload.js"
    if not bundle.is_file():
        unavailable("the admin bundle is not built", "run `npm ci && npm run build` in web/")
    return bundle


# --- the ingest server --------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class RequestRecord:
    method: str
    path: str
    override: str | None
    received: int = 0  # request body bytes the app has read so far
    status: int | None = None


class RecordingMiddleware:
    """Records every request (method, path, body bytes read, status) and, when asked,
    delays the body to ``bytes_per_second``: a slow link, so a test can act mid-upload."""

    def __init__(self, app: ASGIApp, log: list[RequestRecord], bytes_per_second: int | None):
        self.app = app
        self.log = log
        self.bytes_per_second = bytes_per_second

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        override = headers.get(b"x-http-method-override")
        record = RequestRecord(
            scope["method"], scope["path"], override.decode() if override else None
        )
        self.log.append(record)

        async def counting_receive() -> Message:
            message = await receive()
            body = message.get("body", b"") if message["type"] == "http.request" else b""
            if body and self.bytes_per_second:
                await anyio.sleep(len(body) / self.bytes_per_second)
            record.received += len(body)
            return message

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = int(message["status"])
            await send(message)

        await self.app(scope, counting_receive, recording_send)


@dataclass
class IngestServer:
    """What a test needs to know about the server it uploads to."""

    base: str
    store: LocalUploadStore
    token: str  # typed into the upload page; sent as a bearer token
    recorder: RecordingMiddleware

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request so far, in arrival order (appended as they come in)."""
        return self.recorder.log

    def set_speed(self, bytes_per_second: int | None) -> None:
        """Throttle request bodies from now on (``None``: full speed)."""
        self.recorder.bytes_per_second = bytes_per_second

    @property
    def endpoint(self) -> str:
        return self.base + "/files"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @staticmethod
    def upload_id(upload_url: str) -> str:
        return upload_url.rstrip("/").rsplit("/", 1)[1]

    def stored(self, upload_url: str) -> bytes:
        """The bytes the server holds for an upload, up to its recorded offset."""
        upload_id = self.upload_id(upload_url)
        info = self.store.get(upload_id)
        return self.store.data_path(upload_id).read_bytes()[: info.offset]

    def upload_ids(self) -> list[str]:
        return sorted(info.id for info in self.store.list_uploads())

    def exists(self, upload_url: str) -> bool:
        try:
            self.store.get(self.upload_id(upload_url))
        except TusError:
            return False
        return True


def _status_stand_in(app: FastAPI, store: LocalUploadStore) -> None:
    """``GET /api/v1/uploads/{id}`` in the real app's JSON shape, from the upload alone:
    complete + ``filetype`` video/* → ready, complete otherwise → failed. Replaced by the
    real route (which probes, archives and catalogues) when the tests move to the app."""

    @app.get("/api/v1/uploads/{upload_id}")
    def upload_status(upload_id: str) -> JSONResponse:
        try:
            info = store.get(upload_id)
        except TusError:
            body = {"error": {"code": "NOT_FOUND", "message": "no such upload"}}
            return JSONResponse(body, status_code=404)
        complete = info.length is not None and info.offset == info.length
        is_video = (info.metadata.get("filetype") or "").startswith("video/")
        state = "receiving" if not complete else "ready" if is_video else "failed"
        error = None
        if state == "failed":
            error = {"code": "NOT_A_VIDEO", "message": "the file is not a video"}
        return JSONResponse(
            {
                "id": info.id,
                "offset": info.offset,
                "length": info.length,
                "state": state,
                "video_id": f"v{info.id[:12]}" if state == "ready" else None,
                "error": error,
            }
        )


@contextlib.contextmanager
def serve_ingest(root: Path, *, bytes_per_second: int | None = None) -> Iterator[IngestServer]:
    """A server with tus at ``/files``, the admin pages and the upload status route.

    Today: a bare app over a :class:`LocalUploadStore` in ``root`` (no auth, so any token
    passes; no concatenation yet). To move to the real app, build it with
    ``create_app(container)`` over a container whose data dir is ``root``, wrap it in
    :class:`RecordingMiddleware` the same way, and return an :class:`IngestServer` with the
    app's admin token and a ``store`` reading the app's upload folder.
    """
    store = LocalUploadStore(root / "uploads")
    caps = Capabilities(
        creation=True,
        creation_with_upload=True,
        creation_defer_length=True,
        termination=True,
        max_size=MAX_UPLOAD,
    )
    app = FastAPI()
    errors.install(app)
    app.include_router(build_tus_router(store, caps))
    app.include_router(build_admin_pages_router())
    _status_stand_in(app, store)
    recorder = RecordingMiddleware(app, [], bytes_per_second)
    with serve_asgi(recorder) as base:
        yield IngestServer(base=base, store=store, token="e2e-token-0123456789", recorder=recorder)


@pytest.fixture
def ingest_server(tmp_path: Path) -> Iterator[IngestServer]:
    with serve_ingest(tmp_path) as server:
        yield server
