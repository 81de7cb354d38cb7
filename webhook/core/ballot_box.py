"""Casting votes: the webhook's atomic claim-and-queue step, poll state and live counts."""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum

from redis import Redis

from webhook.core.identity import VOTER_KEY_BYTES
from webhook.core.polls import Poll, PollStatus
from webhook.store import keys
from webhook.store.connection import NO_WAIT, ReplicaWait
from webhook.store.durable import execute, run_script
from webhook.store.pipeline import KICK_TTL_MS, Stage, kick
from webhook.store.scripts import Scripts
from webhook.store.streams import VoteEntry

MESSAGE_TAG_MODULO = 4096
"""A message token is remembered in a claim as its channel's initial and token mod 4096: enough to
tell a messenger's retry of the vote (same token) from a second tap (another token, or the same
number's other messenger); a clash within one channel only skips one "already voted" reply."""


def message_tag(channel: str, token: int) -> str:
    """What a claim remembers of the callback that made it ("v1234", "t87")."""
    return f"{channel[:1]}{token % MESSAGE_TAG_MODULO}"


class CastOutcome(StrEnum):
    """What happened to a vote the webhook received."""

    ACCEPTED = "accepted"
    RETRY = "retry"
    DUPLICATE = "duplicate"
    NOT_OPEN = "not_open"
    CLOSED = "closed"


class BindOutcome(StrEnum):
    """What binding a shared number to an account did."""

    BOUND = "bound"
    SAME = "same"
    OTHER_NUMBER = "other_number"
    BOUND_ELSEWHERE = "bound_elsewhere"


class Proof(StrEnum):
    """What the messenger vouched for when the number was shared."""

    OWNER = "P"
    """The messenger said the contact is the sender's own (Telegram's contact.user_id)."""
    COUNTRY = "C"
    """Only that the account's country is the number's (Viber's sender.country): a card of someone
    else's number from the same country cannot be told apart."""


@dataclass(frozen=True)
class Binding:
    """An account's number: its keyed hash, its region, and what the messenger vouched for.

    Stored as the phone key, then the two-letter region and the Proof letter; a binding an older
    version made holds the phone key alone (region and proof unknown).
    """

    phone: bytes
    region: str | None = None
    proof: Proof | None = None

    def stored(self) -> bytes:
        """The value the account's binding bucket holds."""
        if self.region is None or self.proof is None:
            return self.phone
        return self.phone + self.region.encode() + self.proof.value.encode()

    @classmethod
    def parse(cls, stored: bytes) -> Binding:
        """A binding from its stored value."""
        tail = stored[VOTER_KEY_BYTES:]
        if len(tail) != 3:
            return cls(stored[:VOTER_KEY_BYTES])
        try:
            return cls(stored[:VOTER_KEY_BYTES], tail[:2].decode(), Proof(tail[2:].decode()))
        except (UnicodeDecodeError, ValueError):
            return cls(stored[:VOTER_KEY_BYTES])


class BallotBox:
    """The vote-side Redis operations, on one explicit connection.

    Writes the caller acknowledges to a voter or an operator (a vote, a phone binding, opening or
    closing a poll) return only once `wait` replicas hold them (webhook/store/durable.py), else
    raise NotReplicated: what was acknowledged survives a failover.
    """

    def __init__(
        self, *, connection: Redis, scripts: Scripts | None = None, wait: ReplicaWait = NO_WAIT
    ) -> None:
        """Bind to a Redis connection; wait says how many replicas must confirm a write."""
        self.redis = connection
        self.scripts = scripts or Scripts.register(connection)
        self.wait = wait

    def cast(
        self, poll: Poll, vote: VoteEntry, *, message_token: int, account: bytes | None = None
    ) -> CastOutcome:
        """Claim the voter (and, in a phone poll, the account with it) and queue the vote atomically.

        vote.voter is the identity the ballot is stored under: the account, or in a phone poll the
        number; account is then the messenger account that holds the number, claimed in the same
        step so that neither can vote twice. A tally job is kicked when needed.

        Every outcome writes (a stats counter at least), so the replicas' confirmation also covers
        an earlier, unconfirmed attempt of the same vote that a retry now finds ("retry").
        """
        voter = vote.voter
        outcome, must_kick = run_script(
            self.redis,
            self.scripts.cast,
            self.wait,
            keys=[
                keys.state(poll.id),
                keys.voters(poll.id, voter),
                keys.accounts(poll.id, account) if account is not None else keys.voters(poll.id, voter),
                keys.VOTES_STREAM,
                keys.KICK_TALLY,
                keys.STATS,
            ],
            args=[
                poll.scheduled_status(vote.accepted_at).value,
                keys.field(voter),
                message_tag(vote.channel, message_token),
                keys.field(account) if account is not None else b"",
                KICK_TTL_MS,
                *vote.pairs(),
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
        if status is PollStatus.NOT_OPEN:
            raise ValueError("a poll can be opened or closed by hand, not un-opened")
        key = keys.state(poll.id)
        if status is None:
            execute(self.redis, self.wait, lambda pipe: pipe.delete(key))
        else:
            execute(self.redis, self.wait, lambda pipe: pipe.set(key, status.value))

    def counts(self, poll: Poll) -> dict[str, int]:
        """Votes counted per option id, every option present."""
        raw = self.redis.hgetall(keys.counts(poll.id))
        stored = {k.decode(): int(v) for k, v in raw.items()}
        return {option.id: stored.get(option.id, 0) for option in poll.options}

    def phone_of(self, channel: str, account: bytes) -> Binding | None:
        """The number an account of this messenger is bound to, if any.

        A link an older version made (a STRING with a TTL) is adopted as the first binding.
        """
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(keys.account_binding(channel, account), keys.field(account))
        pipe.get(keys.legacy_phone_link(account))
        bound, legacy = pipe.execute()
        if bound is None and legacy is not None:
            self._bind(channel, account, legacy, "adopt")
            bound = legacy
        return Binding.parse(bound) if bound is not None else None

    def bind_phone(self, channel: str, account: bytes, binding: Binding) -> BindOutcome:
        """Bind an account to a number for good, unless either is bound to another already."""
        self.phone_of(channel, account)  # an older version's link first becomes the binding
        return self._bind(channel, account, binding.stored(), "bind")

    def _bind(self, channel: str, account: bytes, stored: bytes, mode: str) -> BindOutcome:
        """Run the binding script ("bind" or "adopt"), confirmed by replicas: a binding is for good."""
        phone = stored[:VOTER_KEY_BYTES]
        outcome = run_script(
            self.redis,
            self.scripts.bind_phone,
            self.wait,
            keys=[
                keys.account_binding(channel, account),
                keys.phone_binding(channel, phone),
                keys.legacy_phone_link(account),
                keys.STATS,
            ],
            args=[keys.field(account), stored, keys.field(phone), account, mode, VOTER_KEY_BYTES],
        )
        return BindOutcome(outcome.decode())
