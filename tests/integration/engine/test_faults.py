"""Fault injection on a real engine: what each fault looks like to our Stream client.

Each test serves the app on loopback and sends real requests; the seed is chosen so the
first control-API request gets the fault and the second does not, so a ``list`` through
the same API then shows whether the faulted copy made a video.
"""

from __future__ import annotations

import logging
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from hybridvideo.config import load_settings
from hybridvideo.container import build_container
from hybridvideo.errors import BackendUnavailable, ConfigurationError
from hybridvideo.stream.base import RateLimited
from tests.integration.engine.modes import EngineServer, engine_server, seed_for

SOURCE = "http://127.0.0.1:9/masters/clip.mp4"  # never fetched: no worker runs here
HOLD = 3.0
#: Only the timeout case waits less than HOLD; every other case waits long enough that a
#: loaded CI machine never turns a 500 or a cut connection into a timeout.
CLIENT_TIMEOUT = 2.0
PATIENT = 20.0
FIRST_ONLY = [True, False, False]


def faulty(tmp_path: Path, kind: str, **settings: Any) -> AbstractContextManager[EngineServer]:
    seed = seed_for(FIRST_ONLY, 0.5)
    spec = f"{kind}=0.5,seed={seed},retry_after=2,hold={HOLD}"
    return engine_server(tmp_path, engine_faults=spec, **settings)


def copy_listed(server: EngineServer) -> list[str]:
    """The videos the API lists (the second request: no fault)."""
    return [v.uid for v in server.stream(timeout=PATIENT).list()]


def test_429_is_refused_before_anything_happens(tmp_path: Path) -> None:
    with faulty(tmp_path, "429") as server:
        with pytest.raises(RateLimited) as caught:
            server.stream(timeout=PATIENT).copy_from_url(SOURCE, name="a")
        assert caught.value.retry_after == 2.0
        assert copy_listed(server) == []


def test_429_carries_cloudflares_body_and_retry_after(tmp_path: Path) -> None:
    with faulty(tmp_path, "429") as server:
        answer = httpx.post(f"{server.api}/copy", json={"url": SOURCE}, headers=server.auth)
        assert answer.status_code == 429 and answer.headers["retry-after"] == "2"
        body = answer.json()
        assert body["success"] is False and body["result"] is None
        assert body["errors"][0]["code"] == 971


def test_500_is_refused_before_anything_happens(tmp_path: Path) -> None:
    with faulty(tmp_path, "500") as server:
        with pytest.raises(BackendUnavailable) as caught:
            server.stream(timeout=PATIENT).copy_from_url(SOURCE, name="a")
        assert not isinstance(caught.value, RateLimited)
        assert "answered 500" in caught.value.message
        assert copy_listed(server) == []


@pytest.mark.parametrize("engine_only", [False, True], ids=["serve", "engine"])
def test_500_after_makes_the_video_and_loses_the_answer(tmp_path: Path, engine_only: bool) -> None:
    with faulty(tmp_path, "500after", engine_only=engine_only) as server:
        with pytest.raises(BackendUnavailable) as caught:
            server.stream(timeout=PATIENT).copy_from_url(SOURCE, name="a")
        assert "answered 500" in caught.value.message
        listed = copy_listed(server)
        assert len(listed) == 1 and listed == server.stored_uids()


def test_timeout_makes_the_video_and_holds_the_answer(tmp_path: Path) -> None:
    with faulty(tmp_path, "timeout") as server:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable) as caught:
            server.stream(timeout=CLIENT_TIMEOUT).copy_from_url(SOURCE, name="a")
        assert time.monotonic() - started < HOLD  # the client gave up, the server held on
        assert not isinstance(caught.value, RateLimited)
        assert "cannot reach" in caught.value.message
        assert "timed out" in (caught.value.detail or "").lower()
        assert len(copy_listed(server)) == 1


def test_a_held_answer_does_arrive_for_a_patient_client(tmp_path: Path) -> None:
    with faulty(tmp_path, "timeout") as server:
        started = time.monotonic()
        made = server.stream(timeout=HOLD * 4).copy_from_url(SOURCE, name="a")
        assert time.monotonic() - started >= HOLD
        assert made.state == "downloading" and server.stored_uids() == [made.uid]


def test_drop_makes_the_video_and_cuts_the_connection(tmp_path: Path) -> None:
    with faulty(tmp_path, "drop") as server:
        with pytest.raises(BackendUnavailable) as caught:
            server.stream(timeout=PATIENT).copy_from_url(SOURCE, name="a")
        assert not isinstance(caught.value, RateLimited)
        assert "cannot reach" in caught.value.message
        assert "timed out" not in (caught.value.detail or "").lower()  # cut, not held
        assert len(copy_listed(server)) == 1


def test_a_dropped_answer_is_a_broken_connection_not_an_error_status(tmp_path: Path) -> None:
    with faulty(tmp_path, "drop") as server, httpx.Client(timeout=5) as http:
        request = http.build_request(
            "POST", f"{server.api}/copy", json={"url": SOURCE}, headers=server.auth
        )
        response = http.send(request, stream=True)
        assert response.status_code == 200  # the start went out...
        announced = int(response.headers["content-length"])
        with pytest.raises(httpx.RemoteProtocolError):  # ...then the body was cut short
            response.read()
        response.close()
        assert announced > 0
        assert http.get(server.api, headers=server.auth).status_code == 200  # a new socket


def test_every_fault_is_logged_and_the_mode_announced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with faulty(tmp_path, "500after") as server:
        answer = httpx.post(f"{server.api}/copy", json={"url": SOURCE}, headers=server.auth)
        assert answer.status_code == 500
    announced = [r for r in caplog.records if "FAULT INJECTION IS ON" in r.getMessage()]
    assert announced and announced[0].levelno == logging.WARNING
    assert "500after=0.5" in announced[0].__dict__["faults"]
    faults = [r for r in caplog.records if r.name == "hybridvideo.engine.faults"]
    assert [(r.__dict__["fault"], r.__dict__["method"]) for r in faults] == [("500after", "POST")]
    assert faults[0].__dict__["path"].endswith("/stream/copy")
    assert faults[0].__dict__["request_id"]


def test_other_routes_are_never_faulted(tmp_path: Path) -> None:
    with engine_server(tmp_path, engine_faults="500=1") as server:
        assert httpx.get(f"{server.base}/healthz").status_code == 200
        missing = httpx.get(f"{server.base}/delivery/{'0' * 32}/manifest/video.m3u8")
        assert missing.status_code == 404
        assert httpx.get(server.api, headers=server.auth).status_code == 500


def test_a_bad_spec_stops_the_start_naming_the_part(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path / "data", engine=True, engine_faults="500=0.1,oops=2"
    )
    with pytest.raises(ConfigurationError) as caught:
        build_container(settings, serving=True)
    assert "HYBRIDVIDEO_ENGINE_FAULTS" in caught.value.message
    assert "'oops=2'" in caught.value.message
