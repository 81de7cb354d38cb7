"""Voter identities as keyed hashes, and the receipt codes derived from them."""

from __future__ import annotations

import hashlib
import hmac
from enum import StrEnum

VOTER_KEY_BYTES = 12
"""96 bits: no collision among billions of voters; the first 2 bytes pick a bucket."""
RECEIPT_BITS = 50
RECEIPT_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
"""Crockford's base32: no I, L, O or U to misread."""


class IdentityKind(StrEnum):
    """What a voter identity is derived from: a messenger account (named as its channel), or a number."""

    VIBER = "viber"
    TELEGRAM = "telegram"
    PHONE = "phone"
    """The same keyed hash whichever messenger shared the number: one vote per number across them."""


def voter_key(secret: str, kind: IdentityKind, value: str) -> bytes:
    """Keyed hash of an identity: the only form in which a voter reaches Redis."""
    message = f"{kind.value}:{value}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()[:VOTER_KEY_BYTES]


def receipt_code(key: bytes) -> str:
    """Short code shown to the voter: the first 50 bits of their voter key, in base32."""
    return _code(receipt_number(key))


def _code(number: int) -> str:
    """A 50-bit receipt number as the bot prints it ("7K2QX-M9D4T")."""
    chars = [RECEIPT_ALPHABET[(number >> shift) & 31] for shift in range(45, -1, -5)]
    return "".join(chars[:5]) + "-" + "".join(chars[5:])


def parse_receipt(code: str) -> int | None:
    """The 50-bit number a receipt code stands for, or None if it is not one."""
    cleaned = code.strip().upper().replace("-", "").replace(" ", "")
    cleaned = cleaned.translate(str.maketrans("OIL", "011"))
    if len(cleaned) != RECEIPT_BITS // 5 or any(c not in RECEIPT_ALPHABET for c in cleaned):
        return None
    number = 0
    for char in cleaned:
        number = number << 5 | RECEIPT_ALPHABET.index(char)
    return number


def canonical_receipt(typed: str) -> str:
    """A typed receipt code as the bot prints it, or "" if it is not one.

    Only this form is queued: whatever a voter types (any length, any code point, lone
    surrogates that no Redis client can encode) never reaches Redis or is echoed back.
    """
    number = parse_receipt(typed)
    return "" if number is None else _code(number)


def receipt_number(key: bytes) -> int:
    """The 50-bit number behind a voter key's receipt code."""
    return int.from_bytes(key[:7], "big") >> (56 - RECEIPT_BITS)
