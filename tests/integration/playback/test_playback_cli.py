"""``hybridvideo playback url VIDEO --user U`` on an embedded data dir."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import typer
from typer.testing import CliRunner

from hybridvideo.cli import playback as playback_cli
from hybridvideo.config import load_settings
from hybridvideo.container import build_container
from hybridvideo.domain.video import MediaInfo, NewVideo, StreamStatus
from hybridvideo.stream.tokens import SigningKey, verify_token

runner = CliRunner()


def cli() -> typer.Typer:
    app = typer.Typer()
    playback_cli.register(app)

    @app.callback()
    def _root() -> None:
        """hybridvideo (test root)."""

    return app


def ready_video(data_dir: Path, *, owner: str | None, status: StreamStatus) -> str:
    container = build_container(load_settings(data_dir=data_dir))
    try:
        n = uuid.uuid4().hex
        video = container.catalog.add_video(
            NewVideo(
                title="clip",
                collection="work",
                archive_bucket="masters",
                archive_key=f"videos/{n}.mp4",
                media=MediaInfo(10, hashlib.sha256(n.encode()).hexdigest(), "mp4", 1.0, 16, 9),
                owner_id=owner,
            )
        )
        container.catalog.set_stream_status(video.id, StreamStatus.PROCESSING, stream_uid=n)
        for step in {
            StreamStatus.READY: [StreamStatus.READY],
            StreamStatus.EVICTED: [StreamStatus.READY, StreamStatus.EVICTED],
            StreamStatus.PROCESSING: [],
        }[status]:
            container.catalog.set_stream_status(video.id, step)
        return video.id
    finally:
        container.close()


def test_playback_url_for_a_user(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    key = SigningKey.generate()
    (data_dir / "signing-key.json").write_text(json.dumps(key.to_cloudflare()))
    video_id = ready_video(data_dir, owner="alice", status=StreamStatus.READY)
    args = ["playback", "url", video_id, "--data-dir", str(data_dir)]

    result = runner.invoke(cli(), [*args, "--user", "alice"])
    assert result.exit_code == 0, result.output
    url = result.stdout.strip()
    assert url.startswith("http://127.0.0.1:8787/delivery/") and url.endswith("/video.m3u8")
    token = url.split("/")[-3]
    assert verify_token(token, keys={key.id: key.public_key}).uid

    refused = runner.invoke(cli(), [*args, "--user", "bob"])
    assert refused.exit_code == 1 and "may not play" in refused.stderr
    forced = runner.invoke(cli(), [*args, "--user", "bob", "--as-admin", "--json"])
    assert forced.exit_code == 0, forced.output
    assert set(json.loads(forced.stdout)) >= {"streamUid", "token", "hls", "poster"}


def test_playback_url_not_ready_and_evicted(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "signing-key.json").write_text(json.dumps(SigningKey.generate().to_cloudflare()))
    busy = ready_video(data_dir, owner="alice", status=StreamStatus.PROCESSING)
    gone = ready_video(data_dir, owner="alice", status=StreamStatus.EVICTED)
    base = ["playback", "url", "--user", "alice", "--data-dir", str(data_dir)]
    result = runner.invoke(cli(), [*base[:2], busy, *base[2:]])
    assert result.exit_code == 1 and "PROCESSING" in result.stderr
    result = runner.invoke(cli(), [*base[:2], gone, *base[2:]])
    assert result.exit_code == 3 and "re-import" in result.stderr
