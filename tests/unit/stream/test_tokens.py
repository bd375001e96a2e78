"""Playback tokens: Cloudflare's key and token formats, interop with PyJWT, every refusal."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from hybridvideo.errors import ConfigurationError, HybridVideoError, InvalidInput
from hybridvideo.stream.tokens import (
    MAX_TOKEN_LIFETIME,
    AccessRule,
    InvalidToken,
    PlaybackClaims,
    SigningKey,
    evaluate_access_rules,
    sign_token,
    verify_token,
)

NOW = 1_700_000_000
UID = "ea95132c15732412d22c1476fa83f27a"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    return SigningKey.generate()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def decode_segment(segment: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def rs256(private: rsa.RSAPrivateKey, header: Any, payload: Any) -> str:
    """A token signed with the real key but with whatever header and claims a test wants.

    A ``str`` header or payload is raw JSON text (to write what json.dumps would not).
    """
    head = b64url(header.encode()) if isinstance(header, str) else b64url_json(header)
    body = b64url(payload.encode()) if isinstance(payload, str) else b64url_json(payload)
    signature = private.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{b64url(signature)}"


def reason_of(token: str, key: SigningKey, **kwargs: Any) -> str:
    with pytest.raises(InvalidToken) as caught:
        verify_token(token, keys={key.id: key.public_key}, **kwargs)
    assert caught.value.code == "INVALID_TOKEN"
    assert isinstance(caught.value, HybridVideoError)
    return caught.value.reason


# --------------------------------------------------------------------------- keys


def test_generated_key_looks_like_cloudflares(key: SigningKey) -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", key.id)
    assert key.private_key.key_size == 2048
    assert "PRIVATE" not in repr(key) and "private_key" not in repr(key)
    assert SigningKey.generate("my-key").id == "my-key"


def test_to_cloudflare_has_the_keys_endpoint_shape(key: SigningKey) -> None:
    made = key.to_cloudflare()
    assert set(made) == {"id", "pem", "jwk", "created"}
    assert made["id"] == key.id
    pem = base64.b64decode(made["pem"], validate=True).decode()
    # Cloudflare's documented sample decodes to a PKCS#1 key.
    assert pem.startswith("-----BEGIN RSA PRIVATE KEY-----\n")
    assert pem.endswith("-----END RSA PRIVATE KEY-----\n")
    jwk = json.loads(base64.b64decode(made["jwk"], validate=True))
    assert list(jwk) == ["use", "kty", "kid", "alg", "n", "e", "d", "p", "q", "dp", "dq", "qi"]
    assert jwk["kid"] == key.id and jwk["alg"] == "RS256" and jwk["kty"] == "RSA"
    assert jwk["use"] == "sig" and jwk["e"] == "AQAB"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", made["created"])
    assert key.public_jwk() == {k: jwk[k] for k in ("use", "kty", "kid", "alg", "n", "e")}


@pytest.mark.parametrize("field", ["pem", "jwk"])
def test_key_round_trips_through_cloudflares_format(key: SigningKey, field: str) -> None:
    made = key.to_cloudflare()
    if field == "pem":
        loaded = SigningKey.from_pem_b64(made["id"], made["pem"])
    else:
        loaded = SigningKey.from_jwk_b64(made["id"], made["jwk"])
    assert loaded.id == key.id
    assert loaded.private_key.private_numbers() == key.private_key.private_numbers()
    token = sign_token(loaded, UID, now=NOW)
    claims = verify_token(token, keys={key.id: key.public_key}, now=NOW)
    assert claims.uid == UID and claims.kid == key.id


def test_keys_load_from_pkcs8_wrapped_base64_and_jwk_without_crt(key: SigningKey) -> None:
    pkcs8 = key.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    assert pkcs8.startswith("-----BEGIN PRIVATE KEY-----")
    assert SigningKey.from_pem("k", pkcs8).public_jwk()["n"] == key.public_jwk()["n"]
    # Base64 with line breaks, as it ends up in some secret stores.
    wrapped = base64.encodebytes(pkcs8.encode()).decode()
    assert SigningKey.from_pem_b64("k", wrapped).public_jwk()["n"] == key.public_jwk()["n"]
    jwk = json.loads(base64.b64decode(key.to_cloudflare()["jwk"]))
    minimal = {name: jwk[name] for name in ("kty", "n", "e", "d")}
    loaded = SigningKey.from_jwk("k", minimal)
    assert loaded.private_key.private_numbers() == key.private_key.private_numbers()


def test_bad_key_material_is_refused_precisely(key: SigningKey) -> None:
    made = key.to_cloudflare()
    pem = base64.b64decode(made["pem"]).decode()
    jwk = json.loads(base64.b64decode(made["jwk"]))
    with pytest.raises(InvalidInput, match="already decoded"):
        SigningKey.from_pem_b64(key.id, pem)
    with pytest.raises(InvalidInput, match="already decoded"):
        SigningKey.from_jwk_b64(key.id, json.dumps(jwk))
    with pytest.raises(InvalidInput, match="not valid base64"):
        SigningKey.from_pem_b64(key.id, "not*base64")
    with pytest.raises(InvalidInput, match="not an unencrypted PEM"):
        SigningKey.from_pem_b64(key.id, base64.b64encode(b"hello").decode())
    with pytest.raises(InvalidInput, match="does not match the key id"):
        SigningKey.from_jwk_b64("another-id", made["jwk"])
    with pytest.raises(InvalidInput, match="no private exponent"):
        SigningKey.from_jwk(key.id, key.public_jwk())
    with pytest.raises(InvalidInput, match="not a consistent RSA private key"):
        SigningKey.from_jwk(key.id, {**jwk, "d": jwk["e"]})
    with pytest.raises(InvalidInput, match="kty RSA"):
        SigningKey.from_jwk(key.id, {**jwk, "kty": "EC"})
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(InvalidInput, match="RSA private key"):
        SigningKey.from_pem(key.id, ec_pem)
    with pytest.raises(InvalidInput, match="at least 2048 bits"):
        SigningKey("weak", rsa.generate_private_key(public_exponent=65537, key_size=1024))
    with pytest.raises(InvalidInput, match="key id"):
        SigningKey("", key.private_key)


# --------------------------------------------------------------------------- token shape


def test_token_has_exactly_cloudflares_header_and_claims(key: SigningKey) -> None:
    token = sign_token(key, UID, now=NOW)
    head, body, signature = token.split(".")
    assert "=" not in token
    assert decode_segment(head) == {"alg": "RS256", "kid": key.id}
    assert decode_segment(body) == {"sub": UID, "kid": key.id, "exp": NOW + 3600}
    assert len(base64.urlsafe_b64decode(signature + "==")) == 256


def test_token_with_every_option(key: SigningKey) -> None:
    rules: list[AccessRule | dict[str, Any]] = [
        {"type": "ip.geoip.country", "action": "allow", "country": ["gb"]},
        AccessRule("ip.src", "allow", ip=("93.184.216.0/24", "2400:cb00::/32")),
        {"type": "any", "action": "block"},
    ]
    token = sign_token(
        key, UID, exp=NOW + 600, nbf=NOW - 60, downloadable=True, access_rules=rules, now=NOW
    )
    payload = decode_segment(token.split(".")[1])
    assert list(payload) == ["sub", "kid", "exp", "nbf", "downloadable", "accessRules"]
    assert payload == {
        "sub": UID,
        "kid": key.id,
        "exp": NOW + 600,
        "nbf": NOW - 60,
        "downloadable": True,
        "accessRules": [
            {"type": "ip.geoip.country", "action": "allow", "country": ["GB"]},
            {"type": "ip.src", "action": "allow", "ip": ["93.184.216.0/24", "2400:cb00::/32"]},
            {"type": "any", "action": "block"},
        ],
    }
    claims = verify_token(token, keys={key.id: key.public_jwk()}, now=NOW)
    assert claims == PlaybackClaims(
        uid=UID,
        kid=key.id,
        exp=NOW + 600,
        nbf=NOW - 60,
        downloadable=True,
        access_rules=(
            AccessRule("ip.geoip.country", "allow", country=("GB",)),
            AccessRule("ip.src", "allow", ip=("93.184.216.0/24", "2400:cb00::/32")),
            AccessRule("any", "block"),
        ),
    )


def test_lifetime_defaults_and_choices(key: SigningKey) -> None:
    def exp_of(token: str) -> int:
        return int(decode_segment(token.split(".")[1])["exp"])

    assert exp_of(sign_token(key, UID, now=NOW)) == NOW + 3600
    assert exp_of(sign_token(key, UID, expires_in=60, now=NOW)) == NOW + 60
    assert exp_of(sign_token(key, UID, exp=NOW + 5, now=NOW)) == NOW + 5
    assert exp_of(sign_token(key, UID, exp=NOW + MAX_TOKEN_LIFETIME, now=NOW)) == NOW + 86400
    payload = decode_segment(
        sign_token(key, UID, downloadable=False, access_rules=[]).split(".")[1]
    )
    assert set(payload) == {"sub", "kid", "exp"}


# --------------------------------------------------------------------------- interop


def test_pyjwt_verifies_our_tokens_with_the_public_jwk(key: SigningKey) -> None:
    token = sign_token(key, UID, downloadable=True)  # real clock: PyJWT checks exp itself
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "kid": key.id}
    public = jwt.PyJWK(key.public_jwk()).key
    claims = jwt.decode(token, public, algorithms=["RS256"], options={"require": ["exp", "sub"]})
    assert claims["sub"] == UID and claims["kid"] == key.id and claims["downloadable"] is True


@pytest.mark.parametrize("typ", [None, "JWT"])
def test_we_verify_pyjwt_tokens_made_from_cloudflares_jwk(key: SigningKey, typ: str | None) -> None:
    # What Cloudflare's docs tell a customer to do: decode the base64 "jwk" and sign RS256.
    jwk = json.loads(base64.b64decode(key.to_cloudflare()["jwk"]))
    signer = jwt.PyJWK(jwk)
    rules = [
        {"type": "ip.geoip.country", "action": "allow", "country": ["GB"]},
        {"type": "any", "action": "block"},
    ]
    payload = {"sub": UID, "kid": key.id, "exp": NOW + 3600, "accessRules": rules}
    token = jwt.encode(payload, signer, algorithm="RS256", headers={"kid": key.id, "typ": typ})
    claims = verify_token(token, keys={key.id: key.public_jwk()}, now=NOW)
    assert claims.uid == UID and claims.exp == NOW + 3600
    assert claims.allows(client_ip="81.2.69.142", country="GB")
    assert not claims.allows(client_ip="81.2.69.142", country="FR")


def test_token_endpoint_style_string_times_are_accepted(key: SigningKey) -> None:
    # Cloudflare's documented /token response writes exp and nbf as strings.
    payload = {"sub": UID, "kid": key.id, "exp": str(NOW + 60), "nbf": str(NOW - 3600)}
    token = rs256(key.private_key, {"alg": "RS256", "kid": key.id}, payload)
    claims = verify_token(token, keys={key.id: key.public_key}, now=NOW)
    assert (claims.exp, claims.nbf) == (NOW + 60, NOW - 3600)


def test_cloudflares_documented_token_parses_but_names_an_unknown_key() -> None:
    documented = (
        "eyJhbGciOiJSUzI1NiIsImtpZCI6ImNkYzkzNTk4MmY4MDc1ZjJlZjk2MTA2ZDg1ZmNkODM4In0."
        "eyJraWQiOiJjZGM5MzU5ODJmODA3NWYyZWY5NjEwNmQ4NWZjZDgzOCIsImV4cCI6IjE2MjE4ODk2NTci"
        "LCJuYmYiOiIxNjIxODgyNDU3In0.iHGMvwOh2-SuqUG7kp2GeLXyKvMavP-I2rYCni9odNwms7imW429bM2t"
    )
    with pytest.raises(InvalidToken) as caught:
        verify_token(documented, keys={})
    assert caught.value.reason == "unknown_key"


# --------------------------------------------------------------------------- refusals


def test_tampered_payload_is_a_bad_signature(key: SigningKey) -> None:
    head, _, signature = sign_token(key, UID, now=NOW).split(".")
    forged = b64url_json({"sub": "another-video", "kid": key.id, "exp": NOW + 3600})
    assert reason_of(f"{head}.{forged}.{signature}", key, now=NOW) == "bad_signature"


def test_signature_from_another_key_under_our_kid_is_a_bad_signature(
    key: SigningKey, other_key: SigningKey
) -> None:
    payload = {"sub": UID, "kid": key.id, "exp": NOW + 60}
    token = rs256(other_key.private_key, {"alg": "RS256", "kid": key.id}, payload)
    assert reason_of(token, key, now=NOW) == "bad_signature"
    head, body, _ = token.split(".")
    assert reason_of(f"{head}.{body}.", key, now=NOW) == "bad_signature"


def test_token_from_an_unknown_key_id(key: SigningKey, other_key: SigningKey) -> None:
    token = sign_token(other_key, UID, now=NOW)
    assert reason_of(token, key, now=NOW) == "unknown_key"


def test_expiry_and_leeway(key: SigningKey) -> None:
    token = sign_token(key, UID, expires_in=60, now=NOW)
    verify_token(token, keys={key.id: key.public_key}, now=NOW + 59)
    assert reason_of(token, key, now=NOW + 60) == "expired"
    assert reason_of(token, key, now=NOW + 3600) == "expired"
    verify_token(token, keys={key.id: key.public_key}, now=NOW + 65, leeway=10)


def test_not_before_and_leeway(key: SigningKey) -> None:
    token = sign_token(key, UID, nbf=NOW + 300, expires_in=3600, now=NOW)
    assert reason_of(token, key, now=NOW) == "not_yet_valid"
    verify_token(token, keys={key.id: key.public_key}, now=NOW + 300)
    verify_token(token, keys={key.id: key.public_key}, now=NOW + 290, leeway=10)


def test_exp_more_than_a_day_after_signing(key: SigningKey) -> None:
    # Only a signer ignoring Cloudflare's rule makes this; ours refuses (see below).
    far = rs256(
        key.private_key,
        {"alg": "RS256", "kid": key.id},
        {"sub": UID, "kid": key.id, "exp": NOW + 2 * 86400},
    )
    assert reason_of(far, key, now=NOW) == "exp_too_far"
    # Once less than a day remains nothing proves when it was signed.
    verify_token(far, keys={key.id: key.public_key}, now=NOW + 86400 + 1)
    with_iat = rs256(
        key.private_key,
        {"alg": "RS256", "kid": key.id},
        {"sub": UID, "kid": key.id, "exp": NOW + 82800, "iat": NOW - 7200},
    )
    assert reason_of(with_iat, key, now=NOW) == "exp_too_far"


def test_alg_none_is_refused(key: SigningKey) -> None:
    head = b64url_json({"alg": "none", "kid": key.id})
    body = b64url_json({"sub": UID, "kid": key.id, "exp": NOW + 60})
    assert reason_of(f"{head}.{body}.", key, now=NOW) == "wrong_alg"


def test_hs256_keyed_with_the_public_key_is_refused(key: SigningKey) -> None:
    # The algorithm-confusion attack: the public key is public, so an HMAC with it is forgeable.
    public_pem = key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = b64url_json({"alg": "HS256", "kid": key.id})
    body = b64url_json({"sub": UID, "kid": key.id, "exp": NOW + 60})
    mac = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    assert reason_of(f"{head}.{body}.{b64url(mac)}", key, now=NOW) == "wrong_alg"


@pytest.mark.parametrize("alg", ["RS512", "rs256", "PS256", "ES256"])
def test_other_algorithms_are_refused(key: SigningKey, alg: str) -> None:
    token = rs256(key.private_key, {"alg": alg, "kid": key.id}, {"sub": UID, "exp": NOW + 60})
    assert reason_of(token, key, now=NOW) == "wrong_alg"


def _signed(key: SigningKey, payload: Any, header: Any = None) -> str:
    return rs256(key.private_key, header or {"alg": "RS256", "kid": key.id}, payload)


@pytest.mark.parametrize(
    "make",
    [
        lambda k: "",
        lambda k: "abc",
        lambda k: "a.b",
        lambda k: "a.b.c.d",
        lambda k: "!!!.e30.sig",
        lambda k: "x" * 20_000,
        lambda k: f"{b64url(b'not json')}.e30.AAAA",
        lambda k: f"{b64url(b'[1, 2]')}.e30.AAAA",
        lambda k: f"{b64url_json({'kid': k.id})}.e30.AAAA",
        lambda k: f"{b64url_json({'alg': 'RS256'})}.e30.AAAA",
        lambda k: f"{b64url(b'[' * 5000)}.e30.AAAA",
        lambda k: _signed(k, {"sub": UID}, f'{{"alg":"RS256","kid":"{k.id}","kid":"other"}}'),
        lambda k: _signed(k, {"sub": UID}, {"alg": "RS256", "kid": k.id, "crit": ["exp"]}),
        lambda k: _signed(k, {"kid": k.id, "exp": NOW + 60}),
        lambda k: _signed(k, {"sub": UID, "kid": k.id}),
        lambda k: _signed(k, {"sub": UID, "kid": "someone-else", "exp": NOW + 60}),
        lambda k: _signed(k, {"sub": UID, "exp": NOW + 60.5}),
        lambda k: _signed(k, {"sub": UID, "exp": "soon"}),
        lambda k: _signed(k, {"sub": UID, "exp": NOW + 60, "nbf": True}),
        lambda k: _signed(k, {"sub": UID, "exp": NOW + 60, "downloadable": "yes"}),
        lambda k: _signed(k, {"sub": UID, "exp": NOW + 60, "accessRules": [{"type": "x"}]}),
        lambda k: _signed(
            k,
            {"sub": UID, "exp": NOW + 60, "accessRules": [{"type": "any", "action": "allow"}] * 6},
        ),
    ],
    ids=[
        "empty",
        "one-part",
        "two-parts",
        "four-parts",
        "not-base64url",
        "too-long",
        "header-not-json",
        "header-not-object",
        "no-alg",
        "no-kid",
        "deeply-nested",
        "duplicate-kid",
        "crit",
        "no-sub",
        "no-exp",
        "kid-claim-differs",
        "float-exp",
        "text-exp",
        "bool-nbf",
        "text-downloadable",
        "bad-rule",
        "six-rules",
    ],
)
def test_malformed_tokens(key: SigningKey, make: Any) -> None:
    assert reason_of(make(key), key, now=NOW) == "malformed"


def test_a_bad_verification_jwk_is_a_configuration_error(key: SigningKey) -> None:
    token = sign_token(key, UID, now=NOW)
    with pytest.raises(ConfigurationError):
        verify_token(token, keys={key.id: {"kty": "RSA", "n": "!!", "e": "AQAB"}}, now=NOW)
    with pytest.raises(ConfigurationError):
        verify_token(token, keys={key.id: {**key.public_jwk(), "alg": "HS256"}}, now=NOW)


# --------------------------------------------------------------------------- signing refusals


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"exp": NOW + MAX_TOKEN_LIFETIME + 1}, "at most 86400 s"),
        ({"expires_in": 2 * 86400}, "24 hours"),
        ({"exp": NOW}, "must be in the future"),
        ({"expires_in": -5}, "must be in the future"),
        ({"exp": NOW + 60, "expires_in": 60}, "not both"),
        ({"exp": float(NOW + 60)}, "whole number"),
        ({"nbf": NOW + 7200}, "nbf .* must be before exp"),
        ({"downloadable": "yes"}, "true or false"),
        ({"access_rules": [{"type": "any", "action": "block"}] * 6}, "at most 5 access rules"),
        ({"access_rules": {"type": "any", "action": "block"}}, "must be a list"),
        ({"access_rules": [{"type": "ip", "action": "block"}]}, r"accessRules\[0\]: .*type"),
        ({"access_rules": [{"type": "any", "action": "deny"}]}, "allow or block"),
        ({"access_rules": [{"type": "any"}]}, "needs a string 'action'"),
        (
            {"access_rules": [{"type": "ip.geoip.country", "action": "block", "country": ["USA"]}]},
            "'USA' is not an ISO 3166-1 alpha-2",
        ),
        (
            {"access_rules": [{"type": "ip.geoip.country", "action": "block", "country": "US"}]},
            "list of strings, not a string",
        ),
        (
            {"access_rules": [{"type": "ip.geoip.country", "action": "block"}]},
            "non-empty 'country'",
        ),
        (
            {"access_rules": [{"type": "ip.src", "action": "block", "ip": ["999.1.1.1"]}]},
            "'999.1.1.1' is not an IP address or CIDR",
        ),
        ({"access_rules": [{"type": "ip.src", "action": "block"}]}, "non-empty 'ip'"),
        (
            {"access_rules": [{"type": "ip.src", "action": "block", "ips": ["1.2.3.4"]}]},
            "unknown access rule field",
        ),
        (
            {"access_rules": [{"type": "any", "action": "block", "country": ["US"]}]},
            "neither 'country' nor 'ip'",
        ),
    ],
)
def test_signing_refuses_what_cloudflare_would(
    key: SigningKey, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        sign_token(key, UID, now=NOW, **kwargs)


def test_signing_needs_a_video_uid(key: SigningKey) -> None:
    with pytest.raises(InvalidInput, match="video uid"):
        sign_token(key, "", now=NOW)


# --------------------------------------------------------------------------- access rules

ALLOW_GB_ELSE_BLOCK: list[dict[str, Any]] = [
    {"type": "ip.geoip.country", "action": "allow", "country": ["GB"]},
    {"type": "any", "action": "block"},
]
DOCS_EXAMPLE_2: list[dict[str, Any]] = [
    {"type": "ip.geoip.country", "country": ["US", "MX"], "action": "allow"},
    {"type": "ip.src", "ip": ["93.184.216.0/24", "2400:cb00::/32"], "action": "allow"},
    {"type": "any", "action": "block"},
]


@pytest.mark.parametrize(
    ("rules", "client_ip", "country", "allowed"),
    [
        # no rules, or no rule matching: allowed
        ([], "198.51.100.1", None, True),
        ([{"type": "ip.src", "action": "block", "ip": ["203.0.113.7"]}], "203.0.113.8", "FR", True),
        # single IPv4 address
        (
            [{"type": "ip.src", "action": "block", "ip": ["203.0.113.7"]}],
            "203.0.113.7",
            None,
            False,
        ),
        # CIDRs, v4 and v6, as in the docs' second example
        (DOCS_EXAMPLE_2, "93.184.216.34", "FR", True),
        (DOCS_EXAMPLE_2, "93.184.217.1", "FR", False),
        (DOCS_EXAMPLE_2, "2400:cb00:2049::1", "FR", True),
        (DOCS_EXAMPLE_2, "2400:cb01::1", "FR", False),
        (DOCS_EXAMPLE_2, "198.51.100.1", "MX", True),
        # an IPv4-mapped IPv6 address is its IPv4 address; a zone suffix is ignored
        (DOCS_EXAMPLE_2, "::ffff:93.184.216.34", "FR", True),
        ([{"type": "ip.src", "action": "block", "ip": ["fe80::/10"]}], "fe80::1%eth0", None, False),
        # a v4 rule never applies to a v6 viewer
        ([{"type": "ip.src", "action": "block", "ip": ["0.0.0.0/0"]}], "2001:db8::1", None, True),
        # country, compared case-insensitively; unknown country matches no country rule
        (ALLOW_GB_ELSE_BLOCK, "81.2.69.142", "GB", True),
        (ALLOW_GB_ELSE_BLOCK, "81.2.69.142", " gb ", True),
        (ALLOW_GB_ELSE_BLOCK, "81.2.69.142", "FR", False),
        (ALLOW_GB_ELSE_BLOCK, "81.2.69.142", None, False),
        (ALLOW_GB_ELSE_BLOCK, "81.2.69.142", "", False),
        (
            [{"type": "ip.geoip.country", "action": "block", "country": ["us", "MX"]}],
            "1.1.1.1",
            "US",
            False,
        ),
        # any
        ([{"type": "any", "action": "allow"}], "1.1.1.1", None, True),
        ([{"type": "any", "action": "block"}], "1.1.1.1", "GB", False),
        # first match wins
        (
            [
                {"type": "ip.src", "action": "allow", "ip": ["10.0.0.0/8"]},
                {"type": "any", "action": "block"},
            ],
            "10.1.2.3",
            None,
            True,
        ),
        (
            [
                {"type": "any", "action": "block"},
                {"type": "ip.src", "action": "allow", "ip": ["10.0.0.0/8"]},
            ],
            "10.1.2.3",
            None,
            False,
        ),
    ],
)
def test_access_rules(
    rules: list[dict[str, Any]], client_ip: str, country: str | None, allowed: bool
) -> None:
    assert evaluate_access_rules(rules, client_ip=client_ip, country=country) is allowed


def test_client_address_is_only_needed_for_ip_rules() -> None:
    # A test client or proxy may report a non-address; that only matters for ip.src.
    assert evaluate_access_rules(ALLOW_GB_ELSE_BLOCK, client_ip="testclient", country="GB")
    with pytest.raises(InvalidInput, match="not an IP address"):
        evaluate_access_rules(DOCS_EXAMPLE_2, client_ip="testclient", country="FR")


def test_rules_survive_the_round_trip_through_a_token(key: SigningKey) -> None:
    token = sign_token(key, UID, access_rules=DOCS_EXAMPLE_2, now=NOW)
    claims = verify_token(token, keys={key.id: key.public_key}, now=NOW)
    assert [rule.to_json() for rule in claims.access_rules] == [
        {"type": "ip.geoip.country", "action": "allow", "country": ["US", "MX"]},
        {"type": "ip.src", "action": "allow", "ip": ["93.184.216.0/24", "2400:cb00::/32"]},
        {"type": "any", "action": "block"},
    ]
    assert claims.allows(client_ip="2400:cb00::5", country=None)
    assert not claims.allows(client_ip="192.0.2.1", country="DE")
