"""A restart storm: hundreds of dead `host-pid` consumers in the streams' groups, some holding entries.

The sweep deletes the idle ones that hold nothing; the ones that hold entries stay until a live
drain has taken their entries over, and every vote is counted and confirmed exactly once.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from flask.testing import FlaskClient
from redis import Redis

from tests.conftest import message_event, post_callback
from tests.faults.conftest import assert_ledger_consistent
from tests.support.fake_viber import FakeViber
from webhook.runtime import Runtime
from webhook.store import keys
from workers import sender, tally
from workers.context import ensure_group
from workers.sweep import sweep_once

STORM = 300
"""Worker processes that started, did a little work under their own name, and died."""
CRASHED = 20
"""Tally workers that died holding votes (2 each), and send workers that died holding a reply."""
UNREAD = 20
"""Votes no worker has read yet."""
IDLE_BOUND_MS = 300
"""The sweep's bound in this test (the service's is CONSUMER_IDLE_MAX_MS, 10 minutes)."""
GROUPS = {keys.VOTES_STREAM: keys.TALLY_GROUP, keys.OUTBOX_STREAM: keys.SEND_GROUP}


def consumers(redis: Redis, stream: str) -> dict[str, int]:
    """A stream group's consumers by name, with the number of entries each holds."""
    return {c["name"].decode(): c["pending"] for c in redis.xinfo_consumers(stream, GROUPS[stream])}


def die_holding(redis: Redis, stream: str, consumer: str, count: int, stale_ms: int) -> list[bytes]:
    """A consumer reads count entries and dies; they are made older than the stage's STALE_MS."""
    read = redis.xreadgroup(GROUPS[stream], consumer, {stream: ">"}, count=count)
    ids = [entry_id for entry_id, _ in read[0][1]]
    assert len(ids) == count
    redis.xclaim(stream, GROUPS[stream], consumer, 0, ids, idle=stale_ms + 1000, justid=True)
    return ids


def test_restart_storm_consumers_are_pruned_and_every_vote_counted_once(
    client: FlaskClient, rt: Runtime, redis: Redis, fake_viber: FakeViber, senders: Any
) -> None:
    """300 dead consumers per group that hold nothing go; 20 holding votes and 20 holding replies stay
    until a live worker has taken their entries over; every vote is counted and confirmed once."""
    for stream, group in GROUPS.items():
        ensure_group(redis, stream, group)
    chatters = [f"storm-chatter-{i}" for i in range(CRASHED)]
    for user in chatters:
        assert post_callback(client, message_event(user, "hello?", tracking_data="main")).status_code == 200
    for i in range(CRASHED):
        die_holding(redis, keys.OUTBOX_STREAM, f"crashed-send-{i}", 1, sender.STALE_MS)
    voters = [f"storm-voter-{i}" for i in range(STORM + 2 * CRASHED + UNREAD)]
    for user in voters:
        assert post_callback(client, message_event(user, "yes", tracking_data="main")).status_code == 200
    for pid in range(STORM):  # each restarted tally worker counts a vote under its own name, then dies
        entries = redis.xreadgroup(keys.TALLY_GROUP, f"storm-host-{pid}", {keys.VOTES_STREAM: ">"}, count=1)
        assert tally.apply_batch(rt, entries[0][1]) == 1
        redis.xgroup_createconsumer(keys.OUTBOX_STREAM, keys.SEND_GROUP, f"storm-host-{pid}")
    held_votes = [
        die_holding(redis, keys.VOTES_STREAM, f"crashed-tally-{i}", 2, tally.STALE_MS) for i in range(CRASHED)
    ]
    time.sleep(2 * IDLE_BOUND_MS / 1000)
    redis.xgroup_createconsumer(keys.VOTES_STREAM, keys.TALLY_GROUP, "live-host-1")  # a worker just started

    report = sweep_once(redis, scripts=rt.ballot_box.scripts, consumer_idle_ms=IDLE_BOUND_MS)
    assert report["consumers_pruned_tally"] == STORM == report["consumers_pruned_send"]
    assert report["consumers_idle_holding_tally"] == CRASHED == report["consumers_idle_holding_send"]
    assert consumers(redis, keys.VOTES_STREAM) == {
        "live-host-1": 0,
        **{f"crashed-tally-{i}": 2 for i in range(CRASHED)},
    }
    assert consumers(redis, keys.OUTBOX_STREAM) == {f"crashed-send-{i}": 1 for i in range(CRASHED)}
    pending = redis.xpending_range(keys.VOTES_STREAM, keys.TALLY_GROUP, "-", "+", 1000)
    assert sorted(p["message_id"] for p in pending) == sorted(i for ids in held_votes for i in ids)

    # A fresh worker of each stage takes the dead ones' entries over (XAUTOCLAIM) and drains the rest.
    assert tally.drain(rt, "survivor-host-1") == 2 * CRASHED + UNREAD
    sender.drain(rt, senders, "survivor-host-1")
    assert redis.xpending(keys.OUTBOX_STREAM, keys.SEND_GROUP)["pending"] == 0
    time.sleep(2 * IDLE_BOUND_MS / 1000)
    report = sweep_once(redis, scripts=rt.ballot_box.scripts, consumer_idle_ms=IDLE_BOUND_MS)
    assert report["consumers_idle_holding_tally"] == 0 == report["consumers_idle_holding_send"]
    for stream in GROUPS:
        assert not any(name.startswith("crashed-") for name in consumers(redis, stream))

    assert_ledger_consistent(redis, rt.polls.get("main"), dict.fromkeys(voters, "yes"))
    received = Counter(message["receiver"] for message in fake_viber.sent_messages())
    assert received == Counter(voters + chatters)  # one confirmation per voter, one help per chatter
