"""Casting votes: the webhook's atomic claim-and-queue step, poll state and live counts."""

from __future__ import annotations

import time
from enum import StrEnum

from redis import Redis

from webhook import keys
from webhook.kick import KICK_TTL_MS, Stage, kick
from webhook.polls import Poll, PollStatus
from webhook.scripts import Scripts
from webhook.sealing import SealedReceiver

PHONE_LINK_TTL_S = 30 * 24 * 3600
"""How long a verified phone number stays linked to a Viber voter (seconds)."""
PHONE_ASKED_TTL_S = 3600
MESSAGE_TAG_MODULO = 4096
"""A message token is remembered in a claim as token mod 4096: enough to tell Viber's retry
of the vote (same token) from a second tap (another token); a clash only skips one
"already voted" reply."""


class CastOutcome(StrEnum):
    """What happened to a vote the webhook received."""

    ACCEPTED = "accepted"
    RETRY = "retry"
    DUPLICATE = "duplicate"
    NOT_OPEN = "not_open"
    CLOSED = "closed"


class BallotBox:
    """The vote-side Redis operations, on one explicit connection."""

    def __init__(self, *, connection: Redis, scripts: Scripts | None = None) -> None:
        """Bind to a Redis connection."""
        self.redis = connection
        self.scripts = scripts or Scripts.register(connection)

    def cast(
        self,
        poll: Poll,
        voter: bytes,
        option_index: int,
        *,
        message_token: int,
        receiver: SealedReceiver,
        language: str,
        now: float | None = None,
    ) -> CastOutcome:
        """Claim the voter and queue the vote atomically; kick a tally job when needed."""
        now = time.time() if now is None else now
        outcome, must_kick = self.scripts.cast(
            keys=[
                keys.state(poll.id),
                keys.voters(poll.id, voter),
                keys.VOTES_STREAM,
                keys.KICK_TALLY,
                keys.STATS,
            ],
            args=[
                poll.scheduled_status(now).value,
                keys.field(voter),
                message_token % MESSAGE_TAG_MODULO,
                poll.id,
                voter,
                option_index,
                receiver,
                language,
                int(now),
                KICK_TTL_MS,
            ],
        )
        if must_kick:
            kick(Stage.TALLY, connection=self.redis)
        return CastOutcome(outcome.decode())

    def status(self, poll: Poll, now: float | None = None) -> PollStatus:
        """The poll's status: an operator's override, else its schedule."""
        override = self.redis.get(keys.state(poll.id))
        if override is not None:
            return PollStatus(override.decode())
        return poll.scheduled_status(time.time() if now is None else now)

    def set_status(self, poll: Poll, status: PollStatus | None) -> None:
        """Open or close a poll by hand, or (None) go back to its schedule."""
        if status is None:
            self.redis.delete(keys.state(poll.id))
        elif status is PollStatus.NOT_OPEN:
            raise ValueError("a poll can be opened or closed by hand, not un-opened")
        else:
            self.redis.set(keys.state(poll.id), status.value)

    def counts(self, poll: Poll) -> dict[str, int]:
        """Votes counted per option id, every option present."""
        raw = self.redis.hgetall(keys.counts(poll.id))
        stored = {k.decode(): int(v) for k, v in raw.items()}
        return {option.id: stored.get(option.id, 0) for option in poll.options}

    def phone_voter(self, viber_voter: bytes) -> bytes | None:
        """The phone-number voter key this Viber voter verified, if any."""
        return self.redis.get(keys.phone_link(viber_voter))

    def link_phone(self, viber_voter: bytes, phone_voter: bytes) -> None:
        """Remember the phone-number identity a Viber voter shared."""
        self.redis.set(keys.phone_link(viber_voter), phone_voter, ex=PHONE_LINK_TTL_S)

    def mark_phone_asked(self, viber_voter: bytes) -> bool:
        """Note that the voter was asked for their phone; False if they already were."""
        return bool(self.redis.set(keys.phone_asked(viber_voter), "1", nx=True, ex=PHONE_ASKED_TTL_S))
