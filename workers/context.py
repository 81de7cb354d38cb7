"""What a worker process builds once: its runtime, Viber client and stream consumer name."""

from __future__ import annotations

import functools
import os
import socket
import time
from dataclasses import dataclass, field

from redis import Redis
from redis.exceptions import ResponseError

from webhook.config import Config
from webhook.kick import KICK_TTL_MS
from webhook.runtime import Runtime
from webhook.viber_client import ViberClient

SEND_CONCURRENCY = 256
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


Entry = tuple[bytes, dict[bytes, bytes]]

CLAIM_EVERY_S = 5.0
"""How often a drain looks for entries a dead consumer left behind (seconds)."""


@dataclass
class StreamReader:
    """One consumer's view of a pipeline stream, and the stage's kick flag it holds while draining."""

    redis: Redis
    stream: str
    group: str
    consumer: str
    stale_ms: int
    kick_flag: str
    _next_claim_at: float = field(default=0.0, repr=False)

    def read(self, count: int, *, block_ms: int | None = None) -> list[Entry]:
        """Entries abandoned by a dead consumer (checked now and then), else new ones; at most count."""
        if time.monotonic() >= self._next_claim_at:
            self._next_claim_at = time.monotonic() + CLAIM_EVERY_S
            claimed = self._claim_stale(count)
            if claimed:
                return claimed
        fresh = self.redis.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=count, block=block_ms
        )
        return list(fresh[0][1]) if fresh else []

    def hold_kick(self) -> None:
        """Keep the kick flag set while this drain runs, so callers do not queue more drain jobs."""
        self.redis.set(self.kick_flag, "1", px=KICK_TTL_MS)

    def release_kick(self) -> None:
        """Let the next caller queue a drain job (the drain then reads once more before it stops)."""
        self.redis.delete(self.kick_flag)

    def _claim_stale(self, count: int) -> list[Entry]:
        """Take over entries another consumer read and never acknowledged within stale_ms."""
        claimed = self.redis.xautoclaim(
            self.stream, self.group, self.consumer, min_idle_time=self.stale_ms, start_id="0-0", count=count
        )
        vanished = [entry[0] for entry in claimed[1] if not entry[1]]
        if vanished:
            self.redis.xack(self.stream, self.group, *vanished)
        return [entry for entry in claimed[1] if entry[1]]
