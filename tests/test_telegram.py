"""The Telegram channel: Viber's conversation, ballot box and receipts; one vote per number across both."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from redis import Redis

from tests.conftest import OPERATOR_TOKEN, TELEGRAM_SECRET
from tests.support.fake_telegram import FakeTelegram
from tests.support.stack import Stack
from tests.support.telegram_chat import (
    SECRET_HEADER,
    TelegramChat,
    buttons,
    message_update,
    tap_update,
    text_of,
)
from tests.support.viber_chat import only_text
from webhook import create_app
from webhook.channels.telegram.client import TelegramSender
from webhook.channels.telegram.send_limits import SendLimiter
from webhook.config import Config
from webhook.core.errors import ConfigError
from webhook.core.polls import PollStatus
from webhook.store import keys
from workers import sender, tally

RECEIPT = re.compile(r"\b([0-9A-Z]{5}-[0-9A-Z]{5})\b")
NUMBER = "375291234567"  # as Telegram sends it: no '+'


@pytest.fixture
def tg(client, rt, fake_telegram, senders):  # type: ignore[no-untyped-def]
    """Start Telegram chats with the app: tg(user_id, language=...)."""
    return lambda user_id, **kw: TelegramChat(
        client, rt, fake_telegram, senders, TELEGRAM_SECRET, user_id, **kw
    )


def counts(rt: Any, poll_id: str) -> dict[str, int]:
    """Counters of a poll."""
    return rt.ballot_box.counts(rt.polls.get(poll_id))


def test_a_forged_or_missing_secret_is_refused_and_touches_nothing(tg, redis: Redis) -> None:
    """403 for a wrong or missing secret token; Redis stays empty."""
    chat = tg(1001)
    update = tap_update(1001, "main:0")
    assert chat.post(update, secret="wrong-secret-0123456789").status_code == 403
    assert chat.post(update, secret="").status_code == 403
    assert redis.keys("*") == []


def test_start_shows_the_question_and_options_in_the_webhook_answer(tg) -> None:
    """/start with a deep-link payload: a sendMessage answer with one inline button per option."""
    answer = tg(1002, language="be").start("tv-spring")
    assert answer["method"] == "sendMessage" and answer["chat_id"] == 1002
    assert "Націсніце адзін з адказаў" in answer["text"]
    assert [b[0]["callback_data"] for b in buttons(answer)] == ["main:0", "main:1", "main:2"]


def test_a_tap_is_counted_answered_and_confirmed_with_a_receipt(tg, rt) -> None:
    """The tap is answered in the HTTP answer (answerCallbackQuery); the confirmation carries a receipt."""
    chat = tg(1003)
    answer, replies = chat.tap("main:1")
    assert answer["method"] == "answerCallbackQuery" and answer["callback_query_id"].startswith("cq-")
    confirmation = text_of(replies)
    assert "your vote (No) is counted" in confirmation and RECEIPT.search(confirmation)
    assert counts(rt, "main") == {"yes": 0, "no": 1, "abstain": 0}
    assert "already voted" in text_of(chat.tap("main:0")[1])
    receipt = RECEIPT.search(confirmation).group(1)
    assert f"Receipt {receipt} is in the count" in text_of(chat.say(f"check {receipt}"))
    assert counts(rt, "main") == {"yes": 0, "no": 1, "abstain": 0}
    assert rt.redis.hgetall(keys.channel_counts("main")) == {b"telegram": b"1"}


def test_a_retried_update_gets_no_second_reply(tg, rt) -> None:
    """Telegram's retry repeats the update_id: answered 200, counted once, replied to once."""
    chat = tg(1004)
    update = tap_update(1004, "main:0")
    assert chat.post(update).status_code == 200
    assert chat.post(update).status_code == 200
    assert len(chat.replies()) == 1
    text_update = message_update(1004, text="hello")
    chat.post(text_update)
    chat.post(text_update)
    assert len(chat.replies()) == 1
    assert counts(rt, "main")["yes"] == 1
    assert rt.redis.hget(keys.STATS, "vote_retry") == b"1"


@pytest.mark.parametrize(
    ("language", "words"), [("en", "is counted"), ("ru", "учтён"), ("be", "улічаны"), ("de", "is counted")]
)
def test_three_languages_from_language_code(tg, language: str, words: str) -> None:
    """The bot answers in the voter's language_code, English when it does not speak it."""
    assert words in text_of(
        tg(1010 + len(language) * 7 + ord(language[0]), language=language).tap("main:2")[1]
    )


