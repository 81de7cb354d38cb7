"""Viber's REST API failing: errors retried with backoff, dead-lettered, replayed; gone receivers dropped."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from tests.conftest import message_event, opened, post_live
from tests.faults.conftest import (
    PollingThread,
    assert_ledger_consistent,
    main_poll,
    pipeline_idle,
    report,
    wait_until,
)
from tests.support.fake_viber import FakeViber
from tests.support.stack import ROOT, Stack
from webhook.store import keys
from workers.sender import RETRY_DELAYS_S


class ParkedWatcher(PollingThread):
    """Records every reply seen in the retry zset or the dead list (polled every 5 ms)."""

    def __init__(self, redis: Redis) -> None:
        """Watch this Redis from __enter__ to __exit__."""
        super().__init__(0.005)
        self.redis = redis
        self.retry: list[tuple[dict[str, Any], float]] = []
        self.dead: list[dict[str, Any]] = []

    def poll(self) -> None:
        """Record what is parked now."""
        now = time.time()
        for member, due in self.redis.zrange(keys.OUTBOX_RETRY, 0, -1, withscores=True):
            entry = json.loads(member)
            if all(entry != seen for seen, _ in self.retry):
                self.retry.append((entry, due - now))
        for member in self.redis.lrange(keys.OUTBOX_DEAD, 0, -1):
            entry = json.loads(member)
            if entry not in self.dead:
                self.dead.append(entry)

    def retried(self, receiver: str) -> list[tuple[dict[str, Any], float]]:
        """(entry, seconds until due when first seen) of a receiver's parked replies."""
        return [(e, d) for e, d in self.retry if opened(e["receiver"]) == receiver]


def vote(stack: Stack, user: str, option: str = "yes") -> None:
    """Cast a vote through the running web process."""
    assert post_live(stack, message_event(user, option, tracking_data="main"))[0] == 200


def sends_to(fake: FakeViber, receiver: str) -> int:
    """send_message requests addressed to a user, answered or not."""
    return sum(
        1 for r in fake.requests if r.path == "/send_message" and (r.body or {}).get("receiver") == receiver
    )


def confirmations_to(fake: FakeViber, receiver: str) -> int:
    """Confirmations a user received."""
    return sum(1 for m in fake.messages_to(receiver) if "is counted" in m.get("text", ""))


