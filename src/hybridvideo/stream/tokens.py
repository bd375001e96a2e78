"""Cloudflare Stream's self-signed playback tokens: signing keys, signing, verifying.

A video with ``requireSignedURLs`` plays only through a token put in place of its uid in
the delivery URL. Cloudflare lets an account mint those tokens itself with a signing key
(``POST /stream/keys``) instead of calling the rate-limited ``/token`` endpoint, and the
built-in delivery engine must accept exactly the same tokens, so that a player, an app
backend or a migration can switch between Cloudflare and the engine without re-signing.
This module is the one place that knows the format:

* header ``{"alg": "RS256", "kid": <key id>}`` (no ``typ``: Cloudflare's documented
  sample and the tokens its ``/token`` endpoint returns carry none);
* claims ``sub`` (video uid), ``kid``, ``exp``, optional ``nbf``, ``downloadable`` (only
  when true) and ``accessRules`` (only when there are rules);
* RSASSA-PKCS1-v1_5 with SHA-256, base64url without padding, ``header.payload.signature``.

It is written on ``cryptography`` alone rather than on a JWT library: the format is small
and fixed, and owning the parser lets the verifier refuse everything Cloudflare would not
issue (any other ``alg``, ``crit`` extensions, duplicate JSON keys, more than five access
rules) instead of inheriting a general-purpose library's tolerance. The tests check
interoperability against PyJWT in both directions.

Pure: no I/O, no framework; time comes from the caller (``now=``) or ``time.time()``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias, cast, get_args

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from hybridvideo.errors import ConfigurationError, HybridVideoError, InvalidInput

ALGORITHM = "RS256"
#: Cloudflare refuses an ``exp`` more than 24 hours after the token is signed.
MAX_TOKEN_LIFETIME = 24 * 3600
#: The default lifetime, the same as Cloudflare's ``/token`` endpoint.
DEFAULT_TOKEN_LIFETIME = 3600
#: Cloudflare's limit on the ``accessRules`` array.
MAX_ACCESS_RULES = 5
#: Cloudflare hands out 2048-bit keys; anything weaker is refused.
MIN_KEY_BITS = 2048
#: Far above any real token (five rules with dozens of CIDRs stay under 4 KiB), low enough
#: that a hostile URL cannot make the verifier decode megabytes before failing.
MAX_TOKEN_LENGTH = 16 * 1024

TokenFailure: TypeAlias = Literal[
    "malformed",
    "unknown_key",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "exp_too_far",
    "wrong_alg",
]
RuleType: TypeAlias = Literal["any", "ip.src", "ip.geoip.country"]
RuleAction: TypeAlias = Literal["allow", "block"]
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
#: What a verifier accepts per key id: a loaded public key, or a public JWK as a dict.
VerificationKey: TypeAlias = rsa.RSAPublicKey | Mapping[str, Any]

_RULE_TYPES: tuple[str, ...] = get_args(RuleType)
_RULE_ACTIONS: tuple[str, ...] = get_args(RuleAction)
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_DIGITS = re.compile(r"[0-9]{1,12}")
_COUNTRY = re.compile(r"[A-Za-z]{2}")

_MESSAGES: dict[str, str] = {
    "malformed": "the playback token is malformed",
    "unknown_key": "the playback token was signed with an unknown key",
    "bad_signature": "the playback token's signature is not valid",
    "expired": "the playback token has expired",
    "not_yet_valid": "the playback token is not valid yet",
    "exp_too_far": "the playback token expires more than 24 hours after it was signed",
    "wrong_alg": "the playback token must be signed with RS256",
}


class InvalidToken(HybridVideoError):
    """A playback token that must not open the video; ``reason`` says why.

    ``message`` is safe for the viewer; ``detail`` (key ids, offending values) is for logs.
    """

    code = "INVALID_TOKEN"

    def __init__(
        self, reason: TokenFailure, message: str | None = None, *, detail: str | None = None
    ) -> None:
        super().__init__(message or _MESSAGES[reason], detail=detail)
        self.reason: TokenFailure = reason


# --------------------------------------------------------------------------- access rules


@dataclass(frozen=True)
class AccessRule:
    """One entry of a token's ``accessRules``, validated on construction.

    Country codes are stored upper-case; IPs/CIDRs are kept as written (they go back into
    tokens verbatim) and parsed once for matching. A CIDR with host bits set
    (``10.1.2.3/8``) is read as its network, as ``ipaddress`` does with ``strict=False``.
    """

    type: RuleType
    action: RuleAction
    country: tuple[str, ...] = ()
    ip: tuple[str, ...] = ()
    _networks: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.type not in _RULE_TYPES:
            raise InvalidInput(
                f"access rule type must be one of {', '.join(_RULE_TYPES)}, not {self.type!r}"
            )
        if self.action not in _RULE_ACTIONS:
            raise InvalidInput(f"access rule action must be allow or block, not {self.action!r}")
        country = _string_list("country", self.country)
        ips = _string_list("ip", self.ip)
        if self.type == "ip.geoip.country":
            if not country:
                raise InvalidInput("an ip.geoip.country rule needs a non-empty 'country' list")
            if ips:
                raise InvalidInput("an ip.geoip.country rule takes 'country', not 'ip'")
        elif self.type == "ip.src":
            if not ips:
                raise InvalidInput("an ip.src rule needs a non-empty 'ip' list")
            if country:
                raise InvalidInput("an ip.src rule takes 'ip', not 'country'")
        elif country or ips:
            raise InvalidInput("an 'any' rule takes neither 'country' nor 'ip'")
        for code in country:
            if not _COUNTRY.fullmatch(code):
                raise InvalidInput(
                    f"country {code!r} is not an ISO 3166-1 alpha-2 code (two letters, like 'GB')"
                )
        networks = []
        for value in ips:
            try:
                networks.append(ipaddress.ip_network(value, strict=False))
            except ValueError:
                raise InvalidInput(f"ip {value!r} is not an IP address or CIDR range") from None
        object.__setattr__(self, "country", tuple(code.upper() for code in country))
        object.__setattr__(self, "ip", ips)
        object.__setattr__(self, "_networks", tuple(networks))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AccessRule:
        """Read one rule as it appears in a token or in Cloudflare's API."""
        if not isinstance(data, Mapping):
            raise InvalidInput(f"an access rule must be an object, not {type(data).__name__}")
        unknown = sorted(set(data) - {"type", "action", "country", "ip"})
        if unknown:
            # A typo such as "ips" would otherwise silently drop the restriction.
            raise InvalidInput(f"unknown access rule field(s): {', '.join(map(repr, unknown))}")
        for name in ("type", "action"):
            if not isinstance(data.get(name), str):
                raise InvalidInput(f"an access rule needs a string {name!r}")
        return cls(
            type=data["type"],
            action=data["action"],
            country=data.get("country") or (),
            ip=data.get("ip") or (),
        )

    def to_json(self) -> dict[str, Any]:
        """The rule in Cloudflare's JSON shape (``type``, ``action``, then its list)."""
        out: dict[str, Any] = {"type": self.type, "action": self.action}
        if self.country:
            out["country"] = list(self.country)
        if self.ip:
            out["ip"] = list(self.ip)
        return out

    def matches(self, address: IPAddress | None, country: str | None) -> bool:
        """Whether this rule applies to a viewer; ``country`` must already be upper-case."""
        if self.type == "any":
            return True
        if self.type == "ip.geoip.country":
            return country is not None and country in self.country
        if address is None:
            return False
        # A v4 rule never applies to a v6 viewer and vice versa (Cloudflare's docs say so).
        return any(net.version == address.version and address in net for net in self._networks)


