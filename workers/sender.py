"""The send job: deliver queued replies through their channels concurrently; retry, park or drop failures.

The drain thread reads replies and words them; each entry's channel renders and sends it, all sends
running concurrently on the process's event loop. A second channel adds a sender, not a branch here.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import replace
from queue import Empty, SimpleQueue

from redis.exceptions import RedisError

from webhook.channels.base import ChannelSender
from webhook.core import facts, texts
from webhook.core.errors import UnreadableReceiver
from webhook.core.outbox import ReplyKind, SendResult, SendStatus
from webhook.runtime import Runtime
from webhook.store import keys
from webhook.store.pipeline import Stage, kick
from webhook.store.streams import BadEntry, ReplyEntry
from workers.context import (
    SEND_CONCURRENCY,
    Entry,
    StreamReader,
    channel_senders,
    consumer_name,
    ensure_group,
    send_loop,
    start_all,
    worker_runtime,
)

log = logging.getLogger(__name__)

BATCH_SIZE = 200
STALE_MS = 120_000
"""A reply read by a sender that has not finished it within this time (ms) is taken over;
longer than one send can take with its timeouts and quick retries."""
DRAIN_BUDGET_S = 20.0
IDLE_S = 1.0
"""A drain job waits this long for more replies before it ends (seconds)."""
SETTLE_EVERY_S = 0.02
"""Finished sends are acknowledged together, about this often at most (seconds)."""
REFILL_AT = SEND_CONCURRENCY // 4
"""Read more replies once this many sends have finished (fewer Redis round trips)."""
HOLD_EVERY_S = 0.5
"""How often a running drain renews its kick flag (well within KICK_TTL_MS)."""
RETRY_DELAYS_S = (2, 10, 60, 300, 900, 1800)
"""Wait before each further attempt (seconds); after the last, the reply is dead-lettered."""
MOVE_DUE_EVERY_S = 1.0
"""How often a running drain puts due retries back itself (seconds): during a burst the sweep,
queued behind the tally job, can be late by that job's whole budget."""


def drain_outbox() -> Counter[str]:
    """RQ job: send queued replies while they keep coming; returns how many ended each way."""
    return drain(worker_runtime(), channel_senders(), consumer_name(), idle_s=IDLE_S)


def drain(
    rt: Runtime,
    senders: Mapping[str, ChannelSender],
    consumer: str,
    *,
    budget_s: float = DRAIN_BUDGET_S,
    idle_s: float = 0.0,
) -> Counter[str]:
    """Keep SEND_CONCURRENCY replies in flight until none has come for idle_s (or the budget is spent)."""
    redis = rt.redis
    ensure_group(redis, keys.OUTBOX_STREAM, keys.SEND_GROUP)
    reader = StreamReader(redis, keys.OUTBOX_STREAM, keys.SEND_GROUP, consumer, STALE_MS, keys.KICK_SEND)
    deadline = time.monotonic() + budget_s
    in_flight: dict[Future[SendResult], Entry] = {}
    completed: SimpleQueue[Future[SendResult]] = SimpleQueue()
    totals: Counter[str] = Counter()
    hold_again_at = move_due_at = 0.0
    while True:
        room = SEND_CONCURRENCY - len(in_flight)
        accepting = time.monotonic() < deadline
        if accepting and (room >= REFILL_AT or not in_flight):
            if time.monotonic() >= hold_again_at:
                reader.hold_kick()
                hold_again_at = time.monotonic() + HOLD_EVERY_S
            if time.monotonic() >= move_due_at:
                _move_due_retries(rt)
                move_due_at = time.monotonic() + MOVE_DUE_EVERY_S
            block_ms = (int(idle_s * 1000) or None) if not in_flight else None
            entries = reader.read(min(room, BATCH_SIZE), block_ms=block_ms)
            if not entries and not in_flight:
                reader.release_kick()
                entries = reader.read(BATCH_SIZE)
                if not entries:
                    return totals
            for entry, future in zip(entries, _send_all(rt, senders, entries), strict=True):
                in_flight[future] = entry
                future.add_done_callback(completed.put)
        if not in_flight:
            break
        finished = _collect(completed, min(len(in_flight), REFILL_AT), SETTLE_EVERY_S)
        if finished:
            totals.update(settle(rt, [(in_flight.pop(f), outcome_of(f)) for f in finished]))
    reader.hold_kick()
    kick(Stage.SEND, connection=redis)
    return totals


