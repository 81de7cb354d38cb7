"""The one place that connects to Redis: the web, the workers, the CLI and the dashboard all come here."""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis

SOCKET_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 1.0
HEALTH_CHECK_INTERVAL_S = 30


@dataclass(frozen=True)
class RedisSettings:
    """Where the service's Redis is."""

    url: str


def connect(settings: RedisSettings) -> Redis:
    """A Redis client with timeouts, so an unreachable Redis fails fast instead of hanging."""
    return Redis.from_url(
        settings.url,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
    )
