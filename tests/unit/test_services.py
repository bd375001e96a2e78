"""The rule for missing servers: skip on a developer machine, fail in CI."""

from __future__ import annotations

import pytest

from tests import services


def test_missing_server_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Redis is not installed"):
        services.missing("Redis")


def test_missing_server_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true but PostgreSQL is not installed"):
        services.missing("PostgreSQL")
