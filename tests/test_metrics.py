"""GET /metrics: operator-only, counts equal the tally, pipeline gauges, and no per-voter labels."""

from __future__ import annotations

import time
from typing import Any

from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from redis import Redis

from tests.conftest import (
    OPERATOR_TOKEN,
    VOTER_ID_SECRET,
    conversation_started,
    message_event,
    post_callback,
    signed,
)
from tests.support.fake_viber import FakeViber
from webhook.channels.base import ChannelSender
from webhook.core.identity import IdentityKind, receipt_code, voter_key
from webhook.runtime import Runtime
from webhook.store import keys
from workers import sender, tally
from workers.progress import progress_line

AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


def scrape(client: FlaskClient) -> list[Sample]:
    """Every sample GET /metrics shows, parsed as Prometheus parses it."""
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200, response.data
    assert response.mimetype == "text/plain"
    return [
        s
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for s in family.samples
    ]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The value of the one sample with this name and labels (0 if the series does not exist yet)."""
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else 0.0


def vote(client: FlaskClient, user: str, text: str, poll_id: str = "main", **extra: Any) -> None:
    """Send one signed vote message through the webhook."""
    event = message_event(user, text, tracking_data=poll_id, **extra)
    assert post_callback(client, event).status_code == 200


def test_metrics_need_the_operator_token(client: FlaskClient) -> None:
    """Without the operator's bearer token /metrics answers 401 and shows nothing."""
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": OPERATOR_TOKEN}):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401
        assert b"viber_vote" not in response.data
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert any(s.name == "viber_vote_votes_total" for s in scrape(client))


def test_vote_counters_equal_the_tallied_counts(client: FlaskClient, rt: Runtime) -> None:
    """viber_vote_votes_total{poll,option} equals the counters for every poll and option."""
    before = scrape(client)
    for user, text, poll_id in [
        ("mv-1", "yes", "main"),
        ("mv-2", "yes", "main"),
        ("mv-3", "no", "main"),
        ("mv-4", "b", "secret"),
    ]:
        vote(client, user, text, poll_id)
    assert tally.drain(rt, "t") == 4
    samples = scrape(client)
    shown = {
        (s.labels["poll"], s.labels["option"]): s.value for s in samples if s.name == "viber_vote_votes_total"
    }
    expected = {
        (poll.id, option): float(n)
        for poll in rt.polls.polls
        for option, n in rt.ballot_box.counts(poll).items()
    }
    assert shown == expected
    assert (shown[("main", "yes")], shown[("main", "no")], shown[("secret", "b")]) == (2.0, 1.0, 1.0)
    accepted = {"outcome": "accepted"}
    assert (
        value(samples, "viber_vote_webhook_votes_total", **accepted)
        - value(before, "viber_vote_webhook_votes_total", **accepted)
        == 4
    )


def test_rejected_callbacks_are_counted_by_reason(client: FlaskClient) -> None:
    """Bad signatures and malformed bodies each raise their rejection counter."""
    name = "viber_vote_callbacks_rejected_total"
    before = scrape(client)
    body, headers = signed(message_event("mr-1", "yes"), token="not-the-bot-token-0123456789")
    for _ in range(2):
        assert client.post("/viber/webhook", data=body, headers=headers).status_code == 403
    assert post_callback(client, b'{"event": ').status_code == 400
    after = scrape(client)
    assert value(after, name, reason="bad_signature") - value(before, name, reason="bad_signature") == 2
    assert value(after, name, reason="bad_request") - value(before, name, reason="bad_request") == 1


def test_duplicates_and_retries_show_as_events(client: FlaskClient, rt: Runtime) -> None:
    """A second vote by the same voter is a vote_duplicate event; Viber's resend is a vote_retry."""
    first = message_event("md-1", "yes", tracking_data="main")
    assert post_callback(client, first).status_code == 200
    assert post_callback(client, first).status_code == 200
    vote(client, "md-1", "no")
    vote(client, "md-1", "abstain")
    assert tally.drain(rt, "t") == 1
    samples = scrape(client)
    assert value(samples, "viber_vote_events_total", event="vote_duplicate") == 2
    assert value(samples, "viber_vote_events_total", event="vote_retry") == 1
    assert value(samples, "viber_vote_votes_total", poll="main", option="yes") == 1