def _string_list(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str | bytes):
        # tuple("US") would be ("U", "S"): refuse instead of guessing.
        raise InvalidInput(f"access rule {name!r} must be a list of strings, not a string")
    if not isinstance(value, Iterable):
        raise InvalidInput(f"access rule {name!r} must be a list of strings")
    items = tuple(value)
    if not all(isinstance(item, str) for item in items):
        raise InvalidInput(f"access rule {name!r} must contain only strings")
    return cast(tuple[str, ...], items)


def parse_access_rules(rules: Iterable[AccessRule | Mapping[str, Any]]) -> tuple[AccessRule, ...]:
    """Validate a list of rules (objects or JSON dicts); at most five, as Cloudflare allows."""
    if isinstance(rules, str | bytes | Mapping) or not isinstance(rules, Iterable):
        raise InvalidInput("accessRules must be a list of rules")
    out: list[AccessRule] = []
    for index, rule in enumerate(rules):
        if isinstance(rule, AccessRule):
            out.append(rule)
            continue
        try:
            out.append(AccessRule.from_json(rule))
        except InvalidInput as exc:
            raise InvalidInput(f"accessRules[{index}]: {exc.message}") from None
    if len(out) > MAX_ACCESS_RULES:
        raise InvalidInput(
            f"a token may carry at most {MAX_ACCESS_RULES} access rules, got {len(out)}"
        )
    return tuple(out)


