"""The outbox: replies waiting to be sent to voters, their retries and dead letters.

An outbox entry is a flat map of short fields:
  k  ReplyKind value      to receiver's Viber id, sealed (kept only until the reply is sent)
  p  poll id              l  voter's language        n  send attempts so far
  r  receipt code (confirmations)                    o  option id (confirmations)
"""

from __future__ import annotations

import json
import time
from enum import StrEnum

from redis import Redis

from webhook import keys
from webhook.kick import KICK_TTL_MS, Stage, kick
from webhook.scripts import Scripts
from webhook.sealing import SealedReceiver

SEEN_TTL_S = 3600
"""Viber retries an unanswered callback for about an hour; remember its token that long."""
RETRY_BATCH = 500


class ReplyKind(StrEnum):
    """Which message a reply is."""

    CONFIRM = "confirm"
    ALREADY_VOTED = "already"
    HELP = "help"
    CLOSED = "closed"
    NOT_OPEN = "not_open"
    RESULTS = "results"
    CHECK = "check"
    ASK_PHONE = "ask_phone"
    PHONE_OK = "phone_ok"
    PHONE_REFUSED = "phone_refused"
    PHONE_INVALID = "phone_invalid"
    PHONE_COUNTRY_MISMATCH = "phone_country"
    PHONE_NOT_OWN = "phone_not_own"
    PHONE_OTHER_NUMBER = "phone_other"
    PHONE_BOUND_ELSEWHERE = "phone_elsewhere"
    PHONE_DESKTOP = "phone_desktop"


class ReplyOutcome(StrEnum):
    """What happened to a reply the webhook asked for."""

    QUEUED = "queued"
    RETRY = "retry"
    LIMITED = "limited"


class Outbox:
    """Redis operations on the outbox, on one explicit connection."""

    def __init__(self, *, connection: Redis, scripts: Scripts | None = None) -> None:
        """Bind to a Redis connection."""
        self.redis = connection
        self.scripts = scripts or Scripts.register(connection)

    def queue_reply(
        self,
        kind: ReplyKind,
        *,
        receiver: SealedReceiver,
        poll_id: str,
        language: str,
        voter: bytes,
        message_token: int,
        rate_limit: int,
        rate_window_s: int,
        receipt: str | None = None,
        count: str = "",
    ) -> ReplyOutcome:
        """Queue a reply once per callback token and within the voter's rate limit.

        count names a vv:stats counter to increment once for this callback (a retry does not).
        """
        entry = {"k": kind.value, "to": receiver, "p": poll_id, "l": language, "n": "0"}
        if receipt is not None:
            entry["r"] = receipt
        flat = [item for pair in entry.items() for item in pair]
        outcome, must_kick = self.scripts.reply(
            keys=[keys.seen(message_token), keys.rate(voter), keys.OUTBOX_STREAM, keys.KICK_SEND, keys.STATS],
            args=[SEEN_TTL_S, rate_limit, rate_window_s, KICK_TTL_MS, count, *flat],
        )
        if must_kick:
            kick(Stage.SEND, connection=self.redis)
        return ReplyOutcome(outcome.decode())

    def move_due_retries(self, now: float | None = None) -> int:
        """Put replies whose retry time has come back into the outbox."""
        moved, must_kick = self.scripts.retry_due(
            keys=[keys.OUTBOX_RETRY, keys.OUTBOX_STREAM, keys.KICK_SEND],
            args=[time.time() if now is None else now, RETRY_BATCH, KICK_TTL_MS],
        )
        if must_kick:
            kick(Stage.SEND, connection=self.redis)
        return int(moved)

    def dead_letters(self) -> list[dict[str, str]]:
        """Replies given up on, oldest first."""
        return [json.loads(raw) for raw in self.redis.lrange(keys.OUTBOX_DEAD, 0, -1)]

    def replay_dead(self) -> int:
        """Move every dead-lettered reply back into the outbox with a fresh attempt count."""
        replayed, must_kick = self.scripts.replay_dead(
            keys=[keys.OUTBOX_DEAD, keys.OUTBOX_STREAM, keys.KICK_SEND], args=[KICK_TTL_MS]
        )
        if must_kick:
            kick(Stage.SEND, connection=self.redis)
        return int(replayed)
