"""End to end: votes through the running Procfile stack (gunicorn, rq workers, rq cron) to a fake Viber."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from redis import Redis

from tests.conftest import (
    BOT_TOKEN,
    VOTER_ID_SECRET,
    conversation_started,
    message_event,
    next_token,
    opened,
    post_live,
)
from tests.support.fake_viber import FakeViber
from tests.support.stack import ROOT, Stack
from webhook.core.ballot_box import CastOutcome
from webhook.core.identity import IdentityKind, receipt_code, voter_key
from webhook.core.ledger import recount
from webhook.core.polls import Poll, load_polls
from webhook.runtime import Runtime
from webhook.store import keys
from webhook.store.streams import VoteEntry
from workers import tally
from workers.context import StreamReader, ensure_group

RECEIPT = re.compile(r"\b[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}\b")
"""A receipt code: two groups of five Crockford base32 characters."""
COUNTS_KEY = "vv:poll:main:counts"


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.02) -> None:
    """Poll a condition until it holds; fail naming it after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


def pipeline_idle(redis: Redis) -> bool:
    """No vote waiting for a tally, no reply waiting to be sent or retried (one atomic look)."""
    pipe = redis.pipeline(transaction=True)
    pipe.xlen(keys.VOTES_STREAM).xlen(keys.OUTBOX_STREAM).zcard(keys.OUTBOX_RETRY)
    return not any(pipe.execute())


def settle(redis: Redis, timeout_s: float = 10.0) -> None:
    """Wait until every accepted vote is tallied and every reply sent."""
    wait_until(lambda: pipeline_idle(redis), timeout_s, "the vote and reply pipeline to empty")


def main_poll(stack: Stack) -> Poll:
    """The test poll, loaded from the stack's poll file."""
    return load_polls(stack.env["POLL_FILE"]).get("main")


def kind_of(message: dict[str, Any]) -> str:
    """What a message sent to Viber is, judged from its English text."""
    text = message.get("text", "")
    if "is counted" in text and RECEIPT.search(text):
        return "confirm"
    if "already voted" in text:
        return "already"
    if "Voting has closed" in text:
        return "closed"
    if message.get("keyboard") and "To vote" in text:
        return "help"
    return "other"


def kinds_to(fake: FakeViber, receiver: str) -> Counter[str]:
    """How many messages of each kind one user received."""
    return Counter(kind_of(m) for m in fake.messages_to(receiver))


def counts(redis: Redis) -> dict[str, int]:
    """The live counters of the test poll."""
    return {k.decode(): int(v) for k, v in redis.hgetall(COUNTS_KEY).items()}


def post_all_at_once(stack: Stack, payloads: list[dict[str, Any]]) -> list[int]:
    """POST callbacks to the web process from one thread each, released together; their statuses."""
    barrier = threading.Barrier(len(payloads))

    def post(payload: dict[str, Any]) -> int:
        barrier.wait()
        return post_live(stack, payload)[0]

    with ThreadPoolExecutor(max_workers=len(payloads)) as pool:
        return list(pool.map(post, payloads))


def flask_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `flask --app wsgi ARGS` with the stack's environment, as an operator would."""
    flask = str(Path(sys.executable).parent / "flask")
    return subprocess.run(
        [flask, "--app", "wsgi", *args], cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=30
    )


def send_requests_to(fake: FakeViber, receiver: str) -> list[Any]:
    """Every send_message request (answered or failed) addressed to one user."""
    return [
        r for r in fake.requests if r.path == "/send_message" and (r.body or {}).get("receiver") == receiver
    ]


def test_full_vote_welcome_count_and_confirmation(stack: Stack, redis: Redis, fake_viber: FakeViber) -> None:
    """A voter opens the bot, taps "yes": one vote counted, one signed confirmation with a receipt."""
    user = "e2e-voter-1"
    status, body = post_live(stack, conversation_started(user))
    assert status == 200
    welcome = json.loads(body)
    assert [b["ActionBody"] for b in welcome["keyboard"]["Buttons"]] == ["yes", "no", "abstain"]
    assert "Do you support negotiations?" in welcome["text"]
    assert welcome["sender"]["name"]

    status, _ = post_live(stack, message_event(user, "yes", tracking_data="main"))
    assert status == 200
    [message] = fake_viber.wait_for_messages(1)
    settle(redis)

    assert counts(redis) == {"yes": 1}
    assert message["receiver"] == user
    assert "is counted" in message["text"]
    receipt = RECEIPT.search(message["text"])
    assert receipt is not None
    assert receipt.group() == receipt_code(voter_key(VOTER_ID_SECRET, IdentityKind.VIBER, user))
    assert message["sender"]["name"]
    [request] = [r for r in fake_viber.requests if r.path == "/send_message"]
    assert request.headers.get("X-Viber-Auth-Token") == BOT_TOKEN
    assert fake_viber.sent_messages() == [message]