def outcome_of(future: Future[SendResult]) -> SendResult:
    """A finished send's result; an exception a channel did not classify is a retry of that reply alone
    (one odd answer must not end the drain, which would leave every reply it read pending)."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 (any failure of one send is that send's, not the drain's)
        log.warning("a send failed unclassified (%s): retried later", type(exc).__name__)
        return SendResult(SendStatus.RETRY, f"unclassified: {type(exc).__name__}")


def _move_due_retries(rt: Runtime) -> None:
    """Requeue due retries; a failure is left to the sweep rather than ending sends in flight."""
    try:
        rt.outbox.move_due_retries()
    except RedisError as exc:
        log.warning("due retries not requeued by the send job (the sweep will): %s", type(exc).__name__)


def _collect(
    completed: SimpleQueue[Future[SendResult]], most: int, window_s: float
) -> list[Future[SendResult]]:
    """Sends that finish within a window, up to `most` (enough to refill), to settle together."""
    finished: list[Future[SendResult]] = []
    until = time.monotonic() + window_s
    while len(finished) < most:
        try:
            finished.append(completed.get(timeout=max(0.0, until - time.monotonic())))
        except Empty:
            break
    return finished


def settle(rt: Runtime, finished: list[tuple[Entry, SendResult]]) -> Counter[str]:
    """Acknowledge finished sends in one transaction, parking retries and dead letters."""
    now = time.time()
    outcomes: Counter[str] = Counter()
    pipe = rt.redis.pipeline(transaction=True)
    for (entry_id, fields), result in finished:
        status = _settle(pipe, entry_id, fields, result, now)
        outcomes[status.value] += 1
        pipe.xack(keys.OUTBOX_STREAM, keys.SEND_GROUP, entry_id)
        pipe.xdel(keys.OUTBOX_STREAM, entry_id)
    for status, n in outcomes.items():
        pipe.hincrby(keys.STATS, f"send_{status}", n)
    pipe.execute()
    log.debug("sent replies: %s", dict(outcomes))
    return outcomes


def _send_all(
    rt: Runtime, senders: Mapping[str, ChannelSender], entries: list[Entry]
) -> list[Future[SendResult]]:
    """Word outbox entries here, then start their sends on the send loop together; a future of each."""
    futures: list[Future[SendResult]] = [Future() for _ in entries]
    sends: list[tuple[Delivery, Future[SendResult]]] = []
    for (_, fields), future in zip(entries, futures, strict=True):
        prepared = prepare(rt, senders, fields)
        if isinstance(prepared, SendResult):
            future.set_result(prepared)
        else:
            sends.append((prepared, future))
    start_all(send_loop(), _deliver, sends)
    return futures


Delivery = tuple[ChannelSender, texts.ReplyContent, str]
"""A reply ready to go: its channel's sender, its content, the receiver's messenger id."""


async def _deliver(delivery: Delivery) -> SendResult:
    """Send one prepared reply through its channel."""
    channel_sender, content, receiver = delivery
    return await channel_sender.send(content, receiver)


def prepare(
    rt: Runtime, senders: Mapping[str, ChannelSender], fields: dict[bytes, bytes]
) -> Delivery | SendResult:
    """An outbox entry worded and addressed, or a DEAD result (unknown poll, kind or channel)."""
    try:
        entry = ReplyEntry.parse(fields)
        kind = ReplyKind(entry.kind)
    except (BadEntry, ValueError):
        return SendResult(SendStatus.DEAD, "unreadable entry or unknown reply kind")
    poll = rt.polls.find(entry.poll)
    channel_sender = senders.get(entry.channel)
    if poll is None or channel_sender is None:
        return SendResult(SendStatus.DEAD, f"unknown poll or channel {entry.channel!r}")
    try:
        receiver = rt.seal.open(entry.receiver)
    except UnreadableReceiver as exc:
        return SendResult(SendStatus.DEAD, f"receiver unreadable: {exc}")
    wait_s = channel_sender.admit(receiver)
    if wait_s > 0:
        return SendResult(SendStatus.DEFERRED, f"{entry.channel} send limit", retry_after_s=wait_s)
    known = facts.look_up(rt.ballot_box, poll, kind, entry.receipt)
    content = texts.reply(poll, kind, entry.language, known, receipt=entry.receipt or "", option=entry.option)
    return channel_sender, content, receiver


def _settle(pipe, entry_id: bytes, fields: dict[bytes, bytes], result: SendResult, now: float) -> SendStatus:  # type: ignore[no-untyped-def]
    """Queue a failed reply's retry or dead letter; returns the entry's final status."""
    if result.status in (SendStatus.SENT, SendStatus.DROPPED):
        return result.status
    try:
        entry = ReplyEntry.parse(fields)
    except BadEntry:
        parked = json.dumps(
            {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}
        )
        pipe.rpush(keys.OUTBOX_DEAD, parked)
        return SendStatus.DEAD
    if result.status is SendStatus.DEFERRED:  # held back by the channel's limits: no attempt spent
        delay_s = result.retry_after_s or RETRY_DELAYS_S[0]
        pipe.zadd(keys.OUTBOX_RETRY, {entry.parked(entry_id.decode(), result.reason): now + delay_s})
        return SendStatus.DEFERRED
    entry = replace(entry, attempts=entry.attempts + 1)
    if result.status is SendStatus.RETRY and entry.attempts <= len(RETRY_DELAYS_S):
        delay_s = max(RETRY_DELAYS_S[entry.attempts - 1], result.retry_after_s or 0.0)
        pipe.zadd(keys.OUTBOX_RETRY, {entry.parked(entry_id.decode(), result.reason): now + delay_s})
        return SendStatus.RETRY
    pipe.rpush(keys.OUTBOX_DEAD, entry.parked(entry_id.decode(), result.reason))
    log.warning("reply dead-lettered after %d attempts: %s", entry.attempts, result.reason)
    return SendStatus.DEAD
