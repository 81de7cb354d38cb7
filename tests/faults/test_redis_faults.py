"""Redis crashing (SIGKILL, restart from its append-only file) or hanging while votes flow."""

from __future__ import annotations

import os
import signal
import time
import urllib.error
import urllib.request
from collections import Counter

import pytest
from redis import Redis

from tests.faults.conftest import (
    Supervisor,
    VoteStream,
    assert_ledger_consistent,
    claimed,
    main_poll,
    pipeline_idle,
    report,
    votes_for,
    votes_idle,
    wait_until,
)
from tests.support.fake_viber import FakeViber
from tests.support.redis_server import RedisServer
from tests.support.stack import Stack

STALE_TAKEOVER_S = 30
"""workers/tally.py STALE_MS: a batch read before the crash is taken over after this long."""


def readyz(stack: Stack) -> int:
    """The status of GET /readyz."""
    try:
        with urllib.request.urlopen(f"{stack.base_url}/readyz", timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
def test_redis_sigkill_and_aof_restart_keep_every_acknowledged_vote(
    aof_stack: Stack, aof_redis: RedisServer, aof_client: Redis, fake_viber: FakeViber
) -> None:
    """Redis dies mid-stream (SIGKILL) and restarts from its AOF: every vote answered 200, from either
    messenger (a quarter come from Telegram), is counted."""
    total = 1500
    began = time.monotonic()
    votes = votes_for("aof", total, telegram_every=4)
    stream = VoteStream(aof_stack.base_url, votes, threads=6, retry_pause_s=0.1).start()
    wait_until(lambda: stream.acked >= 400, 30, "votes to be acknowledged before the crash")
    with Supervisor(aof_stack) as supervisor:
        aof_redis.kill()
        acked_before_crash = stream.acknowledged_so_far()
        wait_until(lambda: stream.statuses["503"] >= 20, 15, "the web to answer 503 while Redis is down")
        ready_while_down = readyz(aof_stack)
        aof_redis.restart()
        survived = claimed(aof_client, acked_before_crash)
        stream.join(timeout_s=90)
        wait_until(lambda: votes_idle(aof_client), STALE_TAKEOVER_S + 20, "every vote to be tallied", 0.2)
    settled_s = time.monotonic() - began

    assert ready_while_down == 503
    assert survived == len(acked_before_crash)
    assert set(stream.statuses) <= {"200", "503"}, stream.statuses
    assert stream.statuses["503"] > 0
    assert len(stream.acknowledged) == total
    ledger = assert_ledger_consistent(aof_client, main_poll(aof_stack), stream.acknowledged)
    counted = sum(ledger.counters.values())
    report(
        "Redis SIGKILL + AOF restart",
        sent=total,
        acknowledged=len(stream.acknowledged),
        acknowledged_before_crash=len(acked_before_crash),
        counted=counted,
        lost=len(stream.acknowledged) - counted,
        statuses=dict(stream.statuses),
        processes_restarted=supervisor.restarted,
        settled_in_s=round(settled_s, 1),
    )


def test_redis_unreachable_then_back_counts_retried_callbacks_once(
    aof_stack: Stack, aof_redis: RedisServer, aof_client: Redis, fake_viber: FakeViber
) -> None:
    """Redis hangs (SIGSTOP): webhook and /readyz answer 503; Viber's retries afterwards count once."""
    before = votes_for("before", 20)
    first = VoteStream(aof_stack.base_url, before, threads=4).start()
    first.join(timeout_s=30)
    fake_viber.wait_for_messages(len(before))
    wait_until(lambda: pipeline_idle(aof_client), 10, "the first votes to settle")

    during = votes_for("during", 6)
    retried = before[:2]
    pid = aof_redis.pid
    assert pid is not None
    with Supervisor(aof_stack) as supervisor:
        os.kill(pid, signal.SIGSTOP)
        try:
            outage = VoteStream(aof_stack.base_url, during + retried, threads=4, give_up_after_s=0.1).start()
            outage.join(timeout_s=60)
            ready_while_down = readyz(aof_stack)
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_until(lambda: readyz(aof_stack) == 200, 10, "/readyz to recover")
        viber_retries = VoteStream(aof_stack.base_url, during + retried, threads=4).start()
        viber_retries.join(timeout_s=30)
        fake_viber.wait_for_messages(len(before) + len(during), timeout_s=15)
        wait_until(lambda: pipeline_idle(aof_client), 15, "the retried votes to settle")

    assert outage.statuses == Counter({"503": len(during) + len(retried)})
    assert outage.slowest_answer_s < 5, "Viber redelivers a callback unanswered for ~5 s"
    assert ready_while_down == 503
    assert viber_retries.statuses == Counter({"200": len(during) + len(retried)})
    acknowledged = first.acknowledged | viber_retries.acknowledged
    ledger = assert_ledger_consistent(aof_client, main_poll(aof_stack), acknowledged)
    receivers = Counter(m["receiver"] for m in fake_viber.sent_messages())
    assert receivers == Counter({vote.user: 1 for vote in before + during})
    assert all("is counted" in m["text"] for m in fake_viber.sent_messages())
    counted = sum(ledger.counters.values())
    report(
        "Redis unreachable (SIGSTOP)",
        sent=len(before) + len(during),
        resent=len(during) + len(retried),
        acknowledged=len(acknowledged),
        counted=counted,
        lost=len(acknowledged) - counted,
        answers_while_down=dict(outage.statuses),
        slowest_503_s=round(outage.slowest_answer_s, 2),
        processes_restarted=supervisor.restarted,
    )


def test_stack_processes_survive_a_redis_restart(aof_stack: Stack, aof_redis: RedisServer) -> None:
    """Redis killed, down for 2 s, restarted: every Procfile process is still running afterwards."""
    aof_redis.kill()
    time.sleep(2)
    aof_redis.restart()
    time.sleep(2)
    exited = {
        name: [p.returncode for p in ps if p.poll() is not None] for name, ps in aof_stack.processes.items()
    }
    assert {name: codes for name, codes in exited.items() if codes} == {}
