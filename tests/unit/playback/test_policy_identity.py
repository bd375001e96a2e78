"""Policy parsing, the admin claim, algorithm configuration and the signing-key loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybridvideo.errors import ConfigurationError
from hybridvideo.playback.identity import ANONYMOUS, ViewerAuthenticator, parse_algorithms
from hybridvideo.playback.keys import load_signing_key
from hybridvideo.playback.policy import AdminClaim, parse_collections, parse_rules
from hybridvideo.stream.tokens import SigningKey


def test_rules_parse_in_order_and_refuse_unknown() -> None:
    assert parse_rules(" Owner, grant ,admin,owner") == ("owner", "grant", "admin")
    with pytest.raises(ConfigurationError, match="everyone"):
        parse_rules("owner,everyone")
    assert parse_collections("a, b,,c ") == frozenset({"a", "b", "c"})


def test_admin_claim_paths_and_lists() -> None:
    claim = AdminClaim.parse("app_metadata.role=admin")
    assert claim.matches({"app_metadata": {"role": "admin"}})
    assert claim.matches({"app_metadata": {"role": ["user", "admin"]}})
    assert not claim.matches({"app_metadata": {"role": "administrator"}})
    assert not claim.matches({"role": "admin"})
    assert not claim.matches({"app_metadata": "admin"})
    for bad in ("role", "role=", "=admin", "a..b=x"):
        with pytest.raises(ConfigurationError):
            AdminClaim.parse(bad)


def test_algorithms_follow_the_keys() -> None:
    assert parse_algorithms("", has_secret=True, has_jwks=False) == ("HS256",)
    assert parse_algorithms("", has_secret=False, has_jwks=True) == ("RS256", "ES256")
    assert parse_algorithms("", has_secret=False, has_jwks=False) == ()
    assert parse_algorithms("RS256, PS256", has_secret=False, has_jwks=True) == ("RS256", "PS256")
    for text, secret, jwks in (
        ("none", True, True),
        ("HS256", False, True),
        ("RS256", True, False),
        ("XX999", True, True),
    ):
        with pytest.raises(ConfigurationError):
            parse_algorithms(text, has_secret=secret, has_jwks=jwks)


def test_no_header_is_anonymous() -> None:
    assert ViewerAuthenticator().authenticate(None) is ANONYMOUS


def test_signing_key_from_file_or_settings(tmp_path: Path) -> None:
    key = SigningKey.generate()
    doc = key.to_cloudflare()
    path = tmp_path / "signing-key.json"
    assert load_signing_key(None, None, path) is None
    path.write_text(json.dumps({"id": doc["id"], "pem": doc["pem"], "jwk": doc["jwk"]}))
    loaded = load_signing_key(None, None, path)
    assert loaded is not None and loaded.id == key.id
    assert loaded.public_jwk() == key.public_jwk()
    from_pem = load_signing_key(key.id, doc["pem"], tmp_path / "absent.json")
    from_jwk = load_signing_key(key.id, doc["jwk"], tmp_path / "absent.json")
    assert from_pem is not None and from_jwk is not None
    assert from_pem.public_jwk() == from_jwk.public_jwk() == key.public_jwk()
    path.write_text("[]")
    with pytest.raises(ConfigurationError):
        load_signing_key(None, None, path)
    with pytest.raises(ConfigurationError):
        load_signing_key(key.id, "bm90IGEga2V5", path)
