"""Adversarial review of eccea5c..main: each test demonstrates one finding and FAILS on the code reviewed.

The findings (severity, what an attacker or a user does, what happens, the proposed fix) are in the
review report; each test's docstring names its finding. They use the project's fixtures (real
redis-server, the fake Viber and Telegram APIs); nothing under test is patched.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from redis import Redis

from tests.conftest import TELEGRAM_SECRET, operator_token
from tests.support.telegram_chat import TelegramChat, message_update, tap_update, text_of
from tests.support.viber_chat import Chat, only_text
from tests.test_dashboard import login_form_csrf
from webhook import create_app
from webhook.channels.telegram import TELEGRAM
from webhook.channels.telegram.client import TelegramSender
from webhook.channels.telegram.send_limits import SendLimiter
from webhook.channels.viber import ViberSender
from webhook.channels.viber.client import AsyncViberClient
from webhook.config import Config
from webhook.core.polls import PollStatus
from webhook.operator import throttle
from webhook.runtime import Runtime
from webhook.store import keys
from workers import sender

BY_NUMBER = "+375291234567"
RU_NUMBER = "+79161234567"

TWO_PHONE_POLLS = """
[[polls]]
id = "belarus"
question = "A vote for Belarusian numbers only"
require_phone = true
allowed_country_codes = ["375"]
[[polls.options]]
id = "yes"
label = "Yes"
[[polls.options]]
id = "no"
label = "No"

[[polls]]
id = "anyone"
question = "An earlier phone poll, closed, that was open to any country"
require_phone = true
closes_at = "2020-01-01T00:00:00+00:00"
[[polls.options]]
id = "yes"
label = "Yes"
[[polls.options]]
id = "no"
label = "No"
"""


MAIN_AND_A_PHONE_POLL_OPENED_EARLY = """
[[polls]]
id = "main"
question = "An ordinary poll, open"
[[polls.options]]
id = "yes"
label = "Yes"
[[polls.options]]
id = "no"
label = "No"

[[polls]]
id = "phone-early"
question = "A phone poll an operator opens before its scheduled time"
require_phone = true
allowed_country_codes = ["375"]
opens_at = "2099-01-01T00:00:00+00:00"
[[polls.options]]
id = "yes"
label = "Yes"
[[polls.options]]
id = "no"
label = "No"
"""


@pytest.fixture
def tg(client, rt, fake_telegram, senders):  # type: ignore[no-untyped-def]
    """Start Telegram chats with the app: tg(user_id, language=...) (as tests/test_telegram.py)."""
    return lambda user_id, **kw: TelegramChat(
        client, rt, fake_telegram, senders, TELEGRAM_SECRET, user_id, **kw
    )


class Deployment:
    """An app with its own poll file, and chats in both messengers with it."""

    def __init__(self, config: Config, fake_viber: Any, fake_telegram: Any, viber: AsyncViberClient) -> None:
        """Build the app, a worker's runtime and the senders against the fakes."""
        self.app = create_app(config)
        self.app.config["TESTING"] = True
        self.rt = Runtime.build(config)
        self.fake_viber, self.fake_telegram = fake_viber, fake_telegram
        self.senders = {
            "viber": ViberSender(viber, config.bot_name),
            "telegram": TELEGRAM.sender(config, concurrency=8),
        }

    def viber(self, user_id: str, **kw: Any) -> Chat:
        """A Viber chat (country=..., as tests/support/viber_chat.py)."""
        return Chat(self.app.test_client(), self.rt, self.fake_viber, self.senders, user_id, **kw)

    def telegram(self, user_id: int, **kw: Any) -> TelegramChat:
        """A Telegram chat."""
        return TelegramChat(
            self.app.test_client(), self.rt, self.fake_telegram, self.senders, TELEGRAM_SECRET, user_id, **kw
        )