def test_twenty_concurrent_taps_count_once(stack: Stack, redis: Redis, fake_viber: FakeViber) -> None:
    """20 taps of one voter at once (different tokens): one vote, one confirmation, 19 "already voted"."""
    user = "e2e-double-tapper"
    options = ["yes", "no", "abstain"]
    taps = [message_event(user, options[i % 3], tracking_data="main") for i in range(20)]
    assert post_all_at_once(stack, taps) == [200] * 20
    fake_viber.wait_for_messages(20)
    settle(redis)

    tally_now = counts(redis)
    assert sum(tally_now.values()) == 1
    assert kinds_to(fake_viber, user) == Counter({"confirm": 1, "already": 19})
    [confirmation] = [m for m in fake_viber.messages_to(user) if kind_of(m) == "confirm"]
    [counted_option] = tally_now
    label = {"yes": "Yes", "no": "No", "abstain": "Abstain"}[counted_option]
    assert f"({label})" in confirmation["text"]
    assert recount(redis, main_poll(stack)).matches


def test_same_token_twice_is_processed_once(stack: Stack, redis: Redis, fake_viber: FakeViber) -> None:
    """A callback delivered twice, one after the other and at the same moment: one vote, one reply."""
    sequential = message_event("e2e-retried-later", "no", tracking_data="main")
    assert post_live(stack, sequential)[0] == 200
    assert post_live(stack, sequential)[0] == 200
    concurrent = message_event("e2e-retried-at-once", "abstain", tracking_data="main")
    assert post_all_at_once(stack, [concurrent, concurrent]) == [200, 200]
    fake_viber.wait_for_messages(2)
    settle(redis)

    assert counts(redis) == {"no": 1, "abstain": 1}
    assert kinds_to(fake_viber, "e2e-retried-later") == Counter({"confirm": 1})
    assert kinds_to(fake_viber, "e2e-retried-at-once") == Counter({"confirm": 1})
    assert len(fake_viber.sent_messages()) == 2


def _ledger_snapshot(redis: Redis) -> dict[str, Any]:
    """Everything a tally writes: counters, ballots, queued confirmations, the votes stream."""
    ballots = {key: redis.hgetall(key) for key in redis.scan_iter(match=keys.ballots_pattern("main"))}
    return {
        "counts": redis.hgetall(keys.counts("main")),
        "ballots": ballots,
        "outbox": redis.xrange(keys.OUTBOX_STREAM),
        "votes": redis.xrange(keys.VOTES_STREAM),
        "pending": redis.xpending(keys.VOTES_STREAM, keys.TALLY_GROUP)["pending"],
    }


def test_tally_batch_applied_twice_changes_nothing(rt: Runtime, redis: Redis) -> None:
    """A batch taken over from a stalled worker, then applied again by it: counted once."""
    poll = rt.polls.get("main")
    for i in range(30):
        voter = voter_key(VOTER_ID_SECRET, IdentityKind.VIBER, f"idem-{i}")
        vote = VoteEntry("main", voter, i % 3, rt.seal.seal(f"idem-{i}"), "en", int(time.time()), "viber")
        outcome = rt.ballot_box.cast(poll, vote, message_token=next_token())
        assert outcome is CastOutcome.ACCEPTED
    ensure_group(redis, keys.VOTES_STREAM, keys.TALLY_GROUP)

    def reader(consumer: str, stale_ms: int) -> StreamReader:
        return StreamReader(redis, keys.VOTES_STREAM, keys.TALLY_GROUP, consumer, stale_ms, keys.KICK_TALLY)

    stalled = reader("worker-a", tally.STALE_MS).read(500)
    taken_over = reader("worker-b", 0).read(500)
    assert len(stalled) == 30
    assert [e[0] for e in taken_over] == [e[0] for e in stalled]

    assert tally.apply_batch(rt, taken_over) == 30
    after_first = _ledger_snapshot(redis)
    assert after_first["counts"] == {b"yes": b"10", b"no": b"10", b"abstain": b"10"}
    assert len(after_first["outbox"]) == 30
    assert after_first["votes"] == [] and after_first["pending"] == 0

    assert tally.apply_batch(rt, stalled) == 0
    assert tally.apply_batch(rt, taken_over) == 0
    assert tally.drain(rt, "worker-c") == 0
    assert _ledger_snapshot(redis) == after_first
    assert recount(redis, poll).matches


