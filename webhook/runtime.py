"""The objects one process works with: config, Redis connection, polls, stores and conversations."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app
from redis import Redis

from webhook.config import Config, StoreSettings
from webhook.core.ballot_box import BallotBox
from webhook.core.conversation import Conversation
from webhook.core.outbox import Outbox, ReplyLimits
from webhook.core.polls import PollBook, load_polls
from webhook.core.sealing import ReceiverSeal
from webhook.store.connection import connect
from webhook.store.scripts import Scripts

EXTENSION = "viber_vote"
STORE_EXTENSION = "viber_vote_store"
"""Where an app without a runtime (the CLI's, settings missing) keeps the store its commands built."""


@dataclass(frozen=True)
class Store:
    """The polls, and the ballot box and outbox on one Redis connection: what a Redis-only command needs."""

    redis: Redis
    polls: PollBook
    ballot_box: BallotBox
    outbox: Outbox

    @classmethod
    def open(cls, settings: StoreSettings) -> Store:
        """Connect lazily to Redis and load the poll file (loud if it is invalid)."""
        redis = connect(settings.redis)
        scripts = Scripts.register(redis)
        return cls(
            redis=redis,
            polls=load_polls(settings.poll_file),
            ballot_box=BallotBox(connection=redis, scripts=scripts, wait=settings.redis.wait),
            outbox=Outbox(connection=redis, scripts=scripts),
        )


@dataclass(frozen=True)
class Runtime(Store):
    """Everything a request, job or command needs, built once per process."""

    config: Config
    seal: ReceiverSeal
    _conversations: dict[str, Conversation] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(cls, config: Config) -> Runtime:
        """The store of the config's Redis and poll file, with the config and the seal of its secret."""
        store = Store.open(config.store)
        return cls(
            redis=store.redis,
            polls=store.polls,
            ballot_box=store.ballot_box,
            outbox=store.outbox,
            config=config,
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
    """The current app's runtime (the CLI's app, built without one, reads every setting now: loud)."""
    extensions = current_app.extensions
    if EXTENSION not in extensions:
        extensions[EXTENSION] = Runtime.build(Config.from_environ())
    return extensions[EXTENSION]


def store() -> Store:
    """The current app's store: its runtime's, else one built from REDIS_URL and POLL_FILE alone."""
    extensions = current_app.extensions
    if EXTENSION in extensions:
        return extensions[EXTENSION]
    if STORE_EXTENSION not in extensions:
        extensions[STORE_EXTENSION] = Store.open(StoreSettings.from_environ())
    return extensions[STORE_EXTENSION]
