"""`hybridvideo migrate` on the command line: dry run, bad input, status (no Stream needed).

Real runs of the command (against an engine, killed and rerun) are in
tests/e2e/test_migrate_kill.py; the batch itself in tests/unit/migrate/.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hybridvideo.cli.main import app
from hybridvideo.config import load_settings
from hybridvideo.container import build_container
from tests.masters import add_tiny_master

runner = CliRunner()


def hv(data_dir: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, [*args, "--data-dir", str(data_dir)])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def catalog_with_videos(data_dir: Path) -> Path:
    container = build_container(load_settings(data_dir=data_dir))
    try:
        for n in range(3):
            add_tiny_master(container.catalog, container.archive, n, duration=120.0)
        add_tiny_master(container.catalog, container.archive, 9, collection="inbound")
    finally:
        container.close()
    return data_dir


def test_dry_run_prints_minutes_and_cost_and_writes_the_json(
    catalog_with_videos: Path, tmp_path: Path
) -> None:
    report = tmp_path / "plan.json"
    code, out, _ = hv(
        catalog_with_videos, "migrate", "--dry-run", "--collection", "work", "--json", str(report)
    )
    assert code == 0, out
    assert "dry run: nothing sent" in out and "$0.03 / month" in out
    plan = json.loads(report.read_text())
    assert plan["videos"] == 3 and plan["minutes"] == 6.0
    assert plan["storage_usd_per_month"] == 0.03 and len(plan["sample"]) == 3
    code, out, _ = hv(catalog_with_videos, "migrate", "status")
    assert code == 0 and "no migration runs yet" in out  # a dry run records nothing


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--status", "READY"], "a migration sends videos that are"),
        (["--status", "nope"], "--status: 'nope' is not one of"),
        (["--created-after", "yesterday"], "is not an ISO 8601 date"),
        (["--created-after", "2025-02-01", "--created-before", "2025-01-01"], "earlier than"),
        (["--collection", "Bad Name"], "collection may contain only"),
        (["--prefix", "../up"], "path segment"),
        (["--resume", "some-run", "--collection", "work"], "--resume runs with the run's own"),
        (["--dry-run", "--resume", "some-run"], "do not go together"),
        (["--concurrency", "0"], "--concurrency"),
    ],
)
def test_bad_input_is_a_clear_error_and_sends_nothing(
    catalog_with_videos: Path, args: list[str], message: str
) -> None:
    code, out, err = hv(catalog_with_videos, "migrate", *args)
    assert code != 0
    assert message in out + err
    assert "Traceback" not in out + err
    code, out, _ = hv(catalog_with_videos, "migrate", "status", "--json")
    assert json.loads(out)["runs"] == []


def test_resuming_an_unknown_run_says_so(catalog_with_videos: Path) -> None:
    code, out, err = hv(catalog_with_videos, "migrate", "--resume", "0" * 36)
    assert code == 1 and "not found" in err


def test_status_of_an_unknown_run(catalog_with_videos: Path) -> None:
    code, _, err = hv(catalog_with_videos, "migrate", "status", "nope")
    assert code == 1 and "migration run nope not found" in err
