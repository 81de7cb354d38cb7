"""What a worker process builds once: its runtime, channel senders, send loop and stream consumer name."""

from __future__ import annotations

import asyncio
import atexit
import functools
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TypeVar

from redis import Redis
from redis.exceptions import ResponseError

from webhook.channels import registry
from webhook.channels.base import ChannelSender
from webhook.config import Config
from webhook.runtime import Runtime
from webhook.store.pipeline import KICK_TTL_MS

A = TypeVar("A")
T = TypeVar("T")

SEND_CONCURRENCY = 256
"""Confirmations in flight at once per sender worker (Viber answers in ~100 ms)."""


@functools.cache
def worker_runtime() -> Runtime:
    """The runtime of this worker process, from its environment."""
    return Runtime.build(Config.from_environ())


@functools.cache
def channel_senders() -> dict[str, ChannelSender]:
    """This process's sender of each configured channel, for send_loop(), closed when the process exits."""
    config = worker_runtime().config
    senders = {c.name: c.sender(config, concurrency=SEND_CONCURRENCY) for c in registry.configured(config)}
    for channel_sender in senders.values():
        atexit.register(channel_sender.close)
    return senders


@functools.cache
def send_loop() -> asyncio.AbstractEventLoop:
    """This process's event loop for Viber sends, running forever in a daemon thread."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="viber-send-loop", daemon=True).start()
    return loop


_running: set[asyncio.Task[None]] = set()
"""Tasks start_all() began and that have not finished (the loop itself keeps only weak references)."""


def start_all(
    loop: asyncio.AbstractEventLoop, run: Callable[[A], Awaitable[T]], jobs: list[tuple[A, Future[T]]]
) -> None:
    """From another thread, await run(arg) on the loop for each job into its future; one wake-up for all."""
    if jobs:
        loop.call_soon_threadsafe(_start_all, run, jobs)


def _start_all(run: Callable[[A], Awaitable[T]], jobs: list[tuple[A, Future[T]]]) -> None:
    """In the loop: a task per job unless its future was cancelled, held until it is done."""
    loop = asyncio.get_running_loop()
    for arg, future in jobs:
        if future.set_running_or_notify_cancel():
            task = loop.create_task(_run_into(run, arg, future))
            _running.add(task)
            task.add_done_callback(_running.discard)


async def _run_into(run: Callable[[A], Awaitable[T]], arg: A, future: Future[T]) -> None:
    """Await run(arg); its result or exception goes to the future another thread waits on."""
    try:
        result = await run(arg)
    except BaseException as exc:
        future.set_exception(exc)
        if not isinstance(exc, Exception):
            raise
    else:
        future.set_result(result)


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
