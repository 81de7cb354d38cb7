"""The one place that connects to Redis: the web, the workers, the CLI and the dashboard all come here.

Redis is either one server (a URL) or a primary with replicas watched by Sentinels: then every
connection is made to the primary the Sentinels name at that moment, so a client follows a
failover by itself. redis-py retries nothing here (its Sentinel client's default): a failed
command fails at once, the web answers 503 and the messenger retries; a worker's job fails and
the vote stays queued in its stream.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, field

from redis import Redis
from redis.exceptions import RedisError
from redis.sentinel import Sentinel

SOCKET_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 1.0
HEALTH_CHECK_INTERVAL_S = 30
SENTINEL_TIMEOUT_S = 0.5
"""Per Sentinel asked for the primary's address: a dead or stalled one is skipped quickly."""
DEFAULT_WAIT_TIMEOUT_MS = 500


@dataclass(frozen=True)
class ReplicaWait:
    """How many replicas must hold a vote before it is acknowledged, and how long to wait for them."""

    replicas: int = 0
    """0: acknowledge once the primary has the write (what a single server can do)."""
    timeout_ms: int = DEFAULT_WAIT_TIMEOUT_MS


NO_WAIT = ReplicaWait()
"""Acknowledge a write once the primary has it."""


@dataclass(frozen=True)
class RedisSettings:
    """Where the service's Redis is: a URL, or Sentinels and the name of the primary they watch."""

    url: str = ""
    sentinels: tuple[tuple[str, int], ...] = ()
    """(host, port) of each Sentinel; when given, url is not used."""
    master: str = ""
    """The name the Sentinels monitor the primary under (`sentinel monitor NAME ...`)."""
    password: str | None = field(default=None, repr=False)
    """The data nodes' password (requirepass); with a URL it may also be inside the URL."""
    sentinel_password: str | None = field(default=None, repr=False)
    wait: ReplicaWait = NO_WAIT


def connect(settings: RedisSettings) -> Redis:
    """A Redis client with timeouts (an unreachable Redis fails fast instead of hanging).

    With Sentinels it is redis-py's master_for client: each new connection asks the Sentinels
    where the primary is, and idle connections to a former primary are dropped once they name
    another one.
    """
    options = {
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
    }
    if settings.password is not None:
        options["password"] = settings.password
    if not settings.sentinels:
        return Redis.from_url(settings.url, **options)
    sentinel = Sentinel(
        list(settings.sentinels),
        sentinel_kwargs={
            "socket_timeout": SENTINEL_TIMEOUT_S,
            "socket_connect_timeout": SENTINEL_TIMEOUT_S,
            "password": settings.sentinel_password,
        },
    )
    return sentinel.master_for(settings.master, **options)


def recheck_primary(redis: Redis) -> None:
    """Ask the Sentinels (if any) again where the primary is; if it moved, connections to the old one go.

    Connections that outlive a primary's stall stay open to it when it resumes, and it accepts
    writes as a primary until Sentinel demotes it (~10 s later). A write no replica confirms is
    the sign: after this, the next command reaches the primary the Sentinels name.
    """
    lookup = getattr(redis.connection_pool, "get_master_address", None)
    if lookup is not None:
        with suppress(RedisError):  # no primary named right now: the next connection asks again
            lookup()
