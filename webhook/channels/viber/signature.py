"""Viber's callback signature: hex HMAC-SHA256 of the raw body, keyed with the bot token."""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Viber-Content-Signature"


def sign(auth_token: str, body: bytes) -> str:
    """The signature Viber sends with this body."""
    return hmac.new(auth_token.encode(), body, hashlib.sha256).hexdigest()


def is_valid(auth_token: str, body: bytes, signature: str | None) -> bool:
    """Whether a signature matches the body, compared in constant time."""
    if not signature:
        return False
    given = signature.strip().lower().encode("utf-8", "replace")
    return hmac.compare_digest(sign(auth_token, body).encode(), given)
