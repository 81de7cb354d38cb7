"""Operator CLI commands through Flask's test CLI runner, against the real Redis and fake Viber."""

from __future__ import annotations

import json
import re

from click.testing import Result
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis

from tests.conftest import BOT_TOKEN, message_event, opened, post_callback
from tests.support.fake_viber import FakeViber
from webhook import create_app
from webhook.channels.base import ChannelSender
from webhook.runtime import Runtime
from webhook.store import keys
from workers import sender, tally

WEBHOOK_URL = "https://example.org/viber/webhook"


def invoke(app: Flask, *args: str) -> Result:
    """Run a CLI command the way `flask --app wsgi ...` does (with the app context pushed)."""
    with app.app_context():
        return app.test_cli_runner().invoke(args=list(args))


def vote(client: FlaskClient, user: str, text: str, poll_id: str = "main") -> None:
    """Send one signed vote message through the webhook."""
    assert post_callback(client, message_event(user, text, tracking_data=poll_id)).status_code == 200


def outbox_kinds(redis: Redis) -> list[str]:
    """The kinds of the replies waiting in the outbox."""
    return [fields[b"kind"].decode() for _, fields in redis.xrange(keys.OUTBOX_STREAM)]


def test_results_table_and_json(app: Flask, client: FlaskClient, rt: Runtime) -> None:
    """`results` prints the live counts as a table, and as JSON with --json."""
    for user, text in {"c-a": "yes", "c-b": "yes", "c-c": "no"}.items():
        vote(client, user, text)
    assert tally.drain(rt, "t") == 3
    table = invoke(app, "results")
    assert table.exit_code == 0, table.output
    assert "main (open): Do you support negotiations?" in table.output
    assert re.search(r"Yes\s+2\s+66\.7%", table.output)
    assert re.search(r"No\s+1\s+33\.3%", table.output)
    assert re.search(r"Abstain\s+0\s+0\.0%", table.output)
    assert re.search(r"total\s+3", table.output)
    as_json = invoke(app, "results", "--json")
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output) == {
        "poll": "main",
        "question": "Do you support negotiations?",
        "status": "open",
        "total": 3,
        "options": [
            {"id": "yes", "label": "Yes", "votes": 2},
            {"id": "no", "label": "No", "votes": 1},
            {"id": "abstain", "label": "Abstain", "votes": 0},
        ],
    }


