"""Hostile Telegram updates with the right secret: any shape, any text, never a 5xx, one vote at most."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis

from tests.conftest import TELEGRAM_SECRET
from tests.support.telegram_chat import SECRET_HEADER
from webhook.store import keys

HOSTILE = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TEXT = st.text(st.characters(codec=None), max_size=80)
"""Any Unicode, lone surrogates included (they reach the body as \\udXXX escapes)."""
IDS = st.one_of(st.integers(-(2**70), 2**70), TEXT, st.none(), st.booleans(), st.floats(allow_nan=True))
JUNK = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=12,
)


def user(uid: Any, language: Any) -> dict[str, Any]:
    """A `from` object with hostile values."""
    return {"id": uid, "is_bot": False, "first_name": "x", "language_code": language}


MESSAGES = st.builds(
    lambda update_id, uid, language, text, chat_type, contact_uid, phone, date: {
        "update_id": update_id,
        "message": {
            "message_id": 1,
            "date": date,
            "chat": {"id": uid, "type": chat_type},
            "from": user(uid, language),
            **(
                {"text": text}
                if phone is None
                else {"contact": {"phone_number": phone, "user_id": contact_uid}}
            ),
        },
    },
    update_id=IDS,
    uid=IDS,
    language=st.one_of(TEXT, st.none()),
    text=st.one_of(TEXT, st.sampled_from(["/start", "/start tv", "results", "check ", "yes"])),
    chat_type=st.sampled_from(["private", "group", "channel", ""]),
    contact_uid=IDS,
    phone=st.one_of(st.none(), TEXT, st.just("375291234567")),
    date=st.one_of(st.integers(0, 2**40), TEXT, st.just(2_000_000_000)),
)
TAPS = st.builds(
    lambda update_id, uid, data, query_id: {
        "update_id": update_id,
        "callback_query": {"id": query_id, "from": user(uid, "en"), "chat_instance": "1", "data": data},
    },
    update_id=IDS,
    uid=IDS,
    data=st.one_of(TEXT, st.sampled_from(["main:0", "main:99", "phone:1", ":", "main:-1", "main:0:0"])),
    query_id=IDS,
)
UPDATES = st.one_of(MESSAGES, TAPS, JUNK)


def post(client: Any, payload: Any) -> int:
    """POST a hostile update with the right secret; the status."""
    body = json.dumps(payload).encode()
    headers = {SECRET_HEADER: TELEGRAM_SECRET, "Content-Type": "application/json"}
    return client.post("/telegram/webhook", data=body, headers=headers).status_code


@HOSTILE
@given(payload=UPDATES)
def test_no_hostile_update_gets_a_5xx(client, redis: Redis, payload: Any) -> None:
    """Any shape and any text: a 200 or a 400, never a 5xx; a 400 writes nothing."""
    redis.flushall()  # each example on an empty store (keys an earlier one set may expire meanwhile)
    status = post(client, payload)
    assert status in (200, 400), status
    if status == 400:
        assert redis.keys("*") == []


@HOSTILE
@given(payloads=st.lists(TAPS, min_size=1, max_size=8))
def test_one_telegram_user_is_counted_at_most_once(client, redis: Redis, payloads: list[Any]) -> None:
    """Whatever taps one user sends (forged data, repeated ids), they vote at most once in a poll."""
    redis.flushall()
    for payload in payloads:
        payload["callback_query"]["from"]["id"] = 77
        post(client, payload)
    claims = sum(len(redis.hkeys(k)) for k in redis.scan_iter(match="vv:poll:main:voters:*"))
    assert claims <= 1
    assert redis.xlen(keys.VOTES_STREAM) <= 1
