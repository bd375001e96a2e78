"""Where the Stream signing key comes from: the settings, else DATA_DIR/signing-key.json.

``hybridvideo keys create`` writes the file (``{"id", "pem", "jwk"}``, base64 as
Cloudflare returns them) or prints the two settings for a secret store. The setting's
value may be either the base64 PEM or the base64 JWK.
"""

from __future__ import annotations

import json
from pathlib import Path

from hybridvideo.errors import ConfigurationError, InvalidInput
from hybridvideo.stream.tokens import SigningKey


def load_signing_key(key_id: str | None, value: str | None, path: Path) -> SigningKey | None:
    """The configured key, or None when there is none (the ``/token`` fallback then)."""
    try:
        if key_id and value:
            return _from_b64(key_id, value)
        if not path.exists():
            return None
        document = json.loads(path.read_text())
        if not isinstance(document, dict) or not isinstance(document.get("id"), str):
            raise ConfigurationError(f"{path} does not hold a signing key")
        if isinstance(document.get("pem"), str):
            return SigningKey.from_pem_b64(document["id"], document["pem"])
        return SigningKey.from_jwk_b64(document["id"], str(document.get("jwk", "")))
    except (InvalidInput, ValueError) as exc:
        message = exc.message if isinstance(exc, InvalidInput) else str(exc)
        raise ConfigurationError(f"the Stream signing key is unusable: {message}") from None


def _from_b64(key_id: str, value: str) -> SigningKey:
    try:
        return SigningKey.from_pem_b64(key_id, value)
    except InvalidInput:
        return SigningKey.from_jwk_b64(key_id, value)


__all__ = ["load_signing_key"]
