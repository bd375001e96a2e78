"""Real clients for end-to-end tests: Chromium (Debian's, driven by Playwright), Node with
tus-js-client from ``web/node_modules``, and an ingest server on loopback for them to hit.

Missing tools skip with the reason and the fix, or fail when ``CI=true`` (CI installs
them), like :func:`tests.services.missing`.

Playwright never downloads a browser here: it drives the system Chromium through
``executable_path``. Its sync API runs its own event loop in the calling thread until it
is stopped, so each browser test gets a fresh Playwright (function scope) rather than one
left running under other tests of the same worker.

The ingest server is the real app (``create_app`` over an embedded container, with its
worker), so every upload goes all the way: tus, then the ``ingest.finish`` job (archive,
probe, catalog) that ``GET /api/v1/uploads/{id}`` reports on. Delivery is pointed at a
path of the app itself that does not exist, so nothing leaves the machine (see
:func:`ingest_settings`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest

from hybridvideo.api.app import create_app
from hybridvideo.api.routers.admin_pages import STATIC_DIR
from hybridvideo.config import Settings, load_settings
from hybridvideo.container import Container, build_container
from hybridvideo.ingest.tus.protocol import TusError
from hybridvideo.ingest.tus.store import LocalUploadStore, incoming_key
from tests.services import free_port, in_ci, serve_asgi

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
MAX_UPLOAD = 64 * 1024 * 1024  # the biggest test file is 48 MiB
#: How long an upload may take to get its outcome (archive, probe, thumbnail) once complete.
OUTCOME_TIMEOUT = 60.0

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
    """What a test needs to know about the server it uploads to (the real app)."""

    base: str
    container: Container
    token: str  # the admin token: typed into the upload page, sent as a bearer token
    recorder: RecordingMiddleware

    @property
    def store(self) -> LocalUploadStore:
        """The app's upload store (uploads' info, and their bytes while receiving)."""
        store = self.container.ingest.store
        assert isinstance(store, LocalUploadStore), store
        return store

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

    def api(self, path: str) -> dict[str, Any]:
        """``GET /api/v1/<path>`` as the admin; the JSON body of a 200."""
        response = httpx.get(f"{self.base}/api/v1/{path}", headers=self.headers, timeout=10)
        assert response.status_code == 200, (path, response.status_code, response.text)
        body: dict[str, Any] = response.json()
        return body

    def outcome(self, upload_url: str, timeout: float = OUTCOME_TIMEOUT) -> dict[str, Any]:
        """The upload's status (``GET /api/v1/uploads/{id}``) once it is ready or failed:
        the embedded worker's ``ingest.finish`` job has archived (and probed) it."""
        upload_id = self.upload_id(upload_url)
        deadline = time.monotonic() + timeout
        while True:
            status = self.api(f"uploads/{upload_id}")
            if status["state"] in ("ready", "failed"):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"upload {upload_id} has no outcome yet: {status}")
            time.sleep(0.05)

    def stored(self, upload_url: str) -> bytes:
        """The bytes the server holds for an upload: up to its recorded offset while it is
        receiving; once complete, the archive object it became (after its outcome: a
        video's master, or ``incoming/<id>`` for a file that is not one)."""
        upload_id = self.upload_id(upload_url)
        info = self.store.get(upload_id)
        if info.is_partial or not info.is_complete:
            return self.store.data_path(upload_id).read_bytes()[: info.offset]
        status = self.outcome(upload_url)
        if status["state"] == "ready":
            key = self.api(f"videos/{status['videoId']}")["spec"]["archiveKey"]
        else:
            key = incoming_key(upload_id)
        return b"".join(self.container.archive.open(key))

    def upload_ids(self) -> list[str]:
        return sorted(info.id for info in self.store.list_uploads())

    def exists(self, upload_url: str) -> bool:
        try:
            self.store.get(self.upload_id(upload_url))
        except TusError:
            return False
        return True


def ingest_settings(data_dir: Path, port: int) -> Settings:
    """Embedded settings whose delivery reaches nothing outside: no engine, and a "Stream
    API" at a path of this very app that does not exist. Its 404 makes a queued delivery
    fail at once (ERROR, no retry). A closed port would not do: the SDK retries a refused
    connection for ~15 s, holding a worker thread that shutdown then waits for."""
    public_url = f"http://127.0.0.1:{port}"
    return load_settings(
        data_dir=data_dir,
        port=port,
        public_url=public_url,
        engine=False,
        stream_api_url=f"{public_url}/no-stream-here/client/v4",
        cloudflare_account_id="a" * 32,
        cloudflare_stream_token="t" * 40,
        upload_max_size=MAX_UPLOAD,
    )


@contextlib.contextmanager
def serve_ingest(root: Path, *, bytes_per_second: int | None = None) -> Iterator[IngestServer]:
    """The real app (tus at ``/files``, the admin pages, the upload and video API, the
    embedded worker that finishes uploads) over a data dir in ``root``, on a real socket,
    behind :class:`RecordingMiddleware`."""
    port = free_port()
    container = build_container(ingest_settings(root / "data", port), serving=True)
    try:
        assert container.admin_token is not None
        app = create_app(container, run_worker=True)
        recorder = RecordingMiddleware(app, [], bytes_per_second)
        with serve_asgi(recorder, port=port) as base:
            yield IngestServer(
                base=base, container=container, token=container.admin_token, recorder=recorder
            )
    finally:
        container.close()


@pytest.fixture
def ingest_server(tmp_path: Path) -> Iterator[IngestServer]:
    with serve_ingest(tmp_path / "server") as server:
        yield server