def test_results_help_and_schedules(tg, rt) -> None:
    """results, help for stray text, a poll not yet open, a closed poll with its final result."""
    chat = tg(1005)
    assert "when voting has closed" in text_of(chat.say("results"))
    help_text = chat.say("what is this?")
    assert "To vote, tap one of the buttons" in text_of(help_text) and buttons(help_text[0])
    assert "not opened yet" in text_of(chat.tap("future:0")[1])
    assert "Final results" in text_of(chat.tap("past:1")[1])
    rt.ballot_box.set_status(rt.polls.get("main"), PollStatus.CLOSED)
    assert "Voting has closed" in text_of(chat.tap("main:0")[1])
    assert counts(rt, "main") == {"yes": 0, "no": 0, "abstain": 0}


def test_unknown_buttons_get_help_not_a_vote(tg, rt) -> None:
    """A button naming no poll or no option (forged callback data) is never a vote."""
    chat = tg(1006)
    for data in ("nope:0", "main:9", "main:x", "main", ""):
        chat.tap(data)
    assert sum(counts(rt, "main").values()) == 0


def test_the_reply_rate_limit_holds(tg, rt, redis: Redis) -> None:
    """A flood of texts gets no more than the reply limit (20 per window) of answers queued."""
    chat = tg(1007)
    for i in range(25):
        chat.post(message_update(1007, text=f"spam {i}"))
    assert redis.xlen(keys.OUTBOX_STREAM) == rt.config.reply_rate_limit
    assert redis.hget(keys.STATS, "reply_limited") == b"5"


def test_a_phone_poll_asks_for_the_contact_and_refuses_a_forwarded_card(tg, rt, redis: Redis) -> None:
    """request_contact button; a card not the sender's own is refused and counted; the own one votes."""
    chat = tg(1008)
    [ask] = chat.tap("phone:0")[1]
    [[button]] = buttons(ask)
    assert button["request_contact"] is True
    assert "not your own number" in text_of(chat.share(NUMBER, owner=None))
    assert "not your own number" in text_of(chat.share(NUMBER, owner=4242))
    assert redis.hget(keys.STATS, keys.refused_contact_stat("telegram", "not_own_contact")) == b"2"
    ok = chat.share(NUMBER)
    assert "verified" in text_of(ok) and [b[0]["callback_data"] for b in buttons(ok[0])] == [
        "phone:0",
        "phone:1",
    ]
    assert "is counted" in text_of(chat.tap("phone:1")[1])
    assert "already verified with another number" in text_of(chat.share("375291234568"))
    assert counts(rt, "phone") == {"yes": 0, "no": 1}


def test_one_number_votes_once_viber_then_telegram(tg, chat, rt) -> None:
    """The number's identity is the same keyed hash whichever messenger shared it."""
    viber = chat("viber-first")
    viber.share_phone("+" + NUMBER)
    assert "counted" in only_text(viber.send("yes", poll="phone"))
    telegram = tg(1009)
    assert "verified" in text_of(telegram.share(NUMBER))
    assert "already voted" in text_of(telegram.tap("phone:1")[1])
    assert counts(rt, "phone") == {"yes": 1, "no": 0}


def test_one_number_votes_once_telegram_then_viber(tg, chat, rt) -> None:
    """And the other way round."""
    telegram = tg(1011)
    telegram.share(NUMBER)
    assert "is counted" in text_of(telegram.tap("phone:0")[1])
    viber = chat("viber-second")
    assert "verified" in only_text(viber.share_phone("+" + NUMBER))
    assert "already voted" in only_text(viber.send("no", poll="phone"))
    assert counts(rt, "phone") == {"yes": 1, "no": 0}
    assert rt.redis.hgetall(keys.channel_counts("phone")) == {b"telegram": b"1"}


def test_without_phone_verification_each_messenger_account_votes(tg, chat, rt) -> None:
    """A poll without require_phone counts Viber and Telegram accounts separately (README says so)."""
    assert "counted" in only_text(chat("same-person").send("yes"))
    assert "is counted" in text_of(tg(1012).tap("main:0")[1])
    assert counts(rt, "main")["yes"] == 2


def test_a_429_is_honoured_and_nothing_is_lost(
    tg, rt, redis: Redis, fake_telegram: FakeTelegram, senders
) -> None:
    """A 429 parks the confirmation for retry_after without spending an attempt; it goes out after."""
    chat = tg(1013)
    fake_telegram.fail_next(1, http_status=429, retry_after=7)
    chat.post(tap_update(1013, "main:0"))
    assert chat.replies() == []
    [(parked, due)] = redis.zrange(keys.OUTBOX_RETRY, 0, -1, withscores=True)
    assert b'"attempts": "0"' in parked and b"telegram 429" in parked
    assert rt.outbox.move_due_retries(now=due - 1) == 0, "retry_after is honoured"
    assert rt.outbox.move_due_retries(now=due) == 1
    assert "is counted" in text_of(chat.replies())
    assert redis.hget(keys.STATS, "send_deferred") == b"1"


