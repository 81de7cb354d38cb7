"""The objects one process works with: config, Redis connection, polls and stores."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from redis import Redis

from webhook.ballot_box import BallotBox
from webhook.config import Config
from webhook.outbox import Outbox
from webhook.polls import PollBook, load_polls
from webhook.scripts import Scripts
from webhook.sealing import ReceiverSeal

REDIS_SOCKET_TIMEOUT_S = 2.0
REDIS_CONNECT_TIMEOUT_S = 1.0
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

    @classmethod
    def build(cls, config: Config) -> Runtime:
        """Connect lazily to Redis and load the poll file (loud if it is invalid)."""
        redis = connect(config.redis_url)
        scripts = Scripts.register(redis)
        return cls(
            config=config,
            redis=redis,
            polls=load_polls(config.poll_file),
            ballot_box=BallotBox(connection=redis, scripts=scripts),
            outbox=Outbox(connection=redis, scripts=scripts),
            seal=ReceiverSeal(config.voter_id_secret),
        )


def connect(redis_url: str) -> Redis:
    """A Redis client with timeouts, so an unreachable Redis fails fast instead of hanging."""
    return Redis.from_url(
        redis_url,
        socket_timeout=REDIS_SOCKET_TIMEOUT_S,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        health_check_interval=30,
    )


def runtime() -> Runtime:
    """The current Flask app's runtime."""
    return current_app.extensions[EXTENSION]
