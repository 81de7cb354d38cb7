"""The audit: a recount of the ballot ledger against the counters and the voters, signed.

An operator prints a summary an observer can keep; `audit-verify` later proves that a saved
summary is the one the service signed, unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from typing import Any

from webhook.config import Config
from webhook.core.ledger import recount
from webhook.core.polls import Poll
from webhook.runtime import Runtime

SIGNATURE_FIELD = "signature"
DERIVED_KEY_MESSAGE = b"audit-summary"
ATTEMPTS = 3
"""Recounts tried before a mismatch is reported: votes tallied during a recount of a live
poll can make one read inconsistent; tampering shows in every attempt."""
RETRY_PAUSE_S = 0.2


def audit_key(config: Config) -> bytes:
    """The key that signs summaries: AUDIT_SECRET, else one derived from VOTER_ID_SECRET."""
    if config.audit_secret:
        return config.audit_secret.encode()
    return hmac.new(config.voter_id_secret.encode(), DERIVED_KEY_MESSAGE, hashlib.sha256).digest()


def audit_summary(
    rt: Runtime, poll: Poll, *, attempts: int = ATTEMPTS, pause_s: float = RETRY_PAUSE_S
) -> dict[str, Any]:
    """Recount a poll's ledger and compare it with its counters and its distinct voters."""
    for attempt in range(max(1, attempts)):
        if attempt:
            time.sleep(pause_s)
        result = recount(rt.redis, poll)
        if result.matches:
            break
    ballots = sum(result.recounted.values())
    voters = result.voters_claimed - result.votes_pending
    return {
        "poll": poll.id,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "counters": dict(result.counters),
        "recount": dict(result.recounted),
        "ballots": ballots,
        "voters": voters,
        "pending": result.votes_pending,
        "accounts": result.accounts_claimed,
        "matches": result.matches,
    }


def canonical(summary: dict[str, Any]) -> bytes:
    """The bytes a signature covers: JSON with sorted keys and no spaces."""
    return json.dumps(summary, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign_summary(summary: dict[str, Any], key: bytes) -> str:
    """Hex HMAC-SHA256 of a summary's canonical JSON."""
    return hmac.new(key, canonical(summary), hashlib.sha256).hexdigest()


def verify_summary(summary: dict[str, Any], signature: str, key: bytes) -> bool:
    """Whether a signature was made with this key over exactly this summary."""
    if not isinstance(signature, str):
        return False
    return hmac.compare_digest(sign_summary(summary, key).encode(), signature.strip().lower().encode())


def signed_document(summary: dict[str, Any], key: bytes) -> dict[str, Any]:
    """The summary with its signature added, as `audit` prints it."""
    return {**summary, SIGNATURE_FIELD: sign_summary(summary, key)}


def verify_document(document: Any, key: bytes) -> bool:
    """Whether a saved document (a summary with its signature field) is intact."""
    if not isinstance(document, dict) or not isinstance(document.get(SIGNATURE_FIELD), str):
        return False
    summary = {k: v for k, v in document.items() if k != SIGNATURE_FIELD}
    return verify_summary(summary, document[SIGNATURE_FIELD], key)