def test_a_blocked_bot_is_dropped_and_a_bad_request_dead_lettered(tg, redis: Redis, fake_telegram) -> None:
    """403 (the voter blocked the bot): dropped; 400: dead-lettered for an operator."""
    fake_telegram.fail_next(1, http_status=403)
    tg(1014).tap("main:0")
    fake_telegram.fail_next(1, http_status=400)
    tg(1015).tap("main:1")
    assert redis.hget(keys.STATS, "send_dropped") == b"1"
    assert redis.llen(keys.OUTBOX_DEAD) == 1


def send_all(rt: Any, senders: dict[str, Any], fake: FakeTelegram, expected: int) -> None:
    """Drain the send worker, putting deferred replies back when due, until `expected` messages went out."""
    deadline = time.monotonic() + 30
    while len(fake.sent_messages()) < expected:
        assert time.monotonic() < deadline, f"{len(fake.sent_messages())} of {expected} sent"
        sender.drain(rt, senders, "t")
        rt.outbox.move_due_retries()
        time.sleep(0.1)


def tap_many(tg: Any, rt: Any, first_user: int, n: int) -> None:
    """n voters tap at once; their votes are tallied (confirmations queued)."""
    for user_id in range(first_user, first_user + n):
        tg(user_id).post(tap_update(user_id, "main:0"))
    tally.drain(rt, "t")


def test_the_shared_limiter_keeps_sends_under_telegrams_limits(tg, rt, fake_telegram, senders) -> None:
    """60 confirmations at once: the limiter spreads them, so the fake (30/s, 1/s per chat) sends no 429."""
    fake_telegram.enforce_limits = True
    tap_many(tg, rt, 2000, 60)
    send_all(rt, senders, fake_telegram, 60)
    assert fake_telegram.limited == 0


def test_without_the_limiter_telegram_answers_429_and_still_nothing_is_lost(
    tg, rt, config, fake_telegram, senders
) -> None:
    """The same burst with the limiter opened wide: the fake answers 429s (the limiter is what prevents
    them), each reply is deferred by its retry_after, and all 60 still go out."""
    fake_telegram.enforce_limits = True
    wide_open = SendLimiter(rt.redis, config.voter_id_secret, global_per_s=10_000, per_chat=10_000)
    unlimited = {**senders, "telegram": TelegramSender(config.telegram, wide_open, concurrency=64)}
    tap_many(tg, rt, 3000, 60)
    try:
        send_all(rt, unlimited, fake_telegram, 60)
    finally:
        unlimited["telegram"].close()
    assert fake_telegram.limited > 0
    assert rt.redis.hget(keys.STATS, "send_deferred") is not None


def test_operators_see_votes_and_refusals_per_channel(tg, chat, client, rt) -> None:
    """/metrics and the dashboard's state split votes, refused callbacks and refused numbers by channel."""
    auth = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}

    def forged_secrets() -> int:  # this process's counter: earlier tests may have raised it too
        state = client.get("/dashboard/api/state?poll=main", headers=auth).get_json()
        return state["channels"]["rejected"].get("telegram", {}).get("bad_signature", 0)

    forged_before = forged_secrets()
    tg(1016).tap("main:0")
    chat("viber-per-channel").send("no")
    tg(1017).post(tap_update(1017, "main:1"), secret="forged-secret-0123456789")
    tg(1018).share(NUMBER, owner=None)
    page = client.get("/metrics", headers=auth).get_data(as_text=True)
    assert 'viber_vote_channel_votes_total{channel="telegram",poll="main"} 1.0' in page
    assert 'viber_vote_channel_votes_total{channel="viber",poll="main"} 1.0' in page
    assert 'viber_vote_channel_callbacks_rejected_total{channel="telegram",reason="bad_signature"}' in page
    assert (
        'viber_vote_channel_contacts_refused_total{channel="telegram",reason="not_own_contact"} 1.0' in page
    )
    state = client.get("/dashboard/api/state?poll=main", headers=auth).get_json()
    assert state["channels"]["votes"] == {"telegram": 1, "viber": 1}
    assert forged_secrets() == forged_before + 1
    assert state["channels"]["contacts_refused"]["telegram"]["not_own_contact"] == 1
    assert state["contacts_refused"]["not_own_contact"] == 1