def replay_dead(stack: Stack) -> subprocess.CompletedProcess[str]:
    """`flask --app wsgi replay-dead`, as an operator runs it."""
    flask = str(Path(sys.executable).parent / "flask")
    return subprocess.run(
        [flask, "--app", "wsgi", "replay-dead"],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.slow
def test_viber_failures_retried_dead_lettered_replayed_or_dropped(
    stack: Stack, redis: Redis, fake_viber: FakeViber
) -> None:
    """500s, status 12, refused connections retried, dead-lettered and replayed; status 5/6 dropped."""
    acknowledged: dict[str, str] = {}
    with ParkedWatcher(redis) as watcher:
        for user, status in (("gone-5", 5), ("gone-6", 6)):
            fake_viber.fail_next(1, viber_status=status)
            vote(stack, user)
            acknowledged[user] = "yes"
            wait_until(lambda u=user: sends_to(fake_viber, u) == 1, 10, f"the reply to {user}")
        dropped_at = time.monotonic()

        fake_viber.fail_next(3, http_status=500)
        vote(stack, "five-hundreds", "no")
        acknowledged["five-hundreds"] = "no"
        wait_until(lambda: confirmations_to(fake_viber, "five-hundreds") == 1, 10, "the retried reply")

        fake_viber.fail_next(1, viber_status=12)
        vote(stack, "too-many", "abstain")
        acknowledged["too-many"] = "abstain"
        wait_until(lambda: confirmations_to(fake_viber, "too-many") == 1, 10, "the reply after status 12")

        fake_viber.stop()
        vote(stack, "refused", "no")
        acknowledged["refused"] = "no"
        wait_until(lambda: redis.zcard(keys.OUTBOX_RETRY) == 1, 10, "the refused reply to be parked")
        wait_until(lambda: bool(watcher.retried("refused")), 5, "the watcher to see the parked reply")
        [member] = redis.zrange(keys.OUTBOX_RETRY, 0, -1)
        assert redis.zrem(keys.OUTBOX_RETRY, member) == 1
        exhausted = {**json.loads(member), "attempts": str(len(RETRY_DELAYS_S))}
        redis.xadd(keys.OUTBOX_STREAM, exhausted)  # as if every later retry had failed too
        wait_until(lambda: redis.llen(keys.OUTBOX_DEAD) == 1, 10, "the reply to be dead-lettered")
        fake_viber.start()
        replayed = replay_dead(stack)
        wait_until(lambda: confirmations_to(fake_viber, "refused") == 1, 10, "the replayed reply")
        time.sleep(max(0.0, RETRY_DELAYS_S[0] + 2.5 - (time.monotonic() - dropped_at)))
        wait_until(lambda: pipeline_idle(redis), 10, "the outbox to empty")

    five_hundreds = watcher.retried("five-hundreds")
    assert [(e["attempts"], e["why"]) for e, _ in five_hundreds] == [("1", "http 500")]
    assert 0.5 < five_hundreds[0][1] <= RETRY_DELAYS_S[0]
    assert sends_to(fake_viber, "five-hundreds") == 4  # 1 + 2 quick retries, then 1 after the backoff
    assert [(e["attempts"], e["why"]) for e, _ in watcher.retried("too-many")] == [("1", "viber status 12")]
    assert sends_to(fake_viber, "too-many") == 2  # status 12 is not retried at once
    [(refused, _)] = watcher.retried("refused")
    assert refused["attempts"] == "1" and refused["why"].startswith("transport")
    [dead] = watcher.dead
    assert (opened(dead["receiver"]), dead["attempts"]) == ("refused", str(len(RETRY_DELAYS_S) + 1))
    assert dead["why"].startswith("transport") and dead["receipt"] == refused["receipt"]
    assert replayed.returncode == 0 and "replayed 1 replies" in replayed.stdout, replayed.stderr
    [replayed_message] = fake_viber.messages_to("refused")
    assert refused["receipt"] in replayed_message["text"]
    for gone in ("gone-5", "gone-6"):
        assert sends_to(fake_viber, gone) == 1 and fake_viber.messages_to(gone) == []
        assert watcher.retried(gone) == [] and all(opened(d["receiver"]) != gone for d in watcher.dead)
    assert redis.llen(keys.OUTBOX_DEAD) == 0
    assert Counter(m["receiver"] for m in fake_viber.sent_messages()) == Counter(
        {"five-hundreds": 1, "too-many": 1, "refused": 1}
    )
    ledger = assert_ledger_consistent(redis, main_poll(stack), acknowledged)
    report(
        "Viber API failures",
        sent=len(acknowledged),
        acknowledged=len(acknowledged),
        counted=sum(ledger.counters.values()),
        lost=len(acknowledged) - sum(ledger.counters.values()),
        confirmations_delivered=len(fake_viber.sent_messages()),
        dropped=2,
        dead_lettered_then_replayed=1,
    )


def test_due_retry_goes_out_during_a_burst_without_waiting_for_the_sweep(
    stack: Stack, redis: Redis, fake_viber: FakeViber
) -> None:
    """While replies keep coming, the running send job itself re-sends a parked reply once due.

    The sweep, which otherwise moves due retries back, runs on the tally queue and waits behind a
    long drain job during a burst; here the tally worker is frozen so that no sweep runs at all.
    """
    stack.send_signal("tally", signal.SIGSTOP)
    try:
        fake_viber.fail_next(1, viber_status=12)  # too many requests: parked at once, no quick retry
        assert post_live(stack, message_event("parked-in-burst", "maybe", tracking_data="main"))[0] == 200
        wait_until(lambda: redis.zcard(keys.OUTBOX_RETRY) == 1, 10, "the reply to be parked")
        parked_at = time.monotonic()
        flooders = iter(range(1000))
        while not fake_viber.messages_to("parked-in-burst"):
            assert time.monotonic() - parked_at < RETRY_DELAYS_S[0] + 4, "the due retry was not sent"
            user = f"burst-helped-{next(flooders)}"
            assert post_live(stack, message_event(user, "maybe", tracking_data="main"))[0] == 200
            time.sleep(0.1)
        delivered_after_s = time.monotonic() - parked_at
        assert delivered_after_s >= RETRY_DELAYS_S[0] - 0.5
        assert redis.zcard(keys.OUTBOX_RETRY) == 0
    finally:
        stack.send_signal("tally", signal.SIGCONT)
    print(f"\n[reliability] due retry in a burst: delivered_after_s={delivered_after_s:.1f}")
