"""tus metrics: the calls move the right series, and /metrics exposes them parseably."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from hybridvideo.api.routers.metrics import build_metrics_router
from hybridvideo.ingest.metrics import TusMetrics


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape(metrics: TusMetrics, accept: str | None = None) -> tuple[str, str]:
    app = FastAPI()
    app.include_router(build_metrics_router(metrics.registry))
    with TestClient(app) as client:
        r = client.get("/metrics", headers={"Accept": accept} if accept else {})
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    return r.text, r.headers["content-type"]


def test_calls_move_the_series_and_the_exposition_shows_them() -> None:
    m = TusMetrics()
    for method in ("POST", "patch", "PATCH", "HEAD"):
        m.request(method)
    m.error(423)
    m.error(409)
    m.error(409)
    m.error(500)
    m.received(10)
    m.received(0)
    m.received(5)
    m.created()
    m.created()
    m.finished()
    m.terminated()
    with m.patch_timer():
        pass

    text, content_type = scrape(m)
    assert content_type.startswith("text/plain; version=0.0.4")
    got = samples(text)
    p = "hybridvideo_tus_"
    assert got[(p + "requests_total", (("method", "PATCH"),))] == 2
    assert got[(p + "requests_total", (("method", "POST"),))] == 1
    assert got[(p + "requests_total", (("method", "HEAD"),))] == 1
    assert got[(p + "errors_total", (("status", "409"),))] == 2
    assert got[(p + "errors_total", (("status", "423"),))] == 1
    assert got[(p + "errors_total", (("status", "500"),))] == 1
    assert 'hybridvideo_tus_errors_total{status="409"} 2.0' in text
    assert got[(p + "bytes_received_total", ())] == 15
    assert got[(p + "uploads_created_total", ())] == 2
    assert got[(p + "uploads_finished_total", ())] == 1
    assert got[(p + "uploads_terminated_total", ())] == 1
    assert got[(p + "open_connections", ())] == 0
    assert got[(p + "patch_duration_seconds_count", ())] == 1


def test_open_connections_follow_the_with_blocks() -> None:
    m = TusMetrics()
    key = ("hybridvideo_tus_open_connections", ())
    with m.connection():
        with m.connection():
            assert samples(scrape(m)[0])[key] == 2
        assert samples(scrape(m)[0])[key] == 1
    with pytest.raises(RuntimeError), m.connection():
        raise RuntimeError("the request failed")
    assert samples(scrape(m)[0])[key] == 0


def test_patch_durations_land_in_buckets() -> None:
    m = TusMetrics()
    with pytest.raises(ValueError), m.patch_timer():
        raise ValueError("a failed PATCH is timed too")
    got = samples(scrape(m)[0])
    name = "hybridvideo_tus_patch_duration_seconds"
    assert got[(name + "_count", ())] == 1
    assert got[(name + "_bucket", (("le", "0.01"),))] == 1  # a no-op is fast
    assert got[(name + "_bucket", (("le", "+Inf"),))] == 1


def test_hostile_label_values_are_bounded() -> None:
    m = TusMetrics()
    m.request("BREW")  # from X-HTTP-Method-Override, say
    m.request("x" * 500)
    m.error(999)
    m.error(42)
    got = samples(scrape(m)[0])
    assert got[("hybridvideo_tus_requests_total", (("method", "OTHER"),))] == 2
    assert got[("hybridvideo_tus_errors_total", (("status", "other"),))] == 2
    with pytest.raises(ValueError):
        m.received(-1)


def test_each_instance_has_its_own_registry() -> None:
    first, second = TusMetrics(), TusMetrics()  # two apps in one process: no clash
    first.created()
    assert samples(scrape(first)[0])[("hybridvideo_tus_uploads_created_total", ())] == 1
    assert samples(scrape(second)[0])[("hybridvideo_tus_uploads_created_total", ())] == 0
    assert REGISTRY.get_sample_value("hybridvideo_tus_uploads_created_total") is None


def test_openmetrics_on_request() -> None:
    m = TusMetrics()
    m.finished()
    text, content_type = scrape(m, accept="application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert text.rstrip().endswith("# EOF")
    assert "hybridvideo_tus_uploads_finished_total 1.0" in text
