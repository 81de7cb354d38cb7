"""Refusing weak secrets at start-up: too short, too few kinds of character, or made of repeats.

A start-up check cannot tell a random string from a memorable one (that needs a dictionary);
it refuses what is weak on its face (`passwordpassword`, `aaaa...`, `Secret1Secret1...`), and
the README says to generate secrets (`python -c "import secrets; print(secrets.token_urlsafe(32))"`).
A random hex or base64 string of 24+ characters passes every rule.
"""

from __future__ import annotations

import string

MIN_SECRET_CHARS = 24
"""At least 96 bits even for a hex string; the old minimum of 16 let `passwordpassword` in."""
MIN_CHARACTER_CLASSES = 2
"""Of lower case, upper case, digits and others (a hex string has two)."""
MIN_DISTINCT_CHARS = 8
"""A random hex string of 24+ characters has fewer than 8 distinct ones about once in 10^5."""
MIN_DISTINCT_TRIGRAM_SHARE = 0.75
"""Three-character pieces that must be distinct: a repeated word or pattern repeats them."""

_CLASSES = (string.ascii_lowercase, string.ascii_uppercase, string.digits)


def weakness(secret: str) -> str | None:
    """Why a secret is too weak to use, or None when it passes every rule."""
    if len(secret) < MIN_SECRET_CHARS:
        return f"is too short: use at least {MIN_SECRET_CHARS} random characters"
    classes = sum(any(c in chars for c in secret) for chars in _CLASSES)
    classes += any(not any(c in chars for chars in _CLASSES) for c in secret)
    if classes < MIN_CHARACTER_CLASSES:
        return "is too weak: it uses only one kind of character (generate a random one)"
    if len(set(secret)) < MIN_DISTINCT_CHARS:
        return f"is too weak: fewer than {MIN_DISTINCT_CHARS} different characters (generate a random one)"
    trigrams = [secret[i : i + 3] for i in range(len(secret) - 2)]
    if len(set(trigrams)) < MIN_DISTINCT_TRIGRAM_SHARE * len(trigrams):
        return "is too weak: it repeats itself (generate a random one)"
    return None