@pytest.fixture
def deployment(environ, redis, fake_viber, fake_telegram, tmp_path: Path) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """deployment(poll_toml): an app on that poll file (one per test)."""
    made: list[Deployment] = []
    with AsyncViberClient(environ["VIBER_API_URL"], environ["VIBER_AUTH_TOKEN"]) as viber:

        def make(poll_toml: str) -> Deployment:
            poll_file = tmp_path / f"polls-{len(made)}.toml"
            poll_file.write_text(poll_toml, encoding="utf-8")
            config = Config.from_environ({**environ, "POLL_FILE": str(poll_file)})
            made.append(Deployment(config, fake_viber, fake_telegram, viber))
            return made[-1]

        yield make
        for each in made:
            each.senders["telegram"].close()


# --- 1. The count's integrity ------------------------------------------------------------------


def test_a_number_bound_under_a_looser_phone_poll_votes_in_a_country_restricted_one(deployment) -> None:
    """MEDIUM (finding 1): allowed_countries is checked only when a number binds, and a binding is
    for good and for every poll. A Russian account binds its Russian number under another phone
    poll without that rule (here one that closed long ago: a contact's poll status is never
    checked, Viber's tracking data names it), then votes in the +375-only poll: counted."""
    voter = deployment(TWO_PHONE_POLLS).viber("ru-voter", country="RU")
    refused = only_text(voter.share_phone(RU_NUMBER, poll="belarus"))
    assert "only phone numbers of the countries this vote is for" in refused  # the rule, at binding
    ok = only_text(voter.share_phone(RU_NUMBER, poll="anyone"))
    assert "verified" in ok
    replies = voter.send("yes", poll="belarus")
    assert not any("is counted" in r["text"] for r in replies), (
        "a number of a country the poll does not allow was counted in it"
    )


PROVEN_ONLY_POLL = """
[[polls]]
id = "proven"
question = "A vote where only numbers the messenger proves count"
require_phone = true
proven_numbers_only = true
allowed_country_codes = ["375"]
[[polls.options]]
id = "yes"
label = "Yes"
[[polls.options]]
id = "no"
label = "No"

[[polls]]
id = "plain-phone"
question = "A phone poll that takes Viber's numbers"
require_phone = true
allowed_country_codes = ["375"]
[[polls.options]]
id = "yes"
label = "Yes"
[[polls.options]]
id = "no"
label = "No"
"""


def test_a_viber_card_of_someone_elses_number_cannot_lock_its_proven_owner_out(deployment) -> None:
    """MEDIUM (finding 2): a Viber account of the same country can bind a forwarded card of someone
    else's number (Viber vouches only for the account's country). In a poll with
    proven_numbers_only, such a number neither binds nor votes, whether it was shared in that poll
    or bound in another one; its owner, who proves it in Telegram (contact.user_id == from.id),
    votes. (Without the option this is what README's "What it cannot prevent" says.)"""
    setup = deployment(PROVEN_ONLY_POLL)
    squatter = setup.viber("squatter", country="BY")
    assert "can prove are yours" in only_text(squatter.share_phone(BY_NUMBER, poll="proven"))
    assert "verified" in only_text(squatter.share_phone(BY_NUMBER, poll="plain-phone"))
    assert "can prove are yours" in only_text(squatter.send("yes", poll="proven"))
    owner = setup.telegram(424242)
    assert "verified" in text_of(owner.share(BY_NUMBER.lstrip("+")))
    reply = text_of(owner.tap("proven:1")[1])
    assert "is counted" in reply, f"the number's proven owner could not vote: {reply!r}"
    assert sum(setup.rt.ballot_box.counts(setup.rt.polls.get("proven")).values()) == 1