def test_results_of_a_named_poll(app: Flask, redis: Redis) -> None:
    """`results --poll` shows that poll and its scheduled status."""
    result = invoke(app, "results", "--poll", "past", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["status"] == "closed"


def test_recount_matches_then_reports_a_mismatch(
    app: Flask, client: FlaskClient, rt: Runtime, redis: Redis
) -> None:
    """`recount` exits 0 while counters match the ballots and non-zero after tampering."""
    vote(client, "r-a", "yes")
    vote(client, "r-b", "abstain")
    assert tally.drain(rt, "t") == 2
    vote(client, "r-c", "no")  # still queued: counted as pending, not as a mismatch
    good = invoke(app, "recount", "--poll", "main")
    assert good.exit_code == 0, good.output
    assert "MISMATCH" not in good.output
    assert "votes still queued 1" in good.output
    assert "recount matches" in good.output
    redis.hincrby(keys.counts("main"), "yes", 1)
    bad = invoke(app, "recount")
    assert bad.exit_code != 0
    [line] = [line for line in bad.output.splitlines() if "MISMATCH" in line]
    assert line.split()[0] == "yes"
    assert "does not match" in bad.output


def test_close_poll_stops_counting(app: Flask, client: FlaskClient, rt: Runtime, redis: Redis) -> None:
    """After `close-poll main` a vote gets the closed reply and is not counted."""
    result = invoke(app, "close-poll", "main")
    assert result.exit_code == 0, result.output
    assert "closed" in result.output
    vote(client, "close-user", "yes")
    assert outbox_kinds(redis) == ["closed"]
    assert redis.xlen(keys.VOTES_STREAM) == 0
    assert tally.drain(rt, "t") == 0
    assert rt.ballot_box.counts(rt.polls.get("main")) == {"yes": 0, "no": 0, "abstain": 0}


def test_open_poll_then_follow_schedule(app: Flask, client: FlaskClient, rt: Runtime, redis: Redis) -> None:
    """`open-poll future` lets it take votes; `follow-schedule future` makes it not open again."""
    opened = invoke(app, "open-poll", "future")
    assert opened.exit_code == 0, opened.output
    vote(client, "open-user", "b", poll_id="future")
    assert outbox_kinds(redis) == []
    assert tally.drain(rt, "t") == 1
    assert rt.ballot_box.counts(rt.polls.get("future")) == {"a": 0, "b": 1}
    followed = invoke(app, "follow-schedule", "future")
    assert followed.exit_code == 0, followed.output
    assert "not_open" in followed.output
    assert redis.exists(keys.state("future")) == 0
    vote(client, "late-user", "a", poll_id="future")
    assert outbox_kinds(redis)[-1] == "not_open"
    assert redis.xlen(keys.VOTES_STREAM) == 0


def test_unknown_poll_is_an_error(app: Flask, redis: Redis) -> None:
    """Every command that names a poll fails clearly on an unknown id and writes nothing."""
    for args in (
        ("close-poll", "nope"),
        ("open-poll", "nope"),
        ("follow-schedule", "nope"),
        ("results", "--poll", "nope"),
        ("recount", "--poll", "nope"),
    ):
        result = invoke(app, *args)
        assert result.exit_code != 0, args
        assert "no poll 'nope'" in result.output, args
    assert redis.dbsize() == 0


def test_set_webhook_posts_the_url_with_the_token(app: Flask, fake_viber: FakeViber) -> None:
    """`set-webhook URL` calls Viber's /set_webhook with the URL and the auth token header."""
    result = invoke(app, "set-webhook", WEBHOOK_URL)
    assert result.exit_code == 0, result.output
    assert "webhook set" in result.output
    assert "conversation_started" in result.output
    [request] = [r for r in fake_viber.requests if r.path == "/set_webhook"]
    assert request.body is not None
    assert request.body["url"] == WEBHOOK_URL
    assert request.headers.get("X-Viber-Auth-Token") == BOT_TOKEN


def test_set_webhook_fails_clearly_when_viber_refuses(
    environ: dict[str, str], redis: Redis, fake_viber: FakeViber
) -> None:
    """A non-zero Viber status (here invalidAuthToken) makes the command fail with its reason."""
    app = create_app({**environ, "VIBER_AUTH_TOKEN": "not-the-bot-token-0123456789"})
    result = invoke(app, "set-webhook", WEBHOOK_URL)
    assert result.exit_code != 0
    assert "invalidAuthToken" in result.output
    assert "webhook set" not in result.output
    assert [r.path for r in fake_viber.requests] == ["/set_webhook"]


def test_replay_dead_moves_dead_letters_back(
    app: Flask,
    client: FlaskClient,
    rt: Runtime,
    redis: Redis,
    senders: dict[str, ChannelSender],
    fake_viber: FakeViber,
) -> None:
    """`replay-dead` puts dead-lettered replies back in the outbox, and they are then sent."""
    vote(client, "dead-user", "maybe")
    fake_viber.fail_next(1, viber_status=3)
    assert sender.drain(rt, senders, "t")["dead"] == 1
    assert redis.llen(keys.OUTBOX_DEAD) == 1
    assert redis.xlen(keys.OUTBOX_STREAM) == 0
    result = invoke(app, "replay-dead")
    assert result.exit_code == 0, result.output
    assert "replayed 1" in result.output
    assert redis.llen(keys.OUTBOX_DEAD) == 0
    [(_, fields)] = redis.xrange(keys.OUTBOX_STREAM)
    assert (fields[b"kind"], fields[b"poll"], fields[b"attempts"]) == (b"help", b"main", b"0")
    assert opened(fields[b"receiver"]) == "dead-user"
    assert sender.drain(rt, senders, "t")["sent"] == 1
    [message] = fake_viber.messages_to("dead-user")
    assert "To vote" in message["text"]
