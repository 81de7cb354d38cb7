"""The operators' audit log: who opened, closed or exported what, and when.

Redis key (shared by all polls):
  vv:audit   LIST   JSON entries {who, what, poll, when}, newest first, capped at MAX_ENTRIES
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis import Redis

from webhook.store import keys

AUDIT_KEY = f"{keys.PREFIX}:audit"
MAX_ENTRIES = 10_000
"""Entries kept; older ones are trimmed (an operator copies the log out if they need more)."""
MAX_WHO_CHARS = 40


def record(
    redis: Redis, *, who: str, what: str, poll: str | None, when: float | None = None
) -> dict[str, Any]:
    """Append one entry (newest first) and return it."""
    entry = {
        "who": who[:MAX_WHO_CHARS],
        "what": what,
        "poll": poll,
        "when": round(time.time() if when is None else when, 3),
    }
    pipe = redis.pipeline(transaction=True)
    pipe.lpush(AUDIT_KEY, json.dumps(entry, ensure_ascii=False))
    pipe.ltrim(AUDIT_KEY, 0, MAX_ENTRIES - 1)
    pipe.execute()
    return entry


def recent(redis: Redis, count: int = 20) -> list[dict[str, Any]]:
    """The newest entries, newest first; an unreadable entry is shown as such, not dropped."""
    entries: list[dict[str, Any]] = []
    for raw in redis.lrange(AUDIT_KEY, 0, count - 1):
        try:
            entry = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            entry = None
        if not isinstance(entry, dict):
            entry = {"who": "?", "what": "unreadable entry", "poll": None, "when": None}
        entries.append(entry)
    return entries