def test_a_telegram_voter_can_verify_in_a_phone_poll_an_operator_opened_early(deployment) -> None:
    """MEDIUM (finding 7): a Telegram contact names no poll, so the conversation binds it under
    `polls.current(now, require_phone=True)`, the first phone poll open *by schedule*. A phone
    poll opened by an operator (`open-poll`, "whatever the schedule says") is not: the contact
    falls back to the default poll, which needs no phone, and the voter gets the help text. No
    Telegram voter can verify, so none can vote in it (Viber's contacts carry the poll and work).
    With two phone polls open, the same choice applies the first one's countries to a voter
    who tapped the second."""
    setup = deployment(MAIN_AND_A_PHONE_POLL_OPENED_EARLY)
    setup.rt.ballot_box.set_status(setup.rt.polls.get("phone-early"), PollStatus.OPEN)
    voter = setup.telegram(6161)
    [ask] = voter.tap("phone-early:0")[1]
    assert "share" in ask["text"].lower()
    reply = text_of(voter.share(BY_NUMBER.lstrip("+")))
    assert "verified" in reply, f"the voter's own number was not taken: {reply!r}"


def test_a_telegram_tap_whose_update_id_matches_the_viber_votes_tag_is_not_told_it_voted(
    chat, tg, rt
) -> None:
    """LOW (finding 8): a claim remembers its vote's callback as token mod 4096, whatever the
    channel. The number's Telegram account taps with an update_id equal to the Viber vote's
    message_token mod 4096 (1 in 4096; Telegram's ids are sequential): cast.lua calls it a
    retry, so no "already voted" is queued and the tap's answer says "Vote received: your
    receipt follows." No receipt ever follows, for a vote that was not counted."""
    viber = chat("viber-owner")
    viber.share_phone(BY_NUMBER)
    event = viber.event("yes", poll="phone")
    viber.post(event)
    assert "counted" in only_text(viber.replies())
    telegram = tg(7171)
    telegram.share(BY_NUMBER.lstrip("+"))
    update = tap_update(7171, "phone:1")
    update["update_id"] = 4096 * 400_000 + event["message_token"] % 4096
    response = telegram.post(update)
    assert response.status_code == 200
    answer = response.get_json()
    replies = telegram.replies()
    assert "text" not in answer, f"the tap was told {answer.get('text')!r}"
    assert "already voted" in text_of(replies)


# --- 2. Crash / 500 paths and "nothing lost" --------------------------------------------------


class _HtmlBadGateway(http.server.BaseHTTPRequestHandler):
    """What a proxy in front of the Bot API answers during an incident: 502 with an HTML page."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        """502, text/html."""
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
        self.send_response(502)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet."""


