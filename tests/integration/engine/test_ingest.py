"""The ingest job on its own: states in Cloudflare's order, early first rung, idempotence."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from hybridvideo.engine.runtime import EngineRuntime
from hybridvideo.engine.store import EngineStore
from hybridvideo.jobs.engine_ingest import ingest
from hybridvideo.media.testclip import make_test_clip
from tests.integration.engine.runtime import engine_runtime
from tests.services import serve_asgi

ACCOUNT = "b" * 32


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("origin")
    make_test_clip(root / "clip.mp4", seconds=2, size="320x180")

    async def file(request: Request) -> Response:
        path = root / request.path_params["name"]
        return FileResponse(path) if path.is_file() else Response(status_code=404)

    with serve_asgi(Starlette(routes=[Route("/{name}", file, methods=["GET", "HEAD"])])) as url:
        yield url


class Recording(EngineStore):
    """The real store, remembering every processing-state change in order."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def set_processing_state(self, uid: str, state: str, **kw: Any) -> Any:  # type: ignore[override]
        self.calls.append((state, kw))
        return super().set_processing_state(uid, state, **kw)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[EngineRuntime]:
    with engine_runtime(tmp_path, ACCOUNT, store_class=Recording, preset="ultrafast") as rt:
        yield rt


@pytest.mark.parametrize("early", [False, True])
def test_states_follow_cloudflare_with_either_strategy(
    runtime: EngineRuntime, origin: str, early: bool
) -> None:
    rt = dataclasses.replace(runtime, early_first_rung=early)
    store = rt.store
    assert isinstance(store, Recording)
    uid = store.create_video(ACCOUNT, source_url=f"{origin}/clip.mp4").uid
    assert ingest(rt, uid) == "ready"
    states = [s for s, _ in store.calls]
    assert states[:3] == ["downloading", "queued", "inprogress"] and states[-1] == "ready"
    playable_early = [
        kw for s, kw in store.calls if s == "inprogress" and kw.get("ready_to_stream")
    ]
    # Both strategies announce readyToStream before `ready` (one pass: when the whole
    # ladder is published; early: after the first rung, which test_encode checks).
    assert playable_early
    video = store.get_video(uid)
    assert video.ready_to_stream and video.duration == pytest.approx(2.0, abs=0.2)
    assert not (rt.video_dir(uid) / "source").exists()  # the master lives in the archive
    calls = len(store.calls)
    assert ingest(rt, uid) == "done" and len(store.calls) == calls  # a re-run changes nothing


def test_missing_source_is_a_fetch_error(runtime: EngineRuntime, origin: str) -> None:
    uid = runtime.store.create_video(ACCOUNT, source_url=f"{origin}/absent.mp4").uid
    assert ingest(runtime, uid) == "error"
    video = runtime.store.get_video(uid)
    assert video.error_reason_code == "ERR_FETCH_ORIGIN_ERROR" and not video.ready_to_stream
