"""Who is watching: the app's own viewer, read from ``Authorization: Bearer <JWT>``.

hybridvideo has no user accounts; the app that embeds the player does. Its identity
provider signs JWTs, and we accept them in the two shapes providers use:

* **HS256 with a shared secret** — what Supabase issues (the project's "JWT secret");
* **RS256 / ES256 (and the other asymmetric algorithms) through a JWKS URL** — Auth0,
  Cognito, Keycloak, Supabase's newer asymmetric keys. The key set is fetched over HTTP,
  cached, and fetched again when a token names an unknown ``kid`` (key rotation), but at
  most once every ``refresh_seconds`` so made-up kids cannot turn us into a flood.

The key is chosen by the **configured algorithm family**, never by the header alone: an
HS* token is checked only against the shared secret, an RS*/PS* token only against RSA
keys from the JWKS, an ES* token only against EC keys. So the classic confusion attack (an
HMAC keyed with the provider's RSA public key) finds no secret to match, ``alg: none`` is
never in the accepted list, and symmetric keys in a JWKS are ignored. PyJWT does the
cryptography and the claim checks; every failure becomes :class:`InvalidViewerToken` with a
message of ours (the library's text goes to ``detail``, i.e. logs only).

Framework-free: the HTTP edge passes the header value in.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

from hybridvideo.errors import BackendUnavailable, ConfigurationError, Unauthorized

log = logging.getLogger("hybridvideo.playback")

SYMMETRIC = frozenset({"HS256", "HS384", "HS512"})
RSA_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGS = frozenset({"ES256", "ES384", "ES512"})
OKP_ALGS = frozenset({"EdDSA"})
ASYMMETRIC = RSA_ALGS | EC_ALGS | OKP_ALGS
#: The JWK ``kty`` each asymmetric family must come from.
_FAMILY_KTY = {**dict.fromkeys(RSA_ALGS, "RSA"), **dict.fromkeys(EC_ALGS, "EC"), "EdDSA": "OKP"}
#: Far above any real identity token, low enough to refuse junk before parsing it.
MAX_JWT_LENGTH = 8 * 1024
MAX_SUBJECT_LENGTH = 128
#: Keys older than this are fetched again on next use, so a key the provider withdrew stops
#: working even if no unknown kid ever shows up.
JWKS_MAX_AGE = 3600.0


class InvalidViewerToken(Unauthorized):
    """A viewer token we refuse (answered 401); ``message`` is safe for the client."""

    code = "INVALID_VIEWER_TOKEN"


@dataclass(frozen=True)
class Viewer:
    """The viewer behind a request: ``subject`` is the JWT ``sub``; None is anonymous."""

    subject: str | None
    claims: Mapping[str, Any] = field(default_factory=dict)

    @property
    def anonymous(self) -> bool:
        return self.subject is None


ANONYMOUS = Viewer(None)


def parse_algorithms(text: str, *, has_secret: bool, has_jwks: bool) -> tuple[str, ...]:
    """The accepted algorithms from the setting, or the defaults implied by the keys.

    A configured algorithm with no key to check it is a configuration error, not a silent
    refusal of every token.
    """
    names = tuple(dict.fromkeys(a.strip() for a in text.split(",") if a.strip()))
    if not names:
        names = (("HS256",) if has_secret else ()) + (("RS256", "ES256") if has_jwks else ())
    for name in names:
        if name.lower() == "none":
            raise ConfigurationError("HYBRIDVIDEO_PLAYBACK_JWT_ALGORITHMS: 'none' is never allowed")
        if name not in SYMMETRIC | ASYMMETRIC:
            raise ConfigurationError(
                f"HYBRIDVIDEO_PLAYBACK_JWT_ALGORITHMS: unknown algorithm {name!r}"
            )
        if name in SYMMETRIC and not has_secret:
            raise ConfigurationError(
                f"HYBRIDVIDEO_PLAYBACK_JWT_ALGORITHMS: {name} needs HYBRIDVIDEO_PLAYBACK_JWT_SECRET"
            )
        if name in ASYMMETRIC and not has_jwks:
            raise ConfigurationError(
                f"HYBRIDVIDEO_PLAYBACK_JWT_ALGORITHMS: {name} needs HYBRIDVIDEO_PLAYBACK_JWKS_URL"
            )
    return names


class JwksCache:
    """The provider's public keys by ``kid``, fetched lazily and refreshed on rotation.

    ``fetch`` returns the JWKS document (tests and other transports can pass their own);
    the default is an HTTP GET with a short timeout. Thread-safe: one fetch at a time, and
    a thread that waited for another's fetch uses its result.
    """

    def __init__(
        self,
        url: str,
        *,
        refresh_seconds: float = 60.0,
        max_age: float = JWKS_MAX_AGE,
        timeout: float = 5.0,
        fetch: Callable[[], Mapping[str, Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._refresh = refresh_seconds
        self._max_age = max(max_age, refresh_seconds)
        self._timeout = timeout
        self._fetch = fetch or self._http_fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        #: How many times the document was fetched (tests and metrics read it).
        self.fetches = 0

    def _http_fetch(self) -> Mapping[str, Any]:
        response = httpx.get(self._url, timeout=self._timeout, follow_redirects=False)
        response.raise_for_status()
        document = response.json()
        if not isinstance(document, Mapping):
            raise ValueError("the JWKS is not a JSON object")
        return document

    def get(self, kid: str | None) -> jwt.PyJWK | None:
        """The key named ``kid`` (the only key, when the token names none), or None."""
        with self._lock:
            now = self._clock()
            stale = self._fetched_at is None or now - self._fetched_at >= self._max_age
            if stale or (
                self._lookup(kid) is None
                and self._fetched_at is not None
                and now - self._fetched_at >= self._refresh
            ):
                self._load(now)
            return self._lookup(kid)

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    def _load(self, now: float) -> None:
        self.fetches += 1
        try:
            document = self._fetch()
            raw_keys = document.get("keys")
            if not isinstance(raw_keys, Sequence) or isinstance(raw_keys, str):
                raise ValueError("the JWKS has no 'keys' list")
        except (httpx.HTTPError, ValueError) as exc:
            if self._fetched_at is None:
                raise BackendUnavailable(
                    "the identity provider's signing keys could not be fetched",
                    detail=f"{self._url}: {exc}",
                ) from None
            # Keep serving the keys we have; try again after the refresh interval.
            log.warning("JWKS refresh failed", extra={"url": self._url, "detail": str(exc)})
            self._fetched_at = now
            return
        keys: dict[str, jwt.PyJWK] = {}
        for index, data in enumerate(raw_keys):
            if not isinstance(data, Mapping) or data.get("kty") not in ("RSA", "EC", "OKP"):
                continue  # symmetric or unknown keys have no place in a public key set
            if data.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(dict(data))
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
                log.warning("JWKS key skipped", extra={"index": index, "detail": str(exc)})
                continue
            keys[str(data.get("kid") or f"#{index}")] = key
        self._keys = keys
        self._fetched_at = now


_MESSAGES: dict[type[Exception], str] = {
    jwt.ExpiredSignatureError: "the sign-in token has expired",
    jwt.ImmatureSignatureError: "the sign-in token is not valid yet",
    jwt.InvalidIssuerError: "the sign-in token was issued by another identity provider",
    jwt.InvalidAudienceError: "the sign-in token was issued for another application",
    jwt.MissingRequiredClaimError: "the sign-in token lacks a required claim",
    jwt.InvalidSignatureError: "the sign-in token's signature is not valid",
    jwt.DecodeError: "the sign-in token is malformed",
}


def _message(exc: jwt.PyJWTError) -> str:
    for cls in type(exc).__mro__:
        if cls in _MESSAGES:
            return _MESSAGES[cls]
    return "the sign-in token is not valid"


class ViewerAuthenticator:
    """Turns a bearer JWT into a :class:`Viewer`; no token at all is :data:`ANONYMOUS`."""

    def __init__(
        self,
        *,
        secret: str | None = None,
        jwks: JwksCache | None = None,
        algorithms: Sequence[str] = (),
        issuer: str | None = None,
        audience: str | None = None,
        leeway: float = 30.0,
    ) -> None:
        self._secret = secret.encode() if secret else None
        self._jwks = jwks
        self._algorithms = frozenset(algorithms)
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway

    @property
    def configured(self) -> bool:
        return bool(self._algorithms)

    def authenticate(self, token: str | None) -> Viewer:
        """The viewer a token proves, :data:`ANONYMOUS` for None; raises on a bad token."""
        if token is None:
            return ANONYMOUS
        if not self._algorithms:
            raise InvalidViewerToken(
                "viewer sign-in is not configured on this server",
                detail="set HYBRIDVIDEO_PLAYBACK_JWT_SECRET or HYBRIDVIDEO_PLAYBACK_JWKS_URL",
            )
        if len(token) > MAX_JWT_LENGTH:
            raise InvalidViewerToken("the sign-in token is malformed", detail="too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidViewerToken("the sign-in token is malformed", detail=str(exc)) from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise InvalidViewerToken(
                "the sign-in token uses an algorithm this server does not accept",
                detail=f"alg {str(alg)[:20]!r}; accepted {sorted(self._algorithms)}",
            )
        key = self._key_for(alg, header.get("kid"))
        required = ["exp", "sub"]
        if self._issuer is not None:
            required.append("iss")
        if self._audience is not None:
            required.append("aud")
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],  # exactly the one family-checked algorithm
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": required, "verify_aud": self._audience is not None},
            )
        except jwt.PyJWTError as exc:
            raise InvalidViewerToken(_message(exc), detail=f"{type(exc).__name__}: {exc}") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT_LENGTH:
            raise InvalidViewerToken("the sign-in token has no usable subject ('sub')")
        return Viewer(subject, claims)

    def _key_for(self, alg: str, kid: object) -> Any:
        if alg in SYMMETRIC:
            assert self._secret is not None  # parse_algorithms guarantees it
            return self._secret
        assert self._jwks is not None
        if kid is not None and not isinstance(kid, str):
            raise InvalidViewerToken("the sign-in token is malformed", detail="kid not a string")
        jwk = self._jwks.get(kid)
        if jwk is None:
            raise InvalidViewerToken(
                "the sign-in token was signed with an unknown key", detail=f"kid {kid!r}"
            )
        declared = jwk.algorithm_name if "alg" in (jwk._jwk_data or {}) else None
        if jwk.key_type != _FAMILY_KTY[alg] or (declared is not None and declared != alg):
            raise InvalidViewerToken(
                "the sign-in token's algorithm does not match its key",
                detail=f"alg {alg}, key {jwk.key_type}/{declared}",
            )
        return jwk.key


__all__ = [
    "ANONYMOUS",
    "InvalidViewerToken",
    "JwksCache",
    "Viewer",
    "ViewerAuthenticator",
    "parse_algorithms",
]
