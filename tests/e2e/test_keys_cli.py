"""`hybridvideo keys create/revoke` against a running engine, through the Stream client."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from hybridvideo.api.app import create_app
from hybridvideo.cli.main import app
from hybridvideo.config import load_settings
from hybridvideo.container import build_container
from hybridvideo.stream.tokens import SigningKey, sign_token, verify_token
from tests.cli_runner import invoke
from tests.services import free_port, serve_asgi

pytestmark = pytest.mark.slow


def test_keys_create_store_print_and_revoke(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    data = tmp_path / "data"
    monkeypatch.setenv("HYBRIDVIDEO_PUBLIC_URL", f"http://127.0.0.1:{port}")
    container = build_container(load_settings(data_dir=data), serving=True)
    assert container.engine is not None
    try:
        with serve_asgi(create_app(container, run_worker=False), port=port):
            made = invoke(app, ["keys", "create", "--data-dir", str(data)])
            assert made.exit_code == 0, made.stderr
            stored = json.loads((data / "signing-key.json").read_text())
            assert (data / "signing-key.json").stat().st_mode & 0o777 == 0o600
            key = SigningKey.from_pem_b64(stored["id"], stored["pem"])
            live = container.engine.store.live_public_keys(container.engine.account_id)
            assert stored["id"] in live
            verify_token(sign_token(key, "a" * 32), keys=live)

            again = invoke(app, ["keys", "create", "--data-dir", str(data)])
            assert again.exit_code == 1 and "--force" in again.stderr

            printed = invoke(app, ["keys", "create", "--print", "--data-dir", str(data)])
            assert printed.exit_code == 0
            lines = dict(line.split("=", 1) for line in printed.stdout.split())
            assert SigningKey.from_pem_b64(
                lines["HYBRIDVIDEO_STREAM_SIGNING_KEY_ID"], lines["HYBRIDVIDEO_STREAM_SIGNING_KEY"]
            )

            # doctor reaches the Stream API the client is pointed at, and says when it can't.
            monkeypatch.setenv("HYBRIDVIDEO_STREAM_API_URL", f"http://127.0.0.1:{port}/client/v4")
            doctor = invoke(app, ["doctor", "--data-dir", str(data)])
            assert doctor.exit_code == 0, doctor.stdout
            assert "video(s) stored" in doctor.stdout
            monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", container.engine.account_id)
            monkeypatch.setenv("CLOUDFLARE_STREAM_TOKEN", "wrong-token-wrong-token")
            doctor = invoke(app, ["doctor", "--data-dir", str(data)])
            assert doctor.exit_code == 1 and "CLOUDFLARE_STREAM_TOKEN" in doctor.stdout
            for name in (
                "HYBRIDVIDEO_STREAM_API_URL",
                "CLOUDFLARE_ACCOUNT_ID",
                "CLOUDFLARE_STREAM_TOKEN",
            ):
                monkeypatch.delenv(name)

            revoked = invoke(app, ["keys", "revoke", stored["id"], "--data-dir", str(data)])
            assert revoked.exit_code == 0
            assert stored["id"] not in container.engine.store.live_public_keys(
                container.engine.account_id
            )
            bad = invoke(app, ["keys", "revoke", "f" * 32, "--data-dir", str(data)])
            assert bad.exit_code == 1 and "not found" in bad.stderr.lower()
        # With the engine down the command says so instead of a traceback.
        down = invoke(app, ["keys", "create", "--force", "--data-dir", str(data)])
        assert down.exit_code == 1 and "cannot reach" in down.stderr
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/healthz")
    finally:
        container.close()
