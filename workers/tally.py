"""The tally job: store queued votes as ballots and count them, a batch per Redis call."""

from __future__ import annotations

import logging
import time

from webhook.core.errors import UnknownPoll
from webhook.core.identity import receipt_code
from webhook.core.ledger import pack_ballot
from webhook.core.outbox import ReplyKind
from webhook.runtime import Runtime
from webhook.store import keys
from webhook.store.pipeline import KICK_TTL_MS, Stage, kick
from webhook.store.streams import BadEntry, ReplyEntry, VoteEntry
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
            vote = VoteEntry.parse(fields)
            poll = rt.polls.get(vote.poll)
            option = poll.options[vote.option]
        except (BadEntry, IndexError, UnknownPoll):
            log.error("vote %s cannot be tallied (unknown poll or option); left queued", entry_id)
            continue
        confirmation = ReplyEntry(
            channel=vote.channel,
            kind=ReplyKind.CONFIRM.value,
            receiver=vote.receiver,
            poll=poll.id,
            language=vote.language,
            receipt=receipt_code(vote.voter),
            option=option.id,
        ).pairs()
        script_keys += [
            keys.ballots(poll.id, vote.voter),
            keys.counts(poll.id),
            keys.minutes(poll.id),
            keys.channel_counts(poll.id),
        ]
        args += [entry_id, keys.field(vote.voter), pack_ballot(vote.option, vote.accepted_at), option.id]
        args += [vote.accepted_at // 60, vote.channel, len(confirmation), *confirmation]
        batched += 1
    if not batched:
        return 0
    counted, must_kick = rt.ballot_box.scripts.tally(
        keys=script_keys, args=[keys.TALLY_GROUP, batched, KICK_TTL_MS, *args]
    )
    if must_kick:
        kick(Stage.SEND, connection=rt.redis)
    log.debug("tallied %d votes (%d new)", batched, counted)
    return int(counted)