def evaluate_access_rules(
    rules: Iterable[AccessRule | Mapping[str, Any]], *, client_ip: str, country: str | None
) -> bool:
    """Whether a viewer may play: the first matching rule decides, no match allows.

    ``client_ip`` is the viewer's address as the delivery edge sees it (IPv4 or IPv6; an
    IPv4-mapped IPv6 address such as ``::ffff:192.0.2.1`` counts as its IPv4 address, and a
    zone suffix is ignored). ``country`` is an ISO code such as the ``CF-IPCountry`` header
    value, compared case-insensitively; ``None`` or empty means unknown, which no
    ``ip.geoip.country`` rule matches. The address is parsed only when an ``ip.src`` rule is
    reached; an unparsable one then raises :class:`InvalidInput` rather than letting a
    ``block`` rule be skipped.
    """
    parsed = parse_access_rules(rules)
    code = country.strip().upper() if country and country.strip() else None
    address: IPAddress | None = None
    for rule in parsed:
        if rule.type == "ip.src" and address is None:
            address = _client_address(client_ip)
        if rule.matches(address, code):
            return rule.action == "allow"
    return True


def _client_address(client_ip: str) -> IPAddress:
    try:
        address = ipaddress.ip_address(client_ip.strip().split("%", 1)[0])
    except (ValueError, AttributeError):
        raise InvalidInput(
            f"client address {client_ip!r} is not an IP address; ip.src rules cannot be checked"
        ) from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# --------------------------------------------------------------------------- signing keys


