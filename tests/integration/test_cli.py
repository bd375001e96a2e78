from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hybridvideo.cli.main import app
from hybridvideo.config import load_settings
from hybridvideo.container import build_container

runner = CliRunner()


def hv(data_dir: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, [*args, "--data-dir", str(data_dir)])
    return result.exit_code, result.stdout, result.stderr


def test_add_list_show(data_dir: Path, sample_video: Path) -> None:
    code, out, _ = hv(
        data_dir, "videos", "add", str(sample_video), "--title", "Intro", "--collection", "work"
    )
    assert code == 0, out
    assert out.startswith("added ")
    video_id = out.split()[1]

    code, out, _ = hv(data_dir, "videos", "list", "--json")
    assert code == 0
    listed = json.loads(out)
    assert listed["total"] == 1
    item = listed["items"][0]
    assert item["id"] == video_id and item["title"] == "Intro"
    assert item["spec"]["duration"] == pytest.approx(1.0, abs=0.1)
    assert len(item["spec"]["sha256"]) == 64

    code, out, _ = hv(data_dir, "videos", "list")
    assert code == 0 and video_id in out and item["spec"]["sha256"] in out

    code, out, _ = hv(data_dir, "videos", "show", video_id, "--json")
    assert code == 0 and json.loads(out) == item

    # The same master again is reported, not duplicated.
    code, out, _ = hv(data_dir, "videos", "add", str(sample_video))
    assert code == 0 and out.startswith(f"already in the catalog as {video_id}")
    assert json.loads(hv(data_dir, "videos", "list", "--json")[1])["total"] == 1


def test_a_non_video_is_refused_and_nothing_is_stored(data_dir: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("definitely not a video\n" * 50)
    code, _, err = hv(data_dir, "videos", "add", str(bogus))
    assert code == 1
    assert "notes.mp4: not a video file" in err
    archive = data_dir / "archive"
    stored = [p for p in archive.rglob("*") if p.is_file() and ".tmp" not in p.parts]
    assert stored == []
    assert json.loads(hv(data_dir, "videos", "list", "--json")[1])["total"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--collection", "Not Valid"], "collection may contain only"),
        (["--title", "   "], "title must be"),
    ],
)
def test_bad_options_are_refused(
    data_dir: Path, sample_video: Path, args: list[str], message: str
) -> None:
    code, _, err = hv(data_dir, "videos", "add", str(sample_video), *args)
    assert code == 1 and message in err
    assert json.loads(hv(data_dir, "videos", "list", "--json")[1])["total"] == 0


def test_show_unknown_video(data_dir: Path) -> None:
    code, _, err = hv(data_dir, "videos", "show", "nope")
    assert code == 1 and "not found" in err.lower()


def test_invalid_setting_names_the_variable(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYBRIDVIDEO_WORKER_CONCURRENCY", "lots")
    code, _, err = hv(data_dir, "videos", "list")
    assert code == 2
    assert "HYBRIDVIDEO_WORKER_CONCURRENCY" in err


def test_db_upgrade_and_doctor(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = hv(data_dir, "doctor")
    assert code == 1 and "db upgrade" in out  # fresh data dir: catalog not migrated yet
    code, out, _ = hv(data_dir, "db", "upgrade")
    assert code == 0 and "catalog at revision" in out
    code, out, _ = hv(data_dir, "doctor")
    assert code == 0, out
    for part in ("catalog", "archive", "queue", "ffmpeg", "stream"):
        assert part in out
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    code, out, _ = hv(data_dir, "doctor")
    assert code == 1 and "FAIL" in out


def test_verify_detects_a_changed_master(data_dir: Path, sample_video: Path) -> None:
    video_id = hv(data_dir, "videos", "add", str(sample_video))[1].split()[1]
    code, out, _ = hv(data_dir, "videos", "verify", video_id, "--now")
    assert code == 0 and "matches" in out
    container = build_container(load_settings(data_dir=data_dir))
    key = container.catalog.get_video(video_id).spec.archive_key
    (data_dir / "archive" / key).write_bytes(b"bit rot")
    code, _, err = hv(data_dir, "videos", "verify", video_id, "--now")
    assert code == 1 and "does not match" in err
    kinds = [e.kind for e in container.catalog.events(video_id)]
    assert kinds[-2:] == ["master_verified", "master_mismatch"]
    container.close()


def test_testclip_writes_a_video_that_can_be_added(data_dir: Path, tmp_path: Path) -> None:
    clip = tmp_path / "demo.mp4"
    made = runner.invoke(app, ["testclip", str(clip), "--seconds", "2", "--size", "96x64"])
    assert made.exit_code == 0 and "wrote" in made.stderr
    code, out, _ = hv(data_dir, "videos", "add", str(clip))
    assert code == 0
    shown = json.loads(hv(data_dir, "videos", "show", out.split()[1], "--json")[1])
    assert (shown["spec"]["width"], shown["spec"]["height"]) == (96, 64)
    assert shown["spec"]["duration"] == pytest.approx(2.0, abs=0.1)
    bad = runner.invoke(app, ["testclip", str(clip), "--size", "huge"])
    assert bad.exit_code == 1 and "size must look like" in bad.stderr


def test_doctor_only_looks(tmp_path: Path) -> None:
    fresh = tmp_path / "never-created"
    code, out, _ = hv(fresh, "doctor")
    assert code == 1 and "db upgrade" in out
    assert not fresh.exists()


def test_commands_other_than_serve_make_no_admin_token(data_dir: Path) -> None:
    assert hv(data_dir, "videos", "list")[0] == 0
    assert not (data_dir / "admin-token").exists()
    assert (data_dir.stat().st_mode & 0o777) == 0o700


def test_an_explicit_archive_dir_that_is_missing_is_not_created(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sample_video: Path
) -> None:
    unmounted = tmp_path / "nas" / "archive"
    monkeypatch.setenv("HYBRIDVIDEO_ARCHIVE_DIR", str(unmounted))
    code, out, _ = hv(data_dir, "doctor")
    assert code == 1 and "archive" in out
    code, _, err = hv(data_dir, "videos", "add", str(sample_video))
    assert code == 1
    assert not unmounted.exists()


def test_huge_offsets_are_refused(data_dir: Path) -> None:
    code, _, err = hv(data_dir, "videos", "list", "--offset", "99999999999999999999")
    assert code != 0 and "Traceback" not in err
