"""POST /viber/webhook in-process: signature, parsing, size limit, events, votes, replies, privacy."""

from __future__ import annotations

import json
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis

from tests.conftest import (
    BOT_TOKEN,
    VOTER_ID_SECRET,
    conversation_started,
    message_event,
    next_token,
    opened,
    post_callback,
    signed,
)
from tests.support.fake_viber import FakeViber
from webhook import create_app
from webhook.channels.base import ChannelSender
from webhook.channels.viber.signature import HEADER, sign
from webhook.config import Config
from webhook.core.ballot_box import MESSAGE_TAG_MODULO, message_tag
from webhook.core.identity import IdentityKind, voter_key
from webhook.core.polls import PollStatus
from webhook.runtime import Runtime
from webhook.store import keys
from workers import sender, tally

OVERSIZED_BYTES = 70_000


def outbox(redis: Redis) -> list[dict[str, str]]:
    """Every reply waiting in the outbox stream, decoded."""
    return [{k.decode(): v.decode() for k, v in f.items()} for _, f in redis.xrange(keys.OUTBOX_STREAM)]


def votes(redis: Redis) -> list[dict[bytes, bytes]]:
    """Every vote waiting in the votes stream."""
    return [fields for _, fields in redis.xrange(keys.VOTES_STREAM)]


def poll_keys(redis: Redis, poll_id: str) -> list[bytes]:
    """Every key of one poll (claims, ballots, counters, state)."""
    return list(redis.scan_iter(match=f"vv:poll:{poll_id}:*"))


def voter_of(user_id: str) -> bytes:
    """The voter key the service derives from a Viber user id."""
    return voter_key(VOTER_ID_SECRET, IdentityKind.VIBER, user_id)


def assert_error(response: Any, status: int) -> None:
    """The response has this status and a JSON body with a non-empty error."""
    assert response.status_code == status, response.data
    assert isinstance(response.json, dict)
    assert isinstance(response.json.get("error"), str) and response.json["error"]


# Signature


def test_good_signature_is_accepted_and_the_vote_written(client: FlaskClient, redis: Redis) -> None:
    """A correctly signed vote is answered 200 and queued."""
    response = post_callback(client, message_event("sig-user", "yes", tracking_data="main"))
    assert response.status_code == 200
    assert len(votes(redis)) == 1


@pytest.mark.parametrize(
    "make_signature",
    [
        pytest.param(lambda body: "0" * 64, id="wrong"),
        pytest.param(lambda body: None, id="missing"),
        pytest.param(lambda body: "", id="empty"),
        pytest.param(lambda body: sign("another-bot-token-0123456789abcd", body), id="other-token"),
        pytest.param(lambda body: sign(BOT_TOKEN, body + b" "), id="other-body"),
        pytest.param(lambda body: sign(BOT_TOKEN, body)[:-1], id="truncated"),
    ],
)
def test_bad_signature_is_403_and_writes_nothing(client: FlaskClient, redis: Redis, make_signature) -> None:  # type: ignore[no-untyped-def]
    """A vote without the bot's signature is refused before anything reaches Redis."""
    body = json.dumps(message_event("sig-user", "yes", tracking_data="main")).encode()
    headers = {"Content-Type": "application/json"}
    value = make_signature(body)
    if value is not None:
        headers[HEADER] = value
    response = client.post("/viber/webhook", data=body, headers=headers)
    assert_error(response, 403)
    assert redis.dbsize() == 0


def test_non_ascii_signature_is_403(app: Flask, redis: Redis) -> None:
    """A garbage signature with non-ASCII characters is a 403, not a 500 (fixed in 2a25960)."""
    app.config["PROPAGATE_EXCEPTIONS"] = False
    body = json.dumps(message_event("sig-user", "yes", tracking_data="main")).encode()
    headers = {HEADER: "\u00e9" * 64, "Content-Type": "application/json"}
    response = app.test_client().post("/viber/webhook", data=body, headers=headers)
    assert response.status_code == 403
    assert redis.dbsize() == 0


# Malformed callbacks


def _without(path: str) -> dict[str, Any]:
    """A vote message with one (possibly nested) field removed."""
    event = message_event("bad-user", "yes", tracking_data="main")
    *parents, last = path.split(".")
    target = event
    for part in parents:
        target = target[part]
    del target[last]
    return event


