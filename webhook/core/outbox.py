"""The outbox: replies waiting to be sent to voters, their retries and dead letters.

Entries are webhook/store/streams.py's ReplyEntry; they name their channel, and the send worker
hands each to that channel. The receiver's messenger id is sealed and kept only until the reply
is sent (or given up on).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from redis import Redis

from webhook.store import keys
from webhook.store.pipeline import KICK_TTL_MS, Stage, kick
from webhook.store.scripts import Scripts
from webhook.store.streams import ReplyEntry

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
    PHONE_UNPROVEN = "phone_unproven"
    PHONE_DESKTOP = "phone_desktop"


class ReplyOutcome(StrEnum):
    """What happened to a reply the webhook asked for."""

    QUEUED = "queued"
    RETRY = "retry"
    LIMITED = "limited"


class SendStatus(StrEnum):
    """The fate of one attempt to deliver a reply, whatever the channel."""

    SENT = "sent"
    RETRY = "retry"
    DEAD = "dead"
    DROPPED = "dropped"
    """The voter is gone (unsubscribed, blocked the bot): sending again cannot help."""
    DEFERRED = "deferred"
    """Not sent yet because of the channel's send limits: parked for retry_after_s, no attempt spent."""


@dataclass(frozen=True)
class SendResult:
    """A send's status and a short reason (never the payload or a token)."""

    status: SendStatus
    reason: str
    retry_after_s: float | None = None
    """How long the channel asked us to wait before the next attempt, if it said."""


@dataclass(frozen=True)
class ReplyLimits:
    """How replies are rationed: per voter per window, and how long a callback is remembered."""

    rate_limit: int
    rate_window_s: int
    seen_ttl_s: int
    """A callback's token is remembered this long (s): as long as its channel may deliver it again."""


class Outbox:
    """Redis operations on the outbox, on one explicit connection."""

    def __init__(self, *, connection: Redis, scripts: Scripts | None = None) -> None:
        """Bind to a Redis connection."""
        self.redis = connection
        self.scripts = scripts or Scripts.register(connection)

    def queue_reply(
        self, entry: ReplyEntry, *, voter: bytes, token: int, limits: ReplyLimits, count: str = ""
    ) -> ReplyOutcome:
        """Queue a reply once per callback token and within the voter's rate limit.

        count names a vv:stats counter to increment once for this callback (a retry does not).
        """
        outcome, must_kick = self.scripts.reply(
            keys=[
                keys.seen(entry.channel, token),
                keys.rate(voter),
                keys.OUTBOX_STREAM,
                keys.KICK_SEND,
                keys.STATS,
            ],
            args=[
                limits.seen_ttl_s,
                limits.rate_limit,
                limits.rate_window_s,
                KICK_TTL_MS,
                count,
                *entry.pairs(),
            ],
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

    def dead_letters(self) -> list[dict[str, Any]]:
        """Replies given up on, oldest first."""
        return [json.loads(raw) for raw in self.redis.lrange(keys.OUTBOX_DEAD, 0, -1)]

    def replay_dead(self) -> int:
        """Move every dead-lettered reply back into the outbox with a fresh attempt count."""
        replayed, must_kick = self.scripts.replay_dead(
            keys=[keys.OUTBOX_DEAD, keys.OUTBOX_STREAM, keys.KICK_SEND],
            args=[KICK_TTL_MS, ReplyEntry.ATTEMPTS],
        )
        if must_kick:
            kick(Stage.SEND, connection=self.redis)
        return int(replayed)