@pytest.mark.telegram
def test_two_hundred_concurrent_telegram_voters_count_exactly_once(
    stack: Stack, redis: Redis, fake_telegram: FakeTelegram
) -> None:
    """200 Telegram voters tap at once through gunicorn and the Procfile's workers: +200, 200 receipts."""
    updates = [json.dumps(tap_update(5000 + i, f"main:{i % 3}")).encode() for i in range(200)]
    headers = {SECRET_HEADER: TELEGRAM_SECRET, "Content-Type": "application/json"}
    barrier = threading.Barrier(len(updates))

    def post(body: bytes) -> int:
        barrier.wait()
        request = urllib.request.Request(f"{stack.base_url}/telegram/webhook", data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status

    with ThreadPoolExecutor(max_workers=len(updates)) as pool:
        assert list(pool.map(post, updates)) == [200] * 200
    fake_telegram.wait_for_messages(200, timeout_s=60)
    assert sum(int(v) for v in redis.hvals(keys.counts("main"))) == 200
    assert {str(5000 + i) for i in range(200)} == {str(m["chat_id"]) for m in fake_telegram.sent_messages()}
    assert all("is counted" in m["text"] for m in fake_telegram.sent_messages())


def test_set_telegram_webhook_registers_the_url_with_the_secret(app, fake_telegram: FakeTelegram) -> None:
    """`set-telegram-webhook URL` calls setWebhook with the URL, the secret token and the updates used."""
    url = "https://vote.example.org/telegram/webhook"
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["set-telegram-webhook", url])
    assert result.exit_code == 0, result.output
    assert fake_telegram.webhook["url"] == url
    assert fake_telegram.webhook["secret_token"] == TELEGRAM_SECRET
    assert set(fake_telegram.webhook["allowed_updates"]) == {"message", "callback_query"}


def test_set_telegram_webhook_fails_clearly_on_a_wrong_token(
    environ: dict[str, str], redis: Redis, fake_telegram: FakeTelegram
) -> None:
    """A token Telegram refuses makes the command fail with Telegram's reason, not a traceback."""
    app = create_app({**environ, "TELEGRAM_BOT_TOKEN": "123456789:not-the-right-token-0123456789"})
    with app.app_context():
        result = app.test_cli_runner().invoke(
            args=["set-telegram-webhook", "https://x.example/telegram/webhook"]
        )
    assert result.exit_code != 0 and "Unauthorized" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"VIBER_AUTH_TOKEN": "", "TELEGRAM_BOT_TOKEN": ""}, "VIBER_AUTH_TOKEN' is missing"),
        ({"TELEGRAM_WEBHOOK_SECRET": ""}, "TELEGRAM_WEBHOOK_SECRET' is missing"),
        ({"TELEGRAM_WEBHOOK_SECRET": "short"}, "TELEGRAM_WEBHOOK_SECRET"),
        ({"TELEGRAM_WEBHOOK_SECRET": "a" * 40}, "TELEGRAM_WEBHOOK_SECRET"),
        ({"TELEGRAM_WEBHOOK_SECRET": "spaces are not allowed in 4 secret"}, "24 to 256 characters"),
        ({"TELEGRAM_BOT_TOKEN": "not-a-token"}, "is not a bot token"),
        ({"TELEGRAM_BOT_USERNAME": "a b"}, "not a Telegram bot username"),
    ],
)
def test_telegram_settings_are_checked_loudly(
    environ: dict[str, str], settings: dict[str, str], error: str
) -> None:
    """Either channel may run alone; a Telegram token needs its secret; malformed values name themselves."""
    with pytest.raises(ConfigError, match=error):
        Config.from_environ({k: v for k, v in {**environ, **settings}.items() if v})


def test_either_channel_can_run_alone(environ: dict[str, str]) -> None:
    """Viber's settings are optional when Telegram's are given, and the other way round."""
    telegram_only = Config.from_environ({k: v for k, v in environ.items() if k != "VIBER_AUTH_TOKEN"})
    assert telegram_only.viber_auth_token is None and telegram_only.telegram is not None
    viber_only = Config.from_environ({k: v for k, v in environ.items() if not k.startswith("TELEGRAM_")})
    assert viber_only.telegram is None and viber_only.viber_auth_token


@pytest.mark.parametrize(
    ("code", "imported"),
    [
        ("import wsgi", True),  # gunicorn's master (preload_app): workers are forked with the types
        ("from webhook import create_cli_app; create_cli_app()", False),  # `flask --app wsgi ...`
    ],
)
def test_aiogram_is_imported_by_the_served_app_and_never_by_an_operator_command(
    environ: dict[str, str], code: str, imported: bool
) -> None:
    """aiogram's types take seconds of CPU to import: once before serving, never for a command."""
    probe = f"import sys; {code}; print('aiogram' in sys.modules)"
    env = {**os.environ, **environ}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(imported)
