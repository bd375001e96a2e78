"""A real engine on loopback for the rate-limit, fault and accept-only tests.

The app is what ``hybridvideo serve`` (or, with ``engine_only``, ``hybridvideo engine``)
runs: ``create_app`` over a container built from settings, served by uvicorn in a thread.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hybridvideo.api.app import create_app
from hybridvideo.config import load_settings
from hybridvideo.container import Container, build_container
from hybridvideo.engine.models import VideoQuery
from hybridvideo.engine.runtime import EngineRuntime
from hybridvideo.stream.cloudflare import CloudflareStream
from tests.services import free_port, serve_asgi


@dataclass
class EngineServer:
    base: str
    container: Container

    @property
    def rt(self) -> EngineRuntime:
        assert self.container.engine is not None
        return self.container.engine

    @property
    def api(self) -> str:
        return f"{self.base}/client/v4/accounts/{self.rt.account_id}/stream"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.rt.api_token}"}

    def stream(self, timeout: float = 5.0) -> CloudflareStream:
        """Our Stream client, with no retries of its own: every failure reaches the test."""
        return CloudflareStream(
            account_id=self.rt.account_id,
            api_token=self.rt.api_token,
            base_url=f"{self.base}/client/v4",
            max_retries=0,
            timeout=timeout,
        )

    def stored_uids(self) -> list[str]:
        """What the engine holds, read from its store (no API request, so no fault)."""
        return [v.uid for v in self.rt.store.list_videos(self.rt.account_id, VideoQuery())]


@contextlib.contextmanager
def engine_server(
    tmp_path: Path, *, engine_only: bool = False, run_worker: bool = False, **settings: Any
) -> Iterator[EngineServer]:
    port = free_port()
    config = load_settings(
        data_dir=tmp_path / "data",
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        engine=True,
        **settings,
    )
    container = build_container(config, serving=True)
    try:
        app = create_app(container, run_worker=run_worker, engine_only=engine_only)
        with serve_asgi(app, port=port) as base:
            yield EngineServer(base, container)
    finally:
        container.close()


@dataclass
class HookReceiver:
    """An app's webhook endpoint: records each body and its signature."""

    received: list[tuple[bytes, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        with self.lock:
            self.received.append((body, request.headers.get("webhook-signature", "")))
        return Response(status_code=200)


@contextlib.contextmanager
def hook_receiver() -> Iterator[tuple[str, HookReceiver]]:
    receiver = HookReceiver()
    app = Starlette(routes=[Route("/hook", receiver.hook, methods=["POST"])])
    with serve_asgi(app) as url:
        yield f"{url}/hook", receiver


def seed_for(pattern: Sequence[bool], rate: float) -> int:
    """A seed whose first draws fault exactly where ``pattern`` says (one draw a request)."""
    for seed in range(100_000):
        rng = random.Random(seed)
        if all((rng.random() < rate) == want for want in pattern):
            return seed
    raise AssertionError("no seed found")
