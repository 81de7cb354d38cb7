"""Viber's callbacks as the tests and `make run`'s demo send them: their shape, defined once."""

from __future__ import annotations

import itertools
import time
from typing import Any

_tokens = itertools.count(5_100_000_000_000_000_000)


def next_token() -> int:
    """A fresh Viber message token."""
    return next(_tokens)


def message_event(
    user_id: str, text: str, *, token: int | None = None, language: str = "en", **extra: Any
) -> dict[str, Any]:
    """A Viber `message` callback carrying a text."""
    return {
        "event": "message",
        "timestamp": int(time.time() * 1000),
        "message_token": next_token() if token is None else token,
        "sender": {"id": user_id, "name": "Voter", "language": language, "country": "BY", "api_version": 10},
        "message": {"type": "text", "text": text, **extra},
        "silent": False,
    }


def conversation_started(user_id: str, *, token: int | None = None) -> dict[str, Any]:
    """A Viber `conversation_started` callback."""
    return {
        "event": "conversation_started",
        "timestamp": int(time.time() * 1000),
        "message_token": next_token() if token is None else token,
        "type": "open",
        "user": {"id": user_id, "name": "Voter", "language": "en", "country": "BY", "api_version": 10},
        "subscribed": False,
    }


def contact_message(number: str) -> dict[str, Any]:
    """The message part of a contact callback carrying a phone number."""
    return {"type": "contact", "contact": {"name": "Voter", "phone_number": number}}