def test_latency_histogram_has_a_sample_per_callback(client: FlaskClient) -> None:
    """Every callback answered, refused or not, adds one observation to the latency histogram."""
    name = "viber_vote_webhook_seconds"
    before = scrape(client)
    vote(client, "ml-1", "yes")
    assert post_callback(client, conversation_started("ml-2")).status_code == 200
    body, headers = signed(message_event("ml-3", "yes"), token="not-the-bot-token-0123456789")
    assert client.post("/viber/webhook", data=body, headers=headers).status_code == 403
    after = scrape(client)
    assert value(after, f"{name}_count") - value(before, f"{name}_count") == 3
    assert value(after, f"{name}_sum") > value(before, f"{name}_sum")
    buckets = sorted(
        ((float(s.labels["le"]), s.value) for s in after if s.name == f"{name}_bucket"), key=lambda b: b[0]
    )
    assert len(buckets) >= 5 and buckets[-1] == (float("inf"), value(after, f"{name}_count"))
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:], strict=False))


def test_queue_depth_gauges_follow_the_pipeline(client: FlaskClient, rt: Runtime, redis: Redis) -> None:
    """Votes waiting in vv:votes show as pending votes, then as confirmations once tallied."""
    for i in range(3):
        vote(client, f"mq-{i}", "no")
    waiting = scrape(client)
    assert value(waiting, "viber_vote_pending", stage="votes") == 3 == redis.xlen(keys.VOTES_STREAM)
    assert value(waiting, "viber_vote_pending", stage="confirmations") == 0
    assert value(waiting, "viber_vote_rq_jobs", queue="tally") == 1
    assert value(waiting, "viber_vote_workers") == 0
    assert tally.drain(rt, "t") == 3
    tallied = scrape(client)
    assert value(tallied, "viber_vote_pending", stage="votes") == 0
    assert value(tallied, "viber_vote_pending", stage="confirmations") == 3
    redis.rpush(keys.OUTBOX_DEAD, "{}")
    assert value(scrape(client), "viber_vote_pending", stage="dead_letters") == 1


def series(samples: list[Sample]) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """Every series (name and label set) in a scrape."""
    return {(s.name, tuple(sorted(s.labels.items()))) for s in samples}


def test_labels_carry_no_voter_id_or_receipt(
    client: FlaskClient, rt: Runtime, fake_viber: FakeViber, redis: Redis, senders: dict[str, ChannelSender]
) -> None:
    """No label holds a voter's id, key or receipt, and more voters add no series."""

    def round_of(users: list[str]) -> list[Sample]:
        for user in users:
            vote(client, user, "yes")
            vote(client, user, "no")  # a duplicate
            vote(client, user, "receipt")  # a command
            assert post_callback(client, conversation_started(user)).status_code == 200
        tally.drain(rt, "t")
        sender.drain(rt, senders, "s")
        return scrape(client)

    first_users = [f"Zq7-voter-id-{i:03d}==" for i in range(3)]
    second_users = [f"Xk4-voter-id-{i:03d}==" for i in range(5)]
    first = round_of(first_users)
    second = round_of(second_users)
    assert value(second, "viber_vote_votes_total", poll="main", option="yes") == 8
    assert series(second) == series(first)
    secrets: list[str] = []
    for user in first_users + second_users:
        key = voter_key(VOTER_ID_SECRET, IdentityKind.VIBER, user)
        code = receipt_code(key)
        secrets += [user, key.hex(), code, code.replace("-", "")]
    label_values = {v for s in second for v in s.labels.values()}
    assert not {v for v in label_values for secret in secrets if secret.lower() in v.lower()}
    assert len(label_values) < 100
    text = client.get("/metrics", headers=AUTH).get_data(as_text=True)
    assert not [secret for secret in secrets if secret in text]


def test_the_progress_line_tells_the_last_minute_and_the_backlog(
    client: FlaskClient, rt: Runtime, redis: Redis
) -> None:
    """The clock's line a minute: votes of the minute just ended, per poll that had any, and what waits."""
    for i in range(3):
        vote(client, f"pl-{i}", "no")
    assert progress_line(redis, rt.polls, time.time()).endswith(
        "waiting: votes 3, replies 0 (retrying 0); dead letters 0"
    )
    assert tally.drain(rt, "t") == 3
    redis.rpush(keys.OUTBOX_DEAD, "{}")
    [(minute, counted)] = redis.hgetall(keys.minutes("main")).items()
    after = (int(minute) + 1) * 60
    assert progress_line(redis, rt.polls, after) == (
        f"progress: {int(counted)} votes/min (main {int(counted)});"
        " waiting: votes 0, replies 3 (retrying 0); dead letters 1"
    )
    assert progress_line(redis, rt.polls, after + 60).startswith("progress: 0 votes/min; waiting:")