def test_confirmation_retried_after_viber_errors(stack: Stack, redis: Redis, fake_viber: FakeViber) -> None:
    """One 500 is absorbed by a quick retry; three park the reply in the retry zset until the sweep."""
    fake_viber.fail_next(1, http_status=500)
    assert post_live(stack, message_event("e2e-one-500", "yes", tracking_data="main"))[0] == 200
    fake_viber.wait_for_messages(1)
    settle(redis)
    assert kinds_to(fake_viber, "e2e-one-500") == Counter({"confirm": 1})
    assert len(send_requests_to(fake_viber, "e2e-one-500")) == 2
    assert fake_viber.pending_faults == 0

    fake_viber.fail_next(3, http_status=500)
    voted_at = time.monotonic()
    assert post_live(stack, message_event("e2e-three-500s", "no", tracking_data="main"))[0] == 200
    wait_until(lambda: redis.zcard(keys.OUTBOX_RETRY) == 1, 5, "the reply to be parked for a retry")
    [(member, due)] = redis.zrange(keys.OUTBOX_RETRY, 0, -1, withscores=True)
    parked = json.loads(member)
    assert (opened(parked["receiver"]), parked["kind"], parked["attempts"], parked["why"]) == (
        "e2e-three-500s",
        "confirm",
        "1",
        "http 500",
    )
    assert 0.5 < due - time.time() <= 2.5
    fake_viber.wait_for_messages(2, timeout_s=10)
    delivered_after_s = time.monotonic() - voted_at
    settle(redis)

    assert delivered_after_s < 10
    assert kinds_to(fake_viber, "e2e-three-500s") == Counter({"confirm": 1})
    assert len(send_requests_to(fake_viber, "e2e-three-500s")) == 4
    assert counts(redis) == {"yes": 1, "no": 1}


def test_closed_poll_and_unknown_option(stack: Stack, redis: Redis, fake_viber: FakeViber) -> None:
    """An unknown answer gets the help keyboard; after close-poll a vote gets "closed" and is not counted."""
    assert post_live(stack, message_event("e2e-confused", "maybe", tracking_data="main"))[0] == 200
    [help_message] = fake_viber.wait_for_messages(1)
    assert help_message["receiver"] == "e2e-confused"
    assert kind_of(help_message) == "help"
    assert [b["ActionBody"] for b in help_message["keyboard"]["Buttons"]] == ["yes", "no", "abstain"]

    closing = flask_cli(stack, "close-poll", "main")
    assert closing.returncode == 0, closing.stderr
    assert post_live(stack, message_event("e2e-too-late", "yes", tracking_data="main"))[0] == 200
    fake_viber.wait_for_messages(2)
    settle(redis)

    assert kinds_to(fake_viber, "e2e-too-late") == Counter({"closed": 1})
    assert counts(redis) == {}
    assert redis.xlen(keys.VOTES_STREAM) == 0
    assert not list(redis.scan_iter(match=keys.voters_pattern("main")))


def test_recount_matches_counters_after_fifty_voters(
    stack: Stack, redis: Redis, fake_viber: FakeViber
) -> None:
    """50 voters vote at once; `flask recount` exits 0 and agrees with the counters."""
    options = ["yes", "no", "abstain"]
    votes = [message_event(f"e2e-crowd-{i}", options[i % 3], tracking_data="main") for i in range(50)]
    assert post_all_at_once(stack, votes) == [200] * 50
    fake_viber.wait_for_messages(50)
    settle(redis)

    assert counts(redis) == {"yes": 17, "no": 17, "abstain": 16}
    result = flask_cli(stack, "recount", "--poll", "main")
    assert result.returncode == 0, result.stdout + result.stderr
    for option, votes_for in (("yes", 17), ("no", 17), ("abstain", 16)):
        assert re.search(
            rf"{option}\s+ballots\s+{votes_for}\s+counter\s+{votes_for}\s*$", result.stdout, re.M
        )
    assert "recount matches the counters" in result.stdout
    ledger = recount(redis, main_poll(stack))
    assert ledger.matches and ledger.recounted == {"yes": 17, "no": 17, "abstain": 16}
    assert Counter(kind_of(m) for m in fake_viber.sent_messages()) == Counter({"confirm": 50})
