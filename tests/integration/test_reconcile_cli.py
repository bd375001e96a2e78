"""``hybridvideo reconcile`` against a real server: the app with its embedded engine on
loopback (uvicorn), the SQLite catalog and local archive in a data dir, and the CLI on the
same data dir talking to that engine over HTTP, as an operator's cron job would.

No worker runs, so copies stay ``downloading`` until the test records what the engine's
ingest would (``ready``); everything else is the real API.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from hybridvideo.api.app import create_app
from hybridvideo.cli import main as cli_main
from hybridvideo.cli.reconcile import register
from hybridvideo.config import load_settings
from hybridvideo.container import Container, build_container
from hybridvideo.delivery.service import VIDEO_ID_META
from hybridvideo.domain.video import StreamStatus, VideoState
from tests.cli_runner import invoke
from tests.services import free_port, serve_asgi

S = StreamStatus
runner = CliRunner()


def cli_app() -> typer.Typer:
    """``hybridvideo`` itself once ``reconcile`` is wired into it; until then, the same
    command registered on an app of its own."""
    if any(c.name == "reconcile" for c in cli_main.app.registered_commands):
        return cli_main.app
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """hybridvideo (reconcile only)"""

    register(app)
    return app


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Container]:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("HYBRIDVIDEO_PUBLIC_URL", public)  # the CLI's Stream client URL
    container = build_container(
        load_settings(data_dir=tmp_path / "data", public_url=public), serving=True
    )
    assert container.engine is not None  # embedded defaults: the engine is served here
    with serve_asgi(create_app(container, run_worker=False), port=port):
        yield container
    container.close()


def reconcile(container: Container, tmp_path: Path, *args: str) -> tuple[int, str, dict[str, Any]]:
    report = tmp_path / f"report-{len(list(tmp_path.glob('report-*')))}.json"
    data_dir = str(container.settings.data_dir)
    result = invoke(cli_app(), ["reconcile", *args, "--json", str(report), "--data-dir", data_dir])
    document = json.loads(report.read_text()) if report.exists() else {}
    return result.exit_code, result.stdout + result.stderr, document


def add(container: Container, sample_video: Path, tmp_path: Path, n: int) -> VideoState:
    clip = tmp_path / f"clip{n}.mp4"
    clip.write_bytes(sample_video.read_bytes() + b"\0" * (n + 1))
    return container.videos.add_file(clip, title=f"clip {n}").video


def finish(container: Container, uid: str) -> None:
    """What the engine's ingest job records when a copy is encoded."""
    assert container.engine is not None
    container.engine.store.set_processing_state(
        uid, "ready", ready_to_stream=True, duration=1.0, width=160, height=90, size=999
    )


def test_reconcile_reports_then_repairs_then_finds_nothing(
    served: Container, sample_video: Path, tmp_path: Path
) -> None:
    c = served
    fine, stuck, gone = (add(c, sample_video, tmp_path, n) for n in range(3))
    for video in (fine, gone):
        uid = c.delivery.deliver(video.id).spec.stream_uid or ""
        finish(c, uid)
        c.delivery.apply_stream_update(c.stream.get(uid))
    stuck_uid = c.delivery.deliver(stuck.id).spec.stream_uid or ""
    finish(c, stuck_uid)  # the webhook that would say so is lost
    gone_uid = c.catalog.get_video(gone.id).spec.stream_uid or ""
    c.stream.delete(gone_uid)  # deleted behind the catalog's back
    source = "http://127.0.0.1:9/leftover.mp4"
    duplicate = c.stream.copy_from_url(source, meta={VIDEO_ID_META: fine.id}).uid
    stranger = c.stream.copy_from_url(source, meta={"name": "another system's"}).uid

    # Report only: the missing copy is a problem; the stuck one is too recent to count and
    # the orphans are inside the grace period.
    code, output, report = reconcile(c, tmp_path)
    assert code == 1, output
    assert "1 problem(s) left" in output and "--fix-missing" in output
    assert report["consistent"] is False and report["complete"] is True
    assert [(f["uid"], f["video_id"]) for f in report["missing"]] == [(gone_uid, gone.id)]
    assert report["stuck"] == []
    orphans = {f["uid"]: f for f in report["orphans"]}
    assert orphans[duplicate]["kind"] == "duplicate" and orphans[stranger]["kind"] == "foreign"
    assert not any(f["problem"] for f in report["orphans"])
    assert report["counts"]["stream_videos"] == 4 and report["counts"]["catalog_copies"] == 3
    assert report["requests"] == {
        "list": 1,
        "get": 1,
        "delete": 0,
        "total": 2,
        "listing_pages": 1,
    }
    assert c.catalog.get_video(gone.id).spec.stream_status is S.READY  # nothing changed
    assert c.catalog.get_video(stuck.id).spec.stream_status is S.PROCESSING

    # Repair: stuck settled from the listing, missing recorded, our duplicate deleted.
    code, output, report = reconcile(
        c,
        tmp_path,
        "--stuck-after",
        "0",
        "--fix-missing",
        "--delete-orphans",
        "--grace-minutes",
        "0",
    )
    assert code == 0, output
    assert "consistent" in output
    assert report["changes"] == {"applied": 1, "recorded_error": 1, "deleted": 1}
    assert [(f["uid"], f["action"]) for f in report["stuck"]] == [(stuck_uid, "applied")]
    assert [(f["uid"], f["action"]) for f in report["missing"]] == [(gone_uid, "recorded_error")]
    assert {f["uid"]: f["action"] for f in report["orphans"]} == {
        duplicate: "deleted",
        stranger: "none",  # foreign: only --include-foreign deletes it
    }
    assert report["options"]["grace_seconds"] == 0.0
    assert c.catalog.get_video(stuck.id).spec.stream_status is S.READY
    missing = c.catalog.get_video(gone.id).spec
    assert missing.stream_status is S.ERROR and "no longer has" in (missing.stream_error or "")
    listed = {v.uid for v in c.stream.list()}
    assert duplicate not in listed and stranger in listed
    assert c.catalog.get_video(fine.id).spec.stream_status is S.READY

    # Again: nothing left to do.
    code, output, report = reconcile(
        c, tmp_path, "--stuck-after", "0", "--fix-missing", "--delete-orphans"
    )
    assert code == 0, output
    assert report["changes"] == {"applied": 0, "recorded_error": 0, "deleted": 0}
    assert report["stuck"] == [] and report["missing"] == []
    assert [f["kind"] for f in report["orphans"]] == ["foreign"]
    assert report["requests"]["total"] == 1


def test_include_foreign_needs_delete_orphans(served: Container, tmp_path: Path) -> None:
    code, output, report = reconcile(served, tmp_path, "--include-foreign")
    assert code == 2 and "--delete-orphans" in output
    assert report == {}


def test_help_warns_about_foreign_deletion_and_documents_exit_codes() -> None:
    result = runner.invoke(cli_app(), ["reconcile", "--help"])
    assert result.exit_code == 0
    assert "DANGEROUS" in result.stdout and "Exit codes" in result.stdout