MALFORMED: dict[str, bytes | dict[str, Any]] = {
    "not-json": b"{not json",
    "not-utf8": b"\x80\x81\xfe",
    "empty-body": b"",
    "json-array": b'[{"event": "message"}]',
    "json-string": b'"message"',
    "missing-event": {"timestamp": 1, "message_token": 1},
    "event-not-string": {"event": 5},
    "event-empty": {"event": ""},
    "missing-sender": _without("sender"),
    "missing-sender-id": _without("sender.id"),
    "missing-message-token": _without("message_token"),
    "missing-timestamp": _without("timestamp"),
    "missing-message": _without("message"),
    "missing-message-type": _without("message.type"),
    "text-without-text": _without("message.text"),
    "sender-id-too-long": message_event("x" * 129, "yes"),
    "token-negative": message_event("bad-user", "yes", token=-1),
    "conversation-started-without-user": {**conversation_started("bad-user"), "user": None},
}


@pytest.mark.parametrize("payload", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_callback_is_400_and_writes_nothing(
    client: FlaskClient, redis: Redis, payload: bytes | dict[str, Any]
) -> None:
    """A signed but malformed callback is a 400 with a JSON error, and nothing is stored."""
    response = post_callback(client, payload)
    assert_error(response, 400)
    assert redis.dbsize() == 0


def test_oversized_body_is_413_and_writes_nothing(client: FlaskClient, redis: Redis) -> None:
    """A signed body over 64 KiB is refused with 413."""
    event = message_event("big-user", "yes", tracking_data="main")
    event["padding"] = "x" * OVERSIZED_BYTES
    body, headers = signed(event)
    assert len(body) > 64 * 1024
    response = client.post("/viber/webhook", data=body, headers=headers)
    assert_error(response, 413)
    assert redis.dbsize() == 0


def test_body_just_under_the_limit_is_accepted(client: FlaskClient, redis: Redis) -> None:
    """The size limit does not bite below 64 KiB."""
    event = message_event("big-user", "yes", tracking_data="main")
    event["padding"] = "x" * 60_000
    response = post_callback(client, event)
    assert response.status_code == 200
    assert len(votes(redis)) == 1


# Events the service only acknowledges


def _other_events() -> dict[str, dict[str, Any]]:
    """Callbacks shaped like real ones, for every event that needs no action."""
    now_ms = int(time.time() * 1000)
    user = {"id": "ev-user", "name": "Voter", "language": "en", "country": "BY", "api_version": 10}
    common = {"timestamp": now_ms, "chat_hostname": "SN-CHAT-01_", "message_token": next_token()}
    return {
        "webhook": {"event": "webhook", **common},
        "subscribed": {"event": "subscribed", **common, "user": user},
        "unsubscribed": {"event": "unsubscribed", **common, "user_id": "ev-user"},
        "delivered": {"event": "delivered", **common, "user_id": "ev-user"},
        "seen": {"event": "seen", **common, "user_id": "ev-user"},
        "failed-without-desc": {"event": "failed", **common, "user_id": "ev-user"},
        "client_status": {"event": "client_status", **common, "user_id": "ev-user", "status": 0},
        "brand_new_thing": {"event": "brand_new_thing", **common, "whatever": [1, 2]},
    }


@pytest.mark.parametrize("name", _other_events().keys())
def test_other_events_are_200_and_write_nothing(client: FlaskClient, redis: Redis, name: str) -> None:
    """Known non-vote events and unknown event types are acknowledged, nothing stored."""
    response = post_callback(client, _other_events()[name])
    assert response.status_code == 200
    assert response.json == {}
    assert redis.dbsize() == 0


# Welcome


def test_conversation_started_answers_the_welcome(
    client: FlaskClient, redis: Redis, rt: Runtime, config: Config
) -> None:
    """The welcome carries the question, one reply button per option and the poll id."""
    response = post_callback(client, conversation_started("welcome-user"))
    assert response.status_code == 200
    body = response.json
    poll = rt.polls.get("main")
    assert "receiver" not in body
    assert body["type"] == "text"
    assert poll.question in body["text"]
    assert body["tracking_data"] == "main"
    assert body["sender"]["name"] == config.bot_name
    buttons = body["keyboard"]["Buttons"]
    assert [b["ActionBody"] for b in buttons] == [o.id for o in poll.options]
    assert {b["ActionType"] for b in buttons} == {"reply"}
    for button, option in zip(buttons, poll.options, strict=True):
        assert option.label in button["Text"]
    assert redis.dbsize() == 0


def test_welcome_of_a_closed_poll_says_so_without_keyboard(client: FlaskClient, rt: Runtime) -> None:
    """An operator-closed poll's welcome says voting has closed and offers no buttons."""
    rt.ballot_box.set_status(rt.polls.get("main"), PollStatus.CLOSED)
    response = post_callback(client, conversation_started("welcome-user"))
    assert response.status_code == 200
    body = response.json
    assert "voting has closed" in body["text"].lower()
    assert "keyboard" not in body
    assert body["tracking_data"] == "main"
    assert "receiver" not in body


# Votes


@pytest.mark.parametrize(
    ("text", "index"),
    [("yes", 0), ("no", 1), ("Abstain", 2), ("aBsTaIn", 2), ("  YES \n", 0)],
)
def test_vote_is_queued_and_voter_claimed(client: FlaskClient, redis: Redis, text: str, index: int) -> None:
    """A vote by option id or label (any case) is one stream entry and one claim."""
    event = message_event("vote-user", text, tracking_data="main")
    response = post_callback(client, event)
    assert response.status_code == 200
    [fields] = votes(redis)
    voter = voter_of("vote-user")
    assert fields[b"poll"] == b"main"
    assert fields[b"option"] == str(index).encode()
    assert fields[b"voter"] == voter
    claim = redis.hget(keys.voters("main", voter), keys.field(voter))
    assert claim == message_tag("viber", event["message_token"]).encode()
    assert claim == b"v" + str(event["message_token"] % MESSAGE_TAG_MODULO).encode()
    assert outbox(redis) == []


def test_vote_by_a_label_that_differs_from_the_id(
    environ: dict[str, str], redis: Redis, tmp_path: Path
) -> None:
    """A label unlike its option id still names that option, in any case."""
    poll_file = tmp_path / "polls.toml"
    poll_file.write_text(
        '[[polls]]\nid = "p"\nquestion = "Q?"\n'
        '[[polls.options]]\nid = "agree"\nlabel = "I Agree"\n'
        '[[polls.options]]\nid = "disagree"\nlabel = "I Disagree"\n'
    )
    client = create_app({**environ, "POLL_FILE": str(poll_file)}).test_client()
    assert post_callback(client, message_event("label-1", "i disagree")).status_code == 200
    assert post_callback(client, message_event("label-2", "I AGREE")).status_code == 200
    assert [(f[b"poll"], f[b"option"]) for f in votes(redis)] == [(b"p", b"1"), (b"p", b"0")]


def test_vote_an_hour_old_is_still_accepted(client: FlaskClient, redis: Redis) -> None:
    """Viber retries for about an hour: such a late callback still counts."""
    event = message_event("late-user", "no", tracking_data="main")
    event["timestamp"] = int((time.time() - 3600) * 1000)
    assert post_callback(client, event).status_code == 200
    assert len(votes(redis)) == 1


def test_same_message_token_twice_is_a_retry(client: FlaskClient, redis: Redis) -> None:
    """Viber's redelivery of a vote neither queues a second vote nor a reply."""
    event = message_event("retry-user", "yes", tracking_data="main")
    assert post_callback(client, event).status_code == 200
    assert post_callback(client, event).status_code == 200
    assert len(votes(redis)) == 1
    assert outbox(redis) == []


def test_second_tap_gets_one_already_reply(client: FlaskClient, redis: Redis) -> None:
    """A second vote with another token is refused with one 'already' reply, even if redelivered."""
    assert post_callback(client, message_event("tap-user", "yes", tracking_data="main")).status_code == 200
    second = message_event("tap-user", "no", tracking_data="main")
    assert post_callback(client, second).status_code == 200
    assert post_callback(client, second).status_code == 200
    [reply] = outbox(redis)
    assert reply["kind"] == "already"
    assert reply["poll"] == "main"
    assert opened(reply["receiver"]) == "tap-user"
    [fields] = votes(redis)
    assert fields[b"option"] == b"0"


def test_unknown_option_gets_help_and_no_vote(client: FlaskClient, redis: Redis) -> None:
    """Text that names no option queues a help reply (once per token) and no vote."""
    event = message_event("help-user", "maybe", tracking_data="main")
    assert post_callback(client, event).status_code == 200
    assert post_callback(client, event).status_code == 200
    [reply] = outbox(redis)
    assert (reply["kind"], reply["poll"], opened(reply["receiver"])) == ("help", "main", "help-user")
    assert votes(redis) == []
    assert poll_keys(redis, "main") == []


@pytest.mark.parametrize(
    "message",
    [
        pytest.param({"type": "sticker", "sticker_id": 46105}, id="sticker"),
        pytest.param(
            {"type": "picture", "text": "yes", "media": "https://example.org/p.jpg", "thumbnail": ""},
            id="picture-captioned-yes",
        ),
        pytest.param({"type": "location", "location": {"lat": 53.9, "lon": 27.56}}, id="location"),
    ],
)
def test_non_text_message_gets_help_and_no_vote(
    client: FlaskClient, redis: Redis, message: dict[str, Any]
) -> None:
    """Only a text can be a vote; anything else gets help."""
    event = message_event("media-user", "unused")
    event["message"] = {**message, "tracking_data": "main"}
    assert post_callback(client, event).status_code == 200
    [reply] = outbox(redis)
    assert reply["kind"] == "help"
    assert votes(redis) == []
    assert poll_keys(redis, "main") == []


@pytest.mark.parametrize(("poll_id", "kind"), [("future", "not_open"), ("past", "closed")])
def test_vote_outside_the_schedule_is_refused(
    client: FlaskClient, redis: Redis, poll_id: str, kind: str
) -> None:
    """A vote in a poll not yet open or already closed gets that reply; nobody is claimed."""
    assert post_callback(client, message_event("sched-user", "a", tracking_data=poll_id)).status_code == 200
    [reply] = outbox(redis)
    assert (reply["kind"], reply["poll"]) == (kind, poll_id)
    assert votes(redis) == []
    assert poll_keys(redis, poll_id) == []


def test_vote_in_an_operator_closed_poll_is_refused(client: FlaskClient, redis: Redis, rt: Runtime) -> None:
    """After an operator closes a poll its votes get the closed reply and are not queued."""
    rt.ballot_box.set_status(rt.polls.get("main"), PollStatus.CLOSED)
    assert post_callback(client, message_event("closed-user", "yes", tracking_data="main")).status_code == 200
    [reply] = outbox(redis)
    assert (reply["kind"], reply["poll"]) == ("closed", "main")
    assert votes(redis) == []
    assert poll_keys(redis, "main") == [keys.state("main").encode()]


@pytest.mark.parametrize("age_s", [3 * 3600, -600], ids=["3h-old", "10min-ahead"])
def test_callback_outside_the_time_window_is_ignored(client: FlaskClient, redis: Redis, age_s: int) -> None:
    """A replayed (old) or far-future callback is answered 200 and has no effect."""
    event = message_event("stale-user", "yes", tracking_data="main")
    event["timestamp"] = int((time.time() - age_s) * 1000)
    response = post_callback(client, event)
    assert response.status_code == 200
    assert response.json["status"] == "ignored"
    assert redis.dbsize() == 0


# Privacy


def _everything_stored(redis: Redis) -> bytes:
    """Every key, field, member, value and serialized form in Redis, read per key type."""
    parts: list[bytes] = []
    for key in redis.scan_iter(count=1000):
        parts.append(key)
        kind = redis.type(key).decode()
        if kind == "string":
            parts.append(redis.get(key) or b"")
        elif kind == "hash":
            for field, value in redis.hgetall(key).items():
                parts += [field, value]
                try:
                    parts.append(zlib.decompress(value))  # rq keeps job data zlib-compressed
                except zlib.error:
                    pass
        elif kind == "list":
            parts += redis.lrange(key, 0, -1)
        elif kind == "set":
            parts += list(redis.smembers(key))
        elif kind == "zset":
            parts += [member for member, _ in redis.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            for _, fields in redis.xrange(key):
                for field, value in fields.items():
                    parts += [field, value]
        else:
            raise AssertionError(f"unexpected key type {kind} for {key!r}")
        parts.append(redis.dump(key) or b"")
    return b"\n".join(parts)


def test_no_raw_viber_id_is_left_in_redis(
    client: FlaskClient, redis: Redis, rt: Runtime, senders: dict[str, ChannelSender], fake_viber: FakeViber
) -> None:
    """Neither while queued nor once the workers ran does a key or value hold a voter's Viber id."""
    users = [f"RawViberId{n}Zq8+/Kw==" for n in range(4)]
    for n, user in enumerate(users):
        vote = message_event(user, ["yes", "no"][n % 2], tracking_data="main")
        assert post_callback(client, vote).status_code == 200
    assert post_callback(client, message_event(users[0], "no", tracking_data="main")).status_code == 200
    assert post_callback(client, message_event(users[1], "maybe", tracking_data="main")).status_code == 200
    before = _everything_stored(redis)
    assert [user for user in users if user.encode() in before] == []
    queued = [f[b"receiver"] for _, f in redis.xrange(keys.VOTES_STREAM) + redis.xrange(keys.OUTBOX_STREAM)]
    assert sorted({opened(to) for to in queued}) == sorted(users)
    assert all(to in before for to in queued)  # the reader does see the sealed ids while queued
    assert tally.drain(rt, "t") == 4
    totals = sender.drain(rt, senders, "t")
    assert totals["sent"] == 6
    assert len(fake_viber.sent_messages()) == 6
    after = _everything_stored(redis)
    assert rt.ballot_box.counts(rt.polls.get("main")) == {"yes": 2, "no": 2, "abstain": 0}
    leaked = [user for user in users if user.encode() in after]
    assert leaked == []