@pytest.fixture
def bad_gateway() -> Iterator[str]:
    """A local HTTP server that answers every request with an HTML 502 (no JSON)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HtmlBadGateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_non_json_telegram_answer_is_a_retry_not_a_crashed_send_drain(
    tg, rt, config, redis: Redis, senders, bad_gateway: str
) -> None:
    """HIGH (finding 3): aiogram raises ClientDecodeError (an AiogramError, not a TelegramAPIError)
    when the Bot API's answer is not JSON, e.g. an HTML 502 from its front during an incident.
    TelegramSender.send() does not classify it, the future holds the exception, and
    `f.result()` in sender.drain raises: the drain job dies with every reply it had read still
    pending (other channels' too, sent or not; they go out again after STALE_MS), and each
    later drain that meets the reply dies the same way. It should be a RETRY like a 5xx."""
    chat = tg(5151)
    assert chat.post(message_update(5151, text="hello?")).status_code == 200
    assert redis.xlen(keys.OUTBOX_STREAM) == 1
    assert config.telegram is not None
    limiter = SendLimiter(rt.redis, config.voter_id_secret, global_per_s=1000)
    broken = TelegramSender(replace(config.telegram, api_url=bad_gateway), limiter, concurrency=4)
    try:
        outcomes = sender.drain(rt, {**senders, "telegram": broken}, "review")
    finally:
        broken.close()
    assert outcomes == {"retry": 1}
    assert redis.xpending(keys.OUTBOX_STREAM, keys.SEND_GROUP)["pending"] == 0
    assert redis.zcard(keys.OUTBOX_RETRY) == 1


def test_a_telegram_update_with_a_naive_iso_date_is_not_a_500(tg) -> None:
    """LOW (finding 4): aiogram's types accept an ISO date without an offset; for year 1 the
    webhook's `message.date.timestamp()` raises ValueError ("year 0 is out of range"), outside
    parse_update's try: a 500 (in tests, the exception itself). Needs the secret, so only a
    leaked secret or a broken Telegram could send it; the project's rule is still 4xx or 200."""
    chat = tg(5252)
    update = message_update(5252, text="hello")
    update["message"]["date"] = "0001-01-01T00:00:00"
    try:
        status = chat.post(update).status_code
    except ValueError as exc:  # TESTING propagates what would be a 500
        pytest.fail(f"a 500: {exc!r}")
    assert status in (200, 400)


def test_a_text_vote_telegram_redelivers_after_a_three_hour_outage_is_not_silently_dropped(
    tg, rt, redis: Redis
) -> None:
    """LOW (finding 5): Telegram keeps an undelivered update 24 h (the webhook remembers update ids
    25 h for that reason), but a message older than MAX_CALLBACK_AGE_S (2 h) is answered 200 and
    dropped with no reply and no vote: after an outage of Redis or the web over 2 h, every text
    vote and shared contact of that time is lost without the voter being told."""
    chat = tg(5353)
    update = message_update(5353, text="yes")
    update["message"]["date"] = int(time.time()) - 3 * 3600
    assert chat.post(update).status_code == 200
    assert redis.xlen(keys.VOTES_STREAM) + redis.xlen(keys.OUTBOX_STREAM) > 0, (
        "an update Telegram redelivered within its 24 h was acknowledged and nothing was queued"
    )


# --- 4. Operator side --------------------------------------------------------------------------


def test_a_scrapers_bearer_token_cannot_close_the_poll(client, redis: Redis, rt) -> None:
    """MEDIUM (finding 9): every account can do everything, and Bearer tokens are accepted on the
    dashboard's write routes. README tells operators to give Prometheus an account of its own;
    that token lives in the monitoring host's config, and with it anyone can close the national
    vote (or empty RQ's queues through rq-dashboard, or export every receipt). A scraper's
    account should be able to read, not to close a poll."""
    scraper = operator_token(redis, "prometheus")
    auth = {"Authorization": f"Bearer {scraper}"}
    assert client.get("/metrics", headers=auth).status_code == 200
    response = client.post("/dashboard/api/polls/main/status", json={"status": "closed"}, headers=auth)
    assert response.status_code in (401, 403), f"a scraper's token closed the poll ({response.status_code})"
    assert rt.ballot_box.status(rt.polls.get("main")) is PollStatus.OPEN


def test_a_burst_of_concurrent_wrong_logins_is_throttled_like_a_sequence(app: Flask, redis: Redis) -> None:
    """LOW (finding 6): throttle.check() only reads the window and failed() counts after scrypt,
    so requests that arrive together all pass the check before any failure is counted: a burst
    from one address gets far more than PER_CLIENT (10) tokens checked. (Tokens are 256 bits, so
    this does not make guessing practical; it makes the documented bound untrue.)"""
    operator_token(redis, "Alice")
    attempts = 30
    clients = []
    for _ in range(attempts):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = "198.51.100.9"
        clients.append((client, login_form_csrf(client)))
    barrier = threading.Barrier(attempts)
    statuses: list[int] = []
    lock = threading.Lock()

    def guess(n: int) -> None:
        client, csrf = clients[n]
        barrier.wait()
        status = client.post(
            "/dashboard/login", data={"name": "Alice", "token": f"guess-{n}", "csrf_token": csrf}
        ).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    checked = statuses.count(401)
    assert checked <= throttle.PER_CLIENT.amount, f"{checked} wrong tokens checked from one address at once"