@dataclass(frozen=True, eq=False)
class SigningKey:
    """A Stream signing key: Cloudflare's key id and the RSA private key behind it.

    ``id`` is what Cloudflare returned (32 lower-case hex characters); it goes into the
    token header and claims and is how Cloudflare, or the engine, finds the public key.
    ``created`` is only carried for :meth:`to_cloudflare`. The private key never appears
    in ``repr``.
    """

    id: str
    private_key: rsa.RSAPrivateKey = field(repr=False)
    created: datetime | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id or self.id != self.id.strip():
            raise InvalidInput("a signing key id must be a non-empty string without spaces")
        if not isinstance(self.private_key, rsa.RSAPrivateKey):
            raise InvalidInput("a Stream signing key must be an RSA private key")
        if self.private_key.key_size < MIN_KEY_BITS:
            raise InvalidInput(
                f"a Stream signing key must have at least {MIN_KEY_BITS} bits, "
                f"this one has {self.private_key.key_size}"
            )

    # -- constructors

    @classmethod
    def generate(cls, key_id: str | None = None) -> SigningKey:
        """A new 2048-bit key with a random Cloudflare-style id (for the engine and tests)."""
        private = rsa.generate_private_key(public_exponent=65537, key_size=MIN_KEY_BITS)
        return cls(key_id or secrets.token_hex(16), private, datetime.now(UTC))

    @classmethod
    def from_pem(cls, key_id: str, pem_text: str | bytes) -> SigningKey:
        """Load an unencrypted PEM private key (PKCS#1 ``RSA PRIVATE KEY`` or PKCS#8)."""
        data = pem_text.encode() if isinstance(pem_text, str) else pem_text
        try:
            private = serialization.load_pem_private_key(data.strip() + b"\n", password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise InvalidInput(
                "the signing key is not an unencrypted PEM private key", detail=str(exc)
            ) from None
        if not isinstance(private, rsa.RSAPrivateKey):
            raise InvalidInput("a Stream signing key must be an RSA private key")
        return cls(key_id, private)

    @classmethod
    def from_pem_b64(cls, key_id: str, pem_b64: str) -> SigningKey:
        """Load the ``pem`` field of ``POST /stream/keys``: base64 of a PEM private key."""
        if isinstance(pem_b64, str) and pem_b64.lstrip().startswith("-----BEGIN"):
            raise InvalidInput("this PEM is already decoded: use SigningKey.from_pem")
        return cls.from_pem(key_id, _b64decode(pem_b64, "pem"))

    @classmethod
    def from_jwk(cls, key_id: str, jwk: Mapping[str, Any]) -> SigningKey:
        """Load a private RSA JWK (``n``, ``e``, ``d``; the CRT values are optional).

        A ``kid`` in the JWK must equal ``key_id``: a mismatch means tokens would name a key
        Cloudflare does not associate with this material, and playback would fail later.
        """
        if not isinstance(jwk, Mapping):
            raise InvalidInput("the signing key JWK must be a JSON object")
        if jwk.get("kty") != "RSA":
            raise InvalidInput(f"the signing key JWK must have kty RSA, not {jwk.get('kty')!r}")
        if "alg" in jwk and jwk["alg"] != ALGORITHM:
            raise InvalidInput(f"the signing key JWK is for {jwk['alg']!r}, not RS256")
        if "kid" in jwk and jwk["kid"] != key_id:
            raise InvalidInput(f"the JWK's kid {jwk['kid']!r} does not match the key id {key_id!r}")
        if "d" not in jwk:
            raise InvalidInput("the signing key JWK has no private exponent 'd'")
        try:
            n, e, d = (_jwk_int(jwk, name) for name in ("n", "e", "d"))
            if all(name in jwk for name in ("p", "q")):
                p, q = _jwk_int(jwk, "p"), _jwk_int(jwk, "q")
            else:
                p, q = rsa.rsa_recover_prime_factors(n, e, d)
            dmp1 = _jwk_int(jwk, "dp") if "dp" in jwk else rsa.rsa_crt_dmp1(d, p)
            dmq1 = _jwk_int(jwk, "dq") if "dq" in jwk else rsa.rsa_crt_dmq1(d, q)
            iqmp = _jwk_int(jwk, "qi") if "qi" in jwk else rsa.rsa_crt_iqmp(p, q)
            numbers = rsa.RSAPrivateNumbers(p, q, d, dmp1, dmq1, iqmp, rsa.RSAPublicNumbers(e, n))
            private = numbers.private_key()
        except (ValueError, TypeError) as exc:
            raise InvalidInput(
                "the signing key JWK is not a consistent RSA private key", detail=str(exc)
            ) from None
        return cls(key_id, private)

    @classmethod
    def from_jwk_b64(cls, key_id: str, jwk_b64: str) -> SigningKey:
        """Load the ``jwk`` field of ``POST /stream/keys``: base64 of the JWK JSON."""
        if isinstance(jwk_b64, str) and jwk_b64.lstrip().startswith("{"):
            raise InvalidInput("this JWK is already decoded: use SigningKey.from_jwk")
        raw = _b64decode(jwk_b64, "jwk")
        try:
            jwk = json.loads(raw)
        except (ValueError, RecursionError):
            raise InvalidInput("the decoded jwk is not JSON") from None
        return cls.from_jwk(key_id, jwk)

    # -- exports

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, str]:
        """The public half as a JWK, for handing to a verifier (the engine)."""
        numbers = self.private_key.public_key().public_numbers()
        return {
            "use": "sig",
            "kty": "RSA",
            "kid": self.id,
            "alg": ALGORITHM,
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
        }

    def to_cloudflare(self) -> dict[str, str]:
        """The key as ``POST /stream/keys`` returns it: ``id``, ``pem``, ``jwk``, ``created``.

        Matches Cloudflare's documented sample: ``pem`` is standard base64 of a PKCS#1
        ``-----BEGIN RSA PRIVATE KEY-----`` PEM, ``jwk`` standard base64 of compact JSON with
        the members in Cloudflare's order (``use, kty, kid, alg, n, e, d, p, q, dp, dq,
        qi``), ``created`` RFC 3339 UTC with a ``Z`` (Cloudflare prints nanoseconds; we have
        microseconds). A loaded key with no ``created`` reports the time of the call.
        """
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        private = self.private_key.private_numbers()
        jwk = self.public_jwk()
        jwk.update(
            d=_b64url_uint(private.d),
            p=_b64url_uint(private.p),
            q=_b64url_uint(private.q),
            dp=_b64url_uint(private.dmp1),
            dq=_b64url_uint(private.dmq1),
            qi=_b64url_uint(private.iqmp),
        )
        created = (self.created or datetime.now(UTC)).astimezone(UTC)
        return {
            "id": self.id,
            "pem": base64.b64encode(pem).decode("ascii"),
            "jwk": base64.b64encode(_compact_json(jwk)).decode("ascii"),
            "created": created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }


