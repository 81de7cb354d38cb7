"""The objects one process works with: config, Redis connection, polls, stores and conversations."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app
from redis import Redis

from webhook.config import Config
from webhook.core.ballot_box import BallotBox
from webhook.core.conversation import Conversation
from webhook.core.outbox import Outbox, ReplyLimits
from webhook.core.polls import PollBook, load_polls
from webhook.core.sealing import ReceiverSeal
from webhook.store.connection import connect
from webhook.store.scripts import Scripts

EXTENSION = "viber_vote"


@dataclass(frozen=True)
class Runtime:
    """Everything a request, job or command needs, built once per process."""

    config: Config
    redis: Redis
    polls: PollBook
    ballot_box: BallotBox
    outbox: Outbox
    seal: ReceiverSeal
    _conversations: dict[str, Conversation] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(cls, config: Config) -> Runtime:
        """Connect lazily to Redis and load the poll file (loud if it is invalid)."""
        redis = connect(config.redis)
        scripts = Scripts.register(redis)
        return cls(
            config=config,
            redis=redis,
            polls=load_polls(config.poll_file),
            ballot_box=BallotBox(connection=redis, scripts=scripts, wait=config.redis.wait),
            outbox=Outbox(connection=redis, scripts=scripts),
            seal=ReceiverSeal(config.voter_id_secret),
        )

    def conversation(self, channel: str, *, seen_ttl_s: int) -> Conversation:
        """The conversation with one channel's voters (built on first use, then reused)."""
        found = self._conversations.get(channel)
        if found is None:
            limits = ReplyLimits(self.config.reply_rate_limit, self.config.reply_rate_window_s, seen_ttl_s)
            found = Conversation(
                channel,
                secret=self.config.voter_id_secret,
                polls=self.polls,
                ballot_box=self.ballot_box,
                outbox=self.outbox,
                seal=self.seal,
                limits=limits,
            )
            self._conversations[channel] = found
        return found


def runtime() -> Runtime:
    """The current Flask app's runtime."""
    return current_app.extensions[EXTENSION]
