"""What a worker process builds once: its runtime, Viber client and stream consumer name."""

from __future__ import annotations

import functools
import os
import socket

from redis import Redis
from redis.exceptions import ResponseError

from webhook.config import Config
from webhook.runtime import Runtime
from webhook.viber_client import ViberClient

SEND_CONCURRENCY = 32
"""Confirmations in flight at once per sender worker (Viber answers in ~100 ms)."""


@functools.cache
def worker_runtime() -> Runtime:
    """The runtime of this worker process, from its environment."""
    return Runtime.build(Config.from_environ())


@functools.cache
def viber_client() -> ViberClient:
    """This process's pooled Viber API client."""
    config = worker_runtime().config
    return ViberClient(config.viber_api_url, config.viber_auth_token, pool_size=SEND_CONCURRENCY)


def consumer_name() -> str:
    """This process's name inside a stream's consumer group."""
    return f"{socket.gethostname()}-{os.getpid()}"


def ensure_group(redis: Redis, stream: str, group: str) -> None:
    """Create a stream's consumer group (and the stream) unless it exists."""
    try:
        redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def read_batch(
    redis: Redis, stream: str, group: str, consumer: str, *, count: int, stale_ms: int
) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Entries abandoned by a dead consumer first, else new ones; at most count."""
    claimed = redis.xautoclaim(stream, group, consumer, min_idle_time=stale_ms, start_id="0-0", count=count)
    entries = [entry for entry in claimed[1] if entry[1]]
    vanished = [entry[0] for entry in claimed[1] if not entry[1]]
    if vanished:
        redis.xack(stream, group, *vanished)
    if entries:
        return entries
    fresh = redis.xreadgroup(group, consumer, {stream: ">"}, count=count)
    return list(fresh[0][1]) if fresh else []
