"""The tally worker SIGKILLed in the middle of a batch while votes stream in."""

from __future__ import annotations

import signal
import time

import pytest
from redis import Redis
from rq import Queue
from rq.registry import StartedJobRegistry

from tests.faults.conftest import (
    TELEGRAM_USER_PREFIX,
    VoteStream,
    assert_ledger_consistent,
    confirmed_voters,
    main_poll,
    pending_of,
    pipeline_idle,
    report,
    votes_for,
    votes_idle,
    wait_until,
)
from tests.support.fake_telegram import FakeTelegram
from tests.support.fake_viber import FakeViber
from tests.support.stack import Stack
from webhook.store.pipeline import DRAIN_JOB_TIMEOUT_S

VOTES = 5000
KILLS = 2
MAX_KILL_ATTEMPTS = 6
FROZEN_SETTLE_S = 0.05
"""After freezing the tally worker, time for Redis to run a call it had already sent (seconds)."""
SWEPT_WITHIN_S = 15.0
"""After the votes stop, the sweep clears a dead worker's job from the started registry within this (s)."""
STALE_TAKEOVER_S = 30
"""workers/tally.py STALE_MS: votes of a dead consumer are taken over after this long."""


def started_tally_jobs(redis: Redis) -> list[str]:
    """Job ids in the tally queue's started registry (without cleaning it)."""
    registry = StartedJobRegistry(queue=Queue("tally", connection=redis))
    return registry.get_job_ids(cleanup=False)


def kill_tally_mid_batch(stack: Stack, redis: Redis, timeout_s: float = 20.0) -> tuple[int, list[str]]:
    """SIGKILL the tally worker holding unacked votes, start a new one; (votes left, jobs it ran).

    The worker is frozen (SIGSTOP) first and killed only if it still holds its batch once a call
    it had already sent has run, so the kill cannot land just after the batch was acknowledged.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        left_s = max(0.0, deadline - time.monotonic())
        wait_until(lambda: pending_of(redis) > 0, left_s, "the tally worker to hold a batch", 0.001)
        stack.send_signal("tally", signal.SIGSTOP)
        time.sleep(FROZEN_SETTLE_S)
        if pending_of(redis) > 0:
            break
        stack.send_signal("tally", signal.SIGCONT)
    running = started_tally_jobs(redis)
    stack.kill("tally")
    orphaned = pending_of(redis)
    stack.restart("tally")
    return orphaned, running


@pytest.mark.slow
def test_tally_sigkill_mid_batch_twice_loses_nothing(
    stack: Stack, redis: Redis, fake_viber: FakeViber, fake_telegram: FakeTelegram
) -> None:
    """5,000 votes (a quarter from Telegram) from 6 threads; the tally worker is killed twice
    mid-batch: every 200 from either messenger is counted once and confirmed once."""
    began = time.monotonic()
    stream = VoteStream(stack.base_url, votes_for("kill", VOTES, telegram_every=4), threads=6).start()
    wait_until(lambda: stream.acked >= 300, 30, "the first votes to be acknowledged")
    orphans: list[int] = []
    attempts = 0
    while len([o for o in orphans if o]) < KILLS and attempts < MAX_KILL_ATTEMPTS and stream.sent < VOTES:
        orphaned, _ = kill_tally_mid_batch(stack, redis)
        orphans.append(orphaned)
        attempts += 1
        time.sleep(0.5)
    stream.join(timeout_s=120)
    sent_s = time.monotonic() - began
    assert len([o for o in orphans if o]) == KILLS, f"kills did not catch a batch in flight: {orphans}"

    wait_until(lambda: votes_idle(redis), STALE_TAKEOVER_S + 20, "the orphaned votes to be taken over", 0.2)
    wait_until(lambda: len(confirmed_voters(fake_viber, fake_telegram)) >= VOTES, 30, "every confirmation")
    wait_until(lambda: pipeline_idle(redis), 10, "the outbox to empty", 0.1)
    elapsed_s = time.monotonic() - began

    ledger = assert_ledger_consistent(redis, main_poll(stack), stream.acknowledged)
    assert len(stream.acknowledged) == VOTES
    receivers = confirmed_voters(fake_viber, fake_telegram)
    assert len(receivers) == VOTES and set(receivers) == set(stream.acknowledged)
    assert len(fake_viber.sent_messages()) + len(fake_telegram.sent_messages()) == VOTES
    assert any(user.startswith(TELEGRAM_USER_PREFIX) for user in receivers)
    counted = sum(ledger.counters.values())
    report(
        "tally SIGKILL x2",
        sent=VOTES,
        acknowledged=len(stream.acknowledged),
        counted=counted,
        lost=len(stream.acknowledged) - counted,
        confirmations=len(receivers),
        orphaned_by_kills=orphans,
        statuses=dict(stream.statuses),
        sent_in_s=round(sent_s, 1),
        settled_in_s=round(elapsed_s, 1),
        started_registry=started_tally_jobs(redis),
    )


def test_killed_tally_job_leaves_the_started_registry(stack: Stack, redis: Redis) -> None:
    """After a tally worker dies mid-job, the sweep clears its job from the started registry."""
    stream = VoteStream(stack.base_url, votes_for("registry", 800), threads=6).start()
    wait_until(lambda: stream.acked >= 100, 30, "the first votes to be acknowledged")
    orphaned, running = 0, []
    for _ in range(MAX_KILL_ATTEMPTS):
        orphaned, running = kill_tally_mid_batch(stack, redis)
        if orphaned:
            break
    assert orphaned and running
    stream.join(timeout_s=60)
    # The sweep runs on the tally queue, so it waits for the new worker's drain job to end; well
    # before the dead job's own timeout (DRAIN_JOB_TIMEOUT_S) it must have cleared that job.
    wait_until(lambda: set(running).isdisjoint(started_tally_jobs(redis)), SWEPT_WITHIN_S, "the sweep")
    assert DRAIN_JOB_TIMEOUT_S > 10 * SWEPT_WITHIN_S
