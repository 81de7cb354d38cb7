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
from workers.context import StreamReader, consumer_name, ensure_group, worker_runtime

log = logging.getLogger(__name__)

BATCH_SIZE = 500
"""Votes stored and counted by one Lua call."""
STALE_MS = 30_000
"""A vote read by a consumer that has not finished it within this time (ms) is taken over."""
DRAIN_BUDGET_S = 20.0
"""A drain job hands over to a fresh job after this long (seconds), so none runs forever."""
IDLE_S = 1.0
"""A drain job waits this long for more votes before it ends (seconds): one job per burst."""
GATHER_S = 0.02
"""After a partial batch, wait this long so the next batch gathers more votes (group commit)."""


def drain_votes() -> int:
    """RQ job: tally queued votes while they keep coming; returns how many were counted."""
    return drain(worker_runtime(), consumer_name(), idle_s=IDLE_S, gather_s=GATHER_S)


def drain(
    rt: Runtime,
    consumer: str,
    *,
    budget_s: float = DRAIN_BUDGET_S,
    idle_s: float = 0.0,
    gather_s: float = 0.0,
) -> int:
    """Tally queued votes until none has come for idle_s (or the time budget is spent)."""
    redis = rt.redis
    ensure_group(redis, keys.VOTES_STREAM, keys.TALLY_GROUP)
    reader = StreamReader(redis, keys.VOTES_STREAM, keys.TALLY_GROUP, consumer, STALE_MS, keys.KICK_TALLY)
    deadline = time.monotonic() + budget_s
    counted = 0
    while time.monotonic() < deadline:
        reader.hold_kick()
        entries = reader.read(BATCH_SIZE, block_ms=int(idle_s * 1000) or None)
        if not entries:
            reader.release_kick()
            entries = reader.read(BATCH_SIZE)
            if not entries:
                return counted
        counted += apply_batch(rt, entries)
        if len(entries) < BATCH_SIZE and gather_s:
            time.sleep(gather_s)
    reader.hold_kick()
    kick(Stage.TALLY, connection=redis)
    return counted


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
