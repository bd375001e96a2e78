"""Where webhook secrets come from and how a rotation keeps the previous one."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hybridvideo.config import load_settings
from hybridvideo.delivery.webhook_secrets import FILE_NAME, WebhookSecretStore, webhook_url


def test_nothing_configured_means_no_secrets(tmp_path: Path) -> None:
    assert WebhookSecretStore(tmp_path / FILE_NAME).secrets() == []


def test_rotation_keeps_the_newest_two_in_a_private_file(tmp_path: Path) -> None:
    store = WebhookSecretStore(tmp_path / "data" / FILE_NAME)
    assert store.remember("first-secret") is True
    assert store.remember("first-secret") is False  # the same URL set again: no rotation
    assert store.remember("second-secret") is True
    assert store.secrets() == ["second-secret", "first-secret"]
    store.remember("third-secret")
    assert store.secrets() == ["third-secret", "second-secret"]
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert [p.name for p in store.path.parent.iterdir()] == [FILE_NAME]  # no temp file left


def test_the_configured_secret_comes_first_and_is_not_repeated(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    WebhookSecretStore(path).remember("from-the-file")
    WebhookSecretStore(path).remember("shared-secret")
    store = WebhookSecretStore(path, configured="shared-secret")
    assert store.secrets() == ["shared-secret", "from-the-file"]


@pytest.mark.parametrize("bad", ["", "   ", "two words", "x" * 513])
def test_a_secret_is_one_word(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="one non-empty word"):
        WebhookSecretStore(tmp_path / FILE_NAME).remember(bad)


def test_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRIDVIDEO_STREAM_WEBHOOK_SECRET", "85011ed3a913c6ad5f9cf6c5573cc0a7")
    settings = load_settings(data_dir=tmp_path, public_url="https://video.example.com")
    store = WebhookSecretStore.for_settings(settings)
    assert store.path == tmp_path / FILE_NAME
    assert store.secrets() == ["85011ed3a913c6ad5f9cf6c5573cc0a7"]
    assert webhook_url(settings) == "https://video.example.com/webhooks/stream"