def _b64decode(value: str, what: str) -> bytes:
    """Standard base64 as Cloudflare prints it; tolerates line breaks, url-safe, no padding."""
    if not isinstance(value, str):
        raise InvalidInput(f"the {what} value must be a base64 string")
    compact = "".join(value.split()).replace("-", "+").replace("_", "/")
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"the {what} value is not valid base64") from None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_uint(value: int) -> str:
    return _b64url(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def _jwk_int(jwk: Mapping[str, Any], name: str) -> int:
    value = jwk.get(name)
    if not isinstance(value, str) or not value or not _B64URL.fullmatch(value):
        raise ValueError(f"JWK member {name!r} is missing or not base64url")
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def _compact_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def public_key_from_jwk(jwk: Mapping[str, Any]) -> rsa.RSAPublicKey:
    """An RSA public key from a JWK dict (private members, if any, are ignored).

    A bad key is the operator's configuration, not the viewer's fault, hence
    :class:`ConfigurationError`.
    """
    if not isinstance(jwk, Mapping) or jwk.get("kty") != "RSA":
        raise ConfigurationError("a playback verification key must be an RSA JWK")
    if jwk.get("alg", ALGORITHM) != ALGORITHM or jwk.get("use", "sig") != "sig":
        raise ConfigurationError("a playback verification JWK must be for RS256 signatures")
    try:
        return rsa.RSAPublicNumbers(_jwk_int(jwk, "e"), _jwk_int(jwk, "n")).public_key()
    except ValueError as exc:
        raise ConfigurationError(
            "a playback verification JWK is not a valid RSA public key", detail=str(exc)
        ) from None


# --------------------------------------------------------------------------- signing


def sign_token(
    key: SigningKey,
    video_uid: str,
    *,
    expires_in: int | None = None,
    exp: int | None = None,
    nbf: int | None = None,
    downloadable: bool = False,
    access_rules: Sequence[AccessRule | Mapping[str, Any]] | None = None,
    now: float | None = None,
) -> str:
    """A playback token for one video, in Cloudflare's self-signed format.

    Give either ``expires_in`` (seconds from ``now``; 3600 when neither is given, like the
    ``/token`` endpoint) or an absolute ``exp`` (unix seconds). Cloudflare refuses tokens
    whose ``exp`` lies more than 24 hours after signing, so we refuse to make them.
    ``nbf`` is an absolute unix time before which the token does not work.
    ``downloadable`` and ``access_rules`` are written only when they restrict or grant
    something (an empty rule list means "no rules" and is omitted).
    """
    if not isinstance(key, SigningKey):
        raise InvalidInput("sign_token needs a SigningKey")
    if not isinstance(video_uid, str) or not video_uid or video_uid != video_uid.strip():
        raise InvalidInput("the video uid must be a non-empty string without spaces")
    issued = int(time.time() if now is None else now)
    if exp is not None and expires_in is not None:
        raise InvalidInput("give either exp or expires_in, not both")
    if exp is None:
        lifetime = DEFAULT_TOKEN_LIFETIME if expires_in is None else expires_in
        _check_int("expires_in", lifetime)
        exp = issued + lifetime
    _check_int("exp", exp)
    if exp <= issued:
        raise InvalidInput(f"exp ({exp}) must be in the future (now is {issued})")
    if exp - issued > MAX_TOKEN_LIFETIME:
        raise InvalidInput(
            f"exp is {exp - issued} s ahead; Cloudflare allows at most "
            f"{MAX_TOKEN_LIFETIME} s (24 hours) after signing"
        )
    if nbf is not None:
        _check_int("nbf", nbf)
        if nbf >= exp:
            raise InvalidInput(f"nbf ({nbf}) must be before exp ({exp})")
    if not isinstance(downloadable, bool):
        raise InvalidInput("downloadable must be true or false")
    rules = parse_access_rules(access_rules) if access_rules is not None else ()

    claims: dict[str, Any] = {"sub": video_uid, "kid": key.id, "exp": exp}
    if nbf is not None:
        claims["nbf"] = nbf
    if downloadable:
        claims["downloadable"] = True
    if rules:
        claims["accessRules"] = [rule.to_json() for rule in rules]
    header = {"alg": ALGORITHM, "kid": key.id}
    signing_input = f"{_b64url(_compact_json(header))}.{_b64url(_compact_json(claims))}"
    signature = key.private_key.sign(
        signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
    )
    return f"{signing_input}.{_b64url(signature)}"


def _check_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be a whole number of seconds, not {value!r}")


# --------------------------------------------------------------------------- verifying


@dataclass(frozen=True)
class PlaybackClaims:
    """What a verified token grants: which video, until when, and under which rules."""

    uid: str
    kid: str
    exp: int
    nbf: int | None = None
    downloadable: bool = False
    access_rules: tuple[AccessRule, ...] = ()

    def allows(self, *, client_ip: str, country: str | None) -> bool:
        """:func:`evaluate_access_rules` on this token's rules."""
        return evaluate_access_rules(self.access_rules, client_ip=client_ip, country=country)


def verify_token(
    token: str,
    *,
    keys: Mapping[str, VerificationKey],
    now: float | None = None,
    leeway: float = 0,
) -> PlaybackClaims:
    """Check a playback token the way Cloudflare would, and return its claims.

    ``keys`` maps key ids to public keys (loaded, or public JWK dicts). Only RS256 is
    accepted, whatever the header asks for: a token claiming ``none`` or ``HS256`` (the
    algorithm-confusion attack, an HMAC keyed with the public key) is ``wrong_alg``. The
    header ``kid`` picks the key; the signature is checked before any claim is read.

    Time checks, with ``leeway`` seconds of tolerance for clock skew: ``expired`` when
    ``now >= exp``; ``not_yet_valid`` when ``now < nbf``; ``exp_too_far`` when ``exp`` lies
    more than 24 hours after the moment of signing. Cloudflare's tokens carry no ``iat``, so
    the signing moment is bounded from above by ``now`` (a token cannot be signed in the
    future): ``exp > now + 24 h`` proves the rule was broken, and so does
    ``exp - iat > 24 h`` when a third-party signer adds ``iat``. ``exp - nbf`` proves
    nothing (Cloudflare's own ``/token`` sets ``nbf`` an hour before signing) and is not
    checked.

    Cloudflare's ``/token`` endpoint writes ``exp``/``nbf`` as decimal strings; those are
    accepted as well as integers. ``sub`` is required: a token not bound to one video must
    not open any.
    """
    current = time.time() if now is None else float(now)
    header_b64, payload_b64, signature_b64 = _split(token)
    header = _json_segment(header_b64, "header")
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise InvalidToken("malformed", detail="the header has no alg")
    if alg != ALGORITHM:
        raise InvalidToken("wrong_alg", detail=f"alg {alg[:20]!r} refused; only RS256 is accepted")
    if "crit" in header:
        raise InvalidToken("malformed", detail="critical header extensions are not supported")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("malformed", detail="the header has no kid")
    if kid not in keys:
        raise InvalidToken("unknown_key", detail=f"kid {kid[:64]!r} is not a known signing key")
    public = keys[kid]
    public_key = public if isinstance(public, rsa.RSAPublicKey) else public_key_from_jwk(public)

    try:
        public_key.verify(
            _b64url_decode(signature_b64),
            f"{header_b64}.{payload_b64}".encode("ascii"),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except InvalidSignature:
        raise InvalidToken(
            "bad_signature", detail=f"signature check failed for kid {kid!r}"
        ) from None

    claims = _json_segment(payload_b64, "payload")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise InvalidToken("malformed", detail="the token has no sub (video uid)")
    if "kid" in claims and claims["kid"] != kid:
        raise InvalidToken("malformed", detail="the kid claim differs from the header's kid")
    exp = _numeric_claim(claims, "exp")
    if exp is None:
        raise InvalidToken("malformed", detail="the token has no exp")
    nbf = _numeric_claim(claims, "nbf")
    iat = _numeric_claim(claims, "iat")
    downloadable = claims.get("downloadable", False)
    if not isinstance(downloadable, bool):
        raise InvalidToken("malformed", detail="downloadable is not a boolean")
    try:
        rules = parse_access_rules(claims.get("accessRules") or ())
    except InvalidInput as exc:
        # Signed but unreadable rules: refusing is the only safe reading.
        raise InvalidToken("malformed", detail=exc.message) from None

    if current >= exp + leeway:
        raise InvalidToken("expired", detail=f"exp {exp}, now {int(current)}")
    if exp > current + MAX_TOKEN_LIFETIME + leeway or (
        iat is not None and exp - iat > MAX_TOKEN_LIFETIME
    ):
        raise InvalidToken("exp_too_far", detail=f"exp {exp}, now {int(current)}, iat {iat}")
    if nbf is not None and current + leeway < nbf:
        raise InvalidToken("not_yet_valid", detail=f"nbf {nbf}, now {int(current)}")
    return PlaybackClaims(
        uid=sub, kid=kid, exp=exp, nbf=nbf, downloadable=downloadable, access_rules=rules
    )


def _split(token: object) -> tuple[str, str, str]:
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("malformed", detail="not a token string of a sane length")
    parts = token.split(".")
    # The signature may be empty here: an unsigned ``alg: none`` token is then reported as
    # wrong_alg (what it is), and an RS256 one fails its signature check.
    if (
        len(parts) != 3
        or not parts[0]
        or not parts[1]
        or not all(_B64URL.fullmatch(part) for part in parts)
    ):
        raise InvalidToken("malformed", detail="not three base64url segments")
    return parts[0], parts[1], parts[2]


def _b64url_decode(segment: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed", detail="a segment is not base64url") from None


def _json_segment(segment: str, what: str) -> dict[str, Any]:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # Two "kid"s or "alg"s are how parser differentials are exploited: refuse them.
        out = dict(pairs)
        if len(out) != len(pairs):
            raise ValueError("duplicate key")
        return out

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        value = json.loads(
            _b64url_decode(segment).decode("utf-8"),
            object_pairs_hook=no_duplicates,
            parse_constant=no_constants,
        )
    except (ValueError, RecursionError) as exc:
        raise InvalidToken(
            "malformed", detail=f"the {what} is not a JSON object: {str(exc)[:80]}"
        ) from None
    if not isinstance(value, dict):
        raise InvalidToken("malformed", detail=f"the {what} is not a JSON object")
    return value


def _numeric_claim(claims: Mapping[str, Any], name: str) -> int | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    raise InvalidToken("malformed", detail=f"{name} is not a unix time")


__all__ = [
    "ALGORITHM",
    "DEFAULT_TOKEN_LIFETIME",
    "MAX_ACCESS_RULES",
    "MAX_TOKEN_LIFETIME",
    "AccessRule",
    "InvalidToken",
    "PlaybackClaims",
    "SigningKey",
    "TokenFailure",
    "VerificationKey",
    "evaluate_access_rules",
    "parse_access_rules",
    "public_key_from_jwk",
    "sign_token",
    "verify_token",
]
