"""Viber redelivering a callback (same message token): processed once, whenever the copies arrive."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask.testing import FlaskClient
from redis import Redis

from tests.conftest import message_event, post_callback, post_live
from tests.faults.conftest import assert_ledger_consistent, main_poll, pipeline_idle, report, wait_until
from tests.support.fake_viber import FakeViber
from tests.support.stack import Stack
from webhook.channels.viber.webhook import MAX_CLOCK_SKEW_S
from webhook.config import DEFAULT_MAX_CALLBACK_AGE_S, Config
from webhook.core.polls import PollStatus
from webhook.runtime import Runtime
from webhook.store import keys


def deliver_at_once(stack: Stack, payload: dict[str, Any], copies: int) -> list[int]:
    """POST the same callback from several threads released together; their statuses."""
    barrier = threading.Barrier(copies)

    def post(_: int) -> int:
        barrier.wait()
        return post_live(stack, payload)[0]

    with ThreadPoolExecutor(max_workers=copies) as pool:
        return list(pool.map(post, range(copies)))


def kinds(fake: FakeViber, receiver: str) -> Counter[str]:
    """What a user was sent: confirmations, "already voted", help, other."""
    found: Counter[str] = Counter()
    for message in fake.messages_to(receiver):
        text = message.get("text", "")
        if "is counted" in text:
            found["confirm"] += 1
        elif "already voted" in text:
            found["already"] += 1
        elif "To vote" in text and message.get("keyboard"):
            found["help"] += 1
        else:
            found["other"] += 1
    return found


def test_callback_delivered_five_times_is_processed_once(
    stack: Stack, redis: Redis, fake_viber: FakeViber
) -> None:
    """A vote and a non-vote message, each delivered 5 times (some at once, some after processing)."""
    ballot = message_event("redelivered-voter", "no", tracking_data="main")
    chatter = message_event("redelivered-chatter", "hello?", tracking_data="main")
    statuses = deliver_at_once(stack, ballot, 2) + deliver_at_once(stack, chatter, 3)
    statuses += [post_live(stack, ballot)[0], post_live(stack, chatter)[0]]
    fake_viber.wait_for_messages(2)
    statuses += deliver_at_once(stack, ballot, 2)  # redelivered after the vote was tallied and confirmed
    wait_until(lambda: redis.xlen(keys.VOTES_STREAM) == 0, 10, "the votes to be tallied")
    time.sleep(0.5)
    wait_until(lambda: pipeline_idle(redis), 10, "the outbox to empty")

    assert statuses == [200] * 9
    assert kinds(fake_viber, "redelivered-voter") == Counter({"confirm": 1})
    assert kinds(fake_viber, "redelivered-chatter") == Counter({"help": 1})
    assert len(fake_viber.sent_messages()) == 2
    ledger = assert_ledger_consistent(redis, main_poll(stack), {"redelivered-voter": "no"})
    report(
        "Viber redelivery x5",
        sent=1,
        deliveries=5,
        acknowledged=1,
        counted=sum(ledger.counters.values()),
        lost=0,
        replies=len(fake_viber.sent_messages()),
    )


def test_redelivery_after_close_does_not_contradict_the_confirmation(
    client: FlaskClient, rt: Runtime, redis: Redis
) -> None:
    """A vote accepted just before the poll closed, redelivered after: no "voting has closed" reply."""
    ballot = message_event("just-in-time", "yes", tracking_data="main")
    assert post_callback(client, ballot).status_code == 200
    rt.ballot_box.set_status(rt.polls.get("main"), PollStatus.CLOSED)
    assert post_callback(client, ballot).status_code == 200
    assert redis.xlen(keys.VOTES_STREAM) == 1
    queued = [fields[b"kind"] for _, fields in redis.xrange(keys.OUTBOX_STREAM)]
    assert b"closed" not in queued


def _time_passes(redis: Redis, elapsed_s: int) -> None:
    """Age every expiring key by elapsed_s: what would have expired by then is gone, the rest has less."""
    elapsed_ms = elapsed_s * 1000
    for key in redis.scan_iter("vv:*"):
        left_ms = redis.pttl(key)
        if 0 < left_ms <= elapsed_ms:
            redis.delete(key)
        elif left_ms > elapsed_ms:
            redis.pexpire(key, left_ms - elapsed_ms)


@pytest.mark.parametrize(
    ("first_age_s", "replay_age_s"),
    [(0, 90 * 60), (-MAX_CLOCK_SKEW_S + 30, DEFAULT_MAX_CALLBACK_AGE_S - 30)],
    ids=["on-time-then-90-min-later", "stamped-ahead-then-at-the-window-edge"],
)
def test_replay_within_the_accepted_age_gets_no_second_reply_or_count(
    chat: Any, rt: Runtime, redis: Redis, config: Config, first_age_s: int, replay_age_s: int
) -> None:
    """A vote, a second tap and a stray text, delivered again with the same tokens as long as their
    timestamps are accepted (up to MAX_CALLBACK_AGE_S, 2 h): no second reply, no second count."""
    assert config.max_callback_age_s == DEFAULT_MAX_CALLBACK_AGE_S
    voter = chat("replayed-late")
    callbacks = [voter.event("yes"), voter.event("no"), voter.event("hello?")]
    for callback in callbacks:
        callback["timestamp"] = int((time.time() - first_age_s) * 1000)
        voter.post(callback)
    first = voter.replies()
    assert len(first) == 3, first  # the confirmation, "already voted", the help
    for callback in callbacks[
        1:
    ]:  # the replies' dedupe memory outlives the window the callback is accepted in
        ttl_s = redis.ttl(keys.seen("viber", callback["message_token"]))
        assert ttl_s >= config.max_callback_age_s + MAX_CLOCK_SKEW_S - 1, ttl_s

    _time_passes(redis, replay_age_s - first_age_s)
    for callback in callbacks:  # the same callbacks (tokens, timestamps) as Viber replays them
        callback["timestamp"] = int((time.time() - replay_age_s) * 1000)
        voter.post(callback)
    assert voter.replies() == []
    assert rt.ballot_box.counts(rt.polls.get("main")) == {"yes": 1, "no": 0, "abstain": 0}
    assert redis.hget(keys.STATS, "vote_retry") == b"1"
    assert_ledger_consistent(redis, rt.polls.get("main"), {"replayed-late": "yes"})
