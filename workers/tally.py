"""The tally job: store queued votes as ballots and count them, a batch per Redis call."""

from __future__ import annotations

import logging
import time

from webhook import keys
from webhook.errors import UnknownPoll
from webhook.identity import receipt_code
from webhook.kick import KICK_TTL_MS, Stage, kick
from webhook.ledger import pack_ballot
from webhook.runtime import Runtime
from workers.context import consumer_name, ensure_group, read_batch, worker_runtime

log = logging.getLogger(__name__)

BATCH_SIZE = 500
"""Votes stored and counted by one Lua call."""
STALE_MS = 30_000
"""A vote read by a consumer that has not finished it within this time (ms) is taken over."""
DRAIN_BUDGET_S = 20.0
"""A drain job hands over to a fresh job after this long (seconds), so none runs forever."""


def drain_votes() -> int:
    """RQ job: tally every queued vote; returns how many were counted."""
    return drain(worker_runtime(), consumer_name())


def drain(rt: Runtime, consumer: str, *, budget_s: float = DRAIN_BUDGET_S) -> int:
    """Tally queued votes until none is left (or the time budget is spent)."""
    redis = rt.redis
    ensure_group(redis, keys.VOTES_STREAM, keys.TALLY_GROUP)
    deadline = time.monotonic() + budget_s
    counted = 0
    while True:
        entries = _read(rt, consumer)
        if not entries:
            redis.delete(keys.KICK_TALLY)
            entries = _read(rt, consumer)
            if not entries:
                return counted
        counted += apply_batch(rt, entries)
        if time.monotonic() > deadline:
            redis.set(keys.KICK_TALLY, "1", px=KICK_TTL_MS)
            kick(Stage.TALLY, connection=redis)
            return counted


def _read(rt: Runtime, consumer: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The next batch of votes for this consumer."""
    return read_batch(
        rt.redis, keys.VOTES_STREAM, keys.TALLY_GROUP, consumer, count=BATCH_SIZE, stale_ms=STALE_MS
    )


def apply_batch(rt: Runtime, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> int:
    """Store and count a batch of votes in one atomic call; returns how many were new."""
    script_keys = [keys.VOTES_STREAM, keys.OUTBOX_STREAM, keys.KICK_SEND]
    args: list[bytes | str | int] = []
    batched = 0
    for entry_id, fields in entries:
        try:
            poll = rt.polls.get(fields[b"p"].decode())
            voter, receiver = fields[b"k"], fields[b"to"]
            index = int(fields[b"o"])
            option = poll.options[index]
            value = pack_ballot(index, int(fields[b"t"]))
        except (KeyError, ValueError, IndexError, UnicodeDecodeError, UnknownPoll):
            log.error("vote %s cannot be tallied (unknown poll or option); left queued", entry_id)
            continue
        script_keys += [keys.ballots(poll.id, voter), keys.counts(poll.id), keys.minutes(poll.id)]
        args += [entry_id, keys.field(voter), value, option.id, receiver, poll.id]
        args += [fields.get(b"l", b"en"), receipt_code(voter), int(fields[b"t"]) // 60]
        batched += 1
    if not batched:
        return 0
    counted, must_kick = rt.ballot_box.scripts.tally(
        keys=script_keys, args=[keys.TALLY_GROUP, batched, KICK_TTL_MS, *args]
    )
    if must_kick:
        kick(Stage.SEND, connection=rt.redis)
    log.info("tallied %d votes (%d new)", batched, counted)
    return int(counted)
