"""Tests of the fake Telegram Bot API in tests.support.fake_telegram, over real HTTP and with aiogram."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    Update,
)
from pydantic import ValidationError

from tests.support.fake_telegram import FakeTelegram

TOKEN = "123456:TEST-token_0123456789"  # aiogram insists on <numeric bot id>:<secret>
CLI_START_TIMEOUT_S = 30.0
T = TypeVar("T")


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    """A running fake that only accepts TOKEN."""
    with FakeTelegram(token=TOKEN) as ft:
        yield ft


def post(
    ft: FakeTelegram,
    method: str,
    body: bytes | dict[str, Any] | None = None,
    *,
    token: str = TOKEN,
    content_type: str = "application/json",
    query: dict[str, str] | None = None,
    timeout_s: float = 5.0,
) -> tuple[int, dict[str, Any]]:
    """Call a method (a dict body is sent as JSON); return (HTTP status, decoded JSON), even on errors."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    url = f"{ft.url}/bot{token}/{method}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:  # an error answer is a response too: close its socket
            return exc.code, json.loads(exc.read())


def send(ft: FakeTelegram, chat_id: int | str = 42, text: str = "hello", **extra: Any) -> tuple[int, dict]:
    """sendMessage with a JSON body."""
    return post(ft, "sendMessage", {"chat_id": chat_id, "text": text, **extra})


def error(code: int, description: str) -> tuple[int, dict[str, Any]]:
    """The (status, body) of a Bot API error answer."""
    return code, {"ok": False, "error_code": code, "description": description}


def with_bot(ft: FakeTelegram, use: Callable[[Bot], Awaitable[T]], token: str = TOKEN) -> T:
    """Run use(bot) with an aiogram Bot pointed at the fake, and close its session."""

    async def run() -> T:
        """Open the bot, use it, close its HTTP session."""
        session = AiohttpSession(api=TelegramAPIServer.from_base(ft.url))
        async with Bot(token, session=session) as bot:
            return await use(bot)

    return asyncio.run(run())


INLINE = {
    "inline_keyboard": [[{"text": "Yes", "callback_data": "v:1"}, {"text": "No", "callback_data": "v:2"}]]
}


def test_send_message_is_answered_and_recorded(fake: FakeTelegram) -> None:
    """sendMessage answers a Message from the bot and is recorded with its headers and raw body."""
    code, answer = send(fake, 42, "hi", reply_markup=INLINE)
    assert code == 200 and answer["ok"] is True
    message = answer["result"]
    assert message["chat"] == {"id": 42, "type": "private"} and message["text"] == "hi"
    assert message["from"] == {
        "id": 123456,
        "is_bot": True,
        "first_name": "viber-vote test",
        "username": "viber_vote_test_bot",
    }
    assert message["reply_markup"] == INLINE and isinstance(message["date"], int)
    second = send(fake, "42", "again")[1]["result"]
    assert second["message_id"] > message["message_id"]
    assert "reply_markup" not in second
    assert [m["text"] for m in fake.wait_for_messages(2, timeout_s=1)] == ["hi", "again"]
    assert len(fake.messages_to(42)) == len(fake.messages_to("42")) == 2
    assert fake.messages_to(7) == [] and fake.calls("sendmessage") == fake.sent_messages()
    first = fake.requests[0]
    assert first.method == "sendMessage" and first.headers["content-type"] == "application/json"
    assert json.loads(first.raw) == first.params == {"chat_id": 42, "text": "hi", "reply_markup": INLINE}


def test_json_form_multipart_and_query_decode_alike(fake: FakeTelegram) -> None:
    """Every body Telegram takes gives the same parameters; a JSON-text reply_markup is decoded."""
    fields = {"chat_id": "5", "text": "é ok", "reply_markup": json.dumps(INLINE)}
    expected = {"chat_id": "5", "text": "é ok", "reply_markup": INLINE}
    form = urllib.parse.urlencode(fields).encode()
    assert post(fake, "sendMessage", form, content_type="application/x-www-form-urlencoded")[0] == 200
    boundary = "xYzZy"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    ]
    multipart = ("".join(parts) + f"--{boundary}--\r\n").encode()
    kind = f"multipart/form-data; boundary={boundary}"
    assert post(fake, "sendMessage", multipart, content_type=kind)[0] == 200
    assert post(fake, "sendMessage", query=fields)[0] == 200
    assert post(fake, "sendMessage", dict(fields))[0] == 200  # JSON with markup as a string
    assert fake.sent_messages() == [expected] * 4


def test_token_path_and_method_errors(fake: FakeTelegram) -> None:
    """A wrong or missing token is 401, an unknown method or path 404; names are case-insensitive."""
    assert post(fake, "sendMessage", {"chat_id": 1, "text": "x"}, token="1:wrong") == error(
        401, "Unauthorized"
    )
    assert post(fake, "sendMessage", {"chat_id": 1, "text": "x"}, token="") == error(401, "Unauthorized")
    assert post(fake, "sendPigeon", {}) == error(404, "Not Found")
    with urllib.request.urlopen(f"{fake.url}/bot{TOKEN}/GETME", timeout=5) as response:
        assert json.loads(response.read())["result"]["username"] == "viber_vote_test_bot"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{fake.url}/nope", timeout=5)
    assert caught.value.code == 404
    caught.value.close()
    assert fake.sent_messages() == []
    assert [r.method for r in fake.requests[:3]] == ["sendMessage", "sendMessage", "sendPigeon"]
    with FakeTelegram() as any_token:  # no token configured: any non-empty one is accepted
        assert post(any_token, "getMe", token="987:xyz")[1]["result"]["id"] == 987


def test_send_message_validation(fake: FakeTelegram) -> None:
    """Bad parameters get Telegram's 400s and send nothing; 4096 characters is still fine."""
    assert post(fake, "sendMessage", {"text": "x"}) == error(400, "Bad Request: chat_id is empty")
    assert send(fake, "@somebody") == error(400, "Bad Request: chat not found")
    assert send(fake, text="") == error(400, "Bad Request: message text is empty")
    assert send(fake, text="x" * 4097) == error(400, "Bad Request: message is too long")
    bad_markup = error(400, "Bad Request: can't parse reply_markup JSON object")
    assert send(fake, reply_markup="{not json") == bad_markup
    unknown = error(400, "Bad Request: can't parse reply keyboard markup JSON object")
    assert send(fake, reply_markup={"buttons": []}) == unknown
    long_data = {"inline_keyboard": [[{"text": "A", "callback_data": "d" * 65}]]}
    assert send(fake, reply_markup=long_data) == error(400, "Bad Request: BUTTON_DATA_INVALID")
    assert post(fake, "sendMessage", b"{", content_type="application/json") == error(
        400, "Bad Request: can't parse request body"
    )
    assert fake.sent_messages() == []
    assert send(fake, text="x" * 4096)[0] == 200


def test_webhook_methods(fake: FakeTelegram) -> None:
    """setWebhook stores its settings, getWebhookInfo shows them (not the secret), deleteWebhook forgets."""
    assert post(fake, "getWebhookInfo")[1]["result"] == {
        "url": "",
        "has_custom_certificate": False,
        "pending_update_count": 0,
    }
    settings = {
        "url": "https://vote.example/telegram",
        "secret_token": "s3cr-t_",
        "allowed_updates": ["message"],
    }
    assert post(fake, "setWebhook", settings | {"max_connections": 10}) == (
        200,
        {"ok": True, "result": True, "description": "Webhook was set"},
    )
    assert fake.webhook == settings | {"max_connections": 10}
    info = post(fake, "getWebhookInfo")[1]["result"]
    assert info["url"] == settings["url"] and info["max_connections"] == 10 and "secret_token" not in info
    assert info["allowed_updates"] == ["message"]
    assert post(fake, "setWebhook", {"url": "https://x", "secret_token": "no spaces"}) == error(
        400, "Bad Request: secret token contains unallowed characters"
    )
    assert post(fake, "setWebhook", {"url": "https://x", "max_connections": 101})[0] == 400
    assert fake.webhook["url"] == settings["url"]  # a refused call changes nothing
    assert post(fake, "deleteWebhook")[1]["description"] == "Webhook was deleted"
    assert post(fake, "deleteWebhook")[1]["description"] == "Webhook is already deleted"
    assert fake.webhook == {} and len(fake.calls("setWebhook")) == 1


def test_get_me_answer_callback_query_and_edit_markup(fake: FakeTelegram) -> None:
    """getMe, answerCallbackQuery and editMessageReplyMarkup answer like Telegram."""
    assert post(fake, "getMe")[1]["result"]["is_bot"] is True
    assert post(fake, "answerCallbackQuery", {"callback_query_id": "77", "text": "Counted"}) == (
        200,
        {"ok": True, "result": True},
    )
    assert post(fake, "answerCallbackQuery", {})[0] == 400
    assert fake.calls("answerCallbackQuery") == [{"callback_query_id": "77", "text": "Counted"}]
    message_id = send(fake, 9, "Vote?", reply_markup=INLINE)[1]["result"]["message_id"]
    target = {"chat_id": 9, "message_id": message_id}
    code, answer = post(fake, "editMessageReplyMarkup", target)
    assert code == 200 and "reply_markup" not in answer["result"] and answer["result"]["text"] == "Vote?"
    assert post(fake, "editMessageReplyMarkup", target)[1]["description"].startswith(
        "Bad Request: message is not modified"
    )
    assert post(fake, "editMessageReplyMarkup", target | {"reply_markup": INLINE})[1]["result"][
        "reply_markup"
    ]
    assert post(fake, "editMessageReplyMarkup", {"chat_id": 9, "message_id": 999}) == error(
        400, "Bad Request: message to edit not found"
    )
    assert post(fake, "editMessageReplyMarkup", {"inline_message_id": "abc"})[1]["result"] is True


def test_scripted_faults_answer_in_order(fake: FakeTelegram) -> None:
    """Faults are consumed by authorised sendMessage calls only, one each, in order."""
    fake.fail_next(1, http_status=429, retry_after=7)
    fake.fail_next(1, http_status=403)
    fake.fail_next(1, http_status=400)
    fake.fail_next(1)
    fake.fail_next(1, http_status=502, description="Bad Gateway: try later")
    assert post(fake, "getMe")[0] == 200 and post(fake, "sendMessage", {}, token="1:x")[0] == 401
    assert fake.pending_faults == 5
    assert send(fake) == (
        429,
        {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 7",
            "parameters": {"retry_after": 7},
        },
    )
    assert send(fake) == error(403, "Forbidden: bot was blocked by the user")
    assert send(fake) == error(400, "Bad Request: chat not found")
    assert send(fake) == error(500, "Internal Server Error")
    assert send(fake) == error(502, "Bad Gateway: try later")
    assert fake.pending_faults == 0 and fake.sent_messages() == []
    assert send(fake)[0] == 200 and len(fake.sent_messages()) == 1
    fake.fail_next(1, http_status=429)
    assert send(fake)[1]["parameters"] == {"retry_after": 1}


def test_delay_outlasts_the_client_and_close_drops_the_connection(fake: FakeTelegram) -> None:
    """A long scripted delay times the client out (stop() does not wait for it); close=True hangs up."""
    fake.fail_next(1, close=True)
    with pytest.raises((urllib.error.URLError, http.client.RemoteDisconnected, ConnectionError)):
        send(fake)
    assert fake.sent_messages() == [] and send(fake)[0] == 200
    fake.fail_next(1, http_status=200, delay_s=600)
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        post(fake, "sendMessage", {"chat_id": 1, "text": "late"}, timeout_s=0.3)
    assert len(fake.requests) == 3 and len(fake.sent_messages()) == 1
    fake.stop()  # cancels the delayed answer instead of waiting 600 s


def test_rate_limit_emulation_with_a_pinned_clock() -> None:
    """With limits on, a second message to a chat within 1 s, or past global_per_s, is a 429."""
    now = [1000.0]
    with FakeTelegram(token=TOKEN, enforce_limits=True, global_per_s=3) as ft:
        ft.clock = lambda: now[0]
        assert send(ft, 1)[0] == 200
        assert send(ft, 1) == (
            429,
            {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 1",
                "parameters": {"retry_after": 1},
            },
        )
        assert send(ft, 2)[0] == send(ft, 3)[0] == 200
        assert send(ft, 4)[0] == 429  # the fourth message within the second, over global_per_s=3
        now[0] += 1.0
        assert send(ft, 1)[0] == send(ft, 4)[0] == 200
        assert ft.limited == 2 and [m["chat_id"] for m in ft.sent_messages()] == [1, 2, 3, 1, 4]
        ft.enforce_limits = False
        assert send(ft, 1)[0] == send(ft, 1)[0] == 200


def test_wait_for_messages_explains_a_timeout(fake: FakeTelegram) -> None:
    """wait_for_messages raises an AssertionError saying what arrived."""
    fake.fail_next(1, http_status=403)
    send(fake)
    with pytest.raises(AssertionError, match=r"at least 1 sendMessage call\(s\) .* got 0 \(1 request"):
        fake.wait_for_messages(1, timeout_s=0)
    send(fake)
    assert len(fake.wait_for_messages(1, timeout_s=0)) == 1


def test_clear_close_all_connections_stop_and_restart_on_the_same_port(fake: FakeTelegram) -> None:
    """clear() forgets records; open connections can be cut; the fake restarts on its port."""
    fake.fail_next(3)
    send(fake)
    fake.clear()
    assert fake.requests == [] and fake.sent_messages() == [] and fake.pending_faults == 0
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    conn.request("POST", f"/bot{TOKEN}/getMe")
    assert json.loads(conn.getresponse().read())["ok"] is True
    fake.close_all_connections()
    assert conn.sock is not None and conn.sock.recv(1) == b""  # the server closed it
    conn.close()
    port = fake.port
    fake.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    fake.start()
    assert fake.port == port and send(fake)[0] == 200


def test_cli_prints_its_url_and_each_message() -> None:
    """python -m tests.support.fake_telegram prints TELEGRAM_API_URL, then one line per message."""
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "tests.support.fake_telegram", "--token", TOKEN]
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, text=True, env=env) as process:
        try:
            assert process.stdout is not None
            first = process.stdout.readline().strip()
            assert first.startswith("TELEGRAM_API_URL=http://127.0.0.1:")
            base = first.split("=", 1)[1]
            keyboard = {"keyboard": [[{"text": "Share my number", "request_contact": True}]]}
            body = json.dumps({"chat_id": 42, "text": "Hi\nthere", "reply_markup": keyboard}).encode()
            request = urllib.request.Request(
                f"{base}/bot{TOKEN}/sendMessage", data=body, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=CLI_START_TIMEOUT_S) as response:
                assert json.loads(response.read())["ok"] is True
            assert process.stdout.readline().strip() == "sendMessage -> 42: Hi there [Share my number]"
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=CLI_START_TIMEOUT_S)
    assert process.returncode == 0


def test_aiogram_calls_work_against_the_fake(fake: FakeTelegram) -> None:
    """aiogram's real client: keyboards, callback answers and webhook calls round-trip."""
    inline = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Yes", callback_data="v:1")]],
    )
    contact = ReplyKeyboardMarkup(
        keyboard=[[KeyboardButton(text="Share my number", request_contact=True)]],
        resize_keyboard=True,
        one_time_keyboard=True,
    )

    async def use(bot: Bot) -> dict[str, Any]:
        """Make every call the channel needs; return what came back."""
        first = await bot.send_message(7000000001, "Vote?", reply_markup=inline)
        second = await bot.send_message(7000000001, "Your number?", reply_markup=contact)
        edited = await bot.edit_message_reply_markup(chat_id=7000000001, message_id=first.message_id)
        return {
            "first": first,
            "second": second,
            "edited": edited,
            "answered": await bot.answer_callback_query("cbq-1", text="Counted"),
            "webhook_set": await bot.set_webhook(
                "https://vote.example/telegram", secret_token="s3cret", allowed_updates=["message"]
            ),
            "info": await bot.get_webhook_info(),
            "me": await bot.get_me(),
            "deleted": await bot.delete_webhook(drop_pending_updates=True),
        }

    got = with_bot(fake, use)
    first, second = got["first"], got["second"]
    assert first.chat.id == 7000000001 and second.message_id > first.message_id
    # A Message carries an inline keyboard back, never a reply keyboard.
    assert first.reply_markup is not None and second.reply_markup is None
    assert first.reply_markup.inline_keyboard[0][0].callback_data == "v:1"
    assert got["edited"].reply_markup is None
    assert got["answered"] is True and got["webhook_set"] is True and got["deleted"] is True
    assert got["info"].url == "https://vote.example/telegram" and got["info"].allowed_updates == ["message"]
    assert got["me"].username == "viber_vote_test_bot" and got["me"].id == 123456
    # What aiogram really sends: a urlencoded form, numbers as text, keyboards as JSON text.
    sent = [r for r in fake.requests if r.method == "sendMessage"]
    assert {r.headers["Content-Type"] for r in sent} == {"application/x-www-form-urlencoded"}
    assert b"reply_markup=%7B" in sent[0].raw
    first_params, second_params = fake.sent_messages()
    assert first_params["chat_id"] == "7000000001"
    assert first_params["reply_markup"] == {"inline_keyboard": [[{"text": "Yes", "callback_data": "v:1"}]]}
    assert second_params["reply_markup"]["keyboard"] == [
        [{"text": "Share my number", "request_contact": True}]
    ]
    assert fake.calls("answerCallbackQuery") == [{"callback_query_id": "cbq-1", "text": "Counted"}]
    assert fake.calls("setWebhook")[0]["secret_token"] == "s3cret"
    assert fake.calls("deleteWebhook") == [{"drop_pending_updates": "true"}]


def test_aiogram_raises_the_matching_errors(fake: FakeTelegram) -> None:
    """Scripted 429, 403, 400 and 500 and a wrong token surface as aiogram's exceptions."""
    for status in (429, 403, 400, 500):
        fake.fail_next(1, http_status=status, retry_after=3 if status == 429 else None)

    async def use(bot: Bot) -> list[BaseException]:
        """Send until every fault has been answered; collect the exceptions."""
        raised = []
        for _ in range(4):
            try:
                await bot.send_message(42, "hi")
            except Exception as exc:  # noqa: BLE001 - the exception types are what is checked
                raised.append(exc)
        return raised

    retry, forbidden, bad, server = with_bot(fake, use)
    assert isinstance(retry, TelegramRetryAfter) and retry.retry_after == 3
    assert isinstance(forbidden, TelegramForbiddenError) and "blocked by the user" in forbidden.message
    assert isinstance(bad, TelegramBadRequest) and bad.message == "Bad Request: chat not found"
    assert isinstance(server, TelegramServerError)

    async def get_me(bot: Bot) -> Any:
        """One call with a token the fake refuses."""
        return await bot.get_me()

    with pytest.raises(TelegramUnauthorizedError):
        with_bot(fake, get_me, token="654321:wrong")


def test_aiogram_parses_the_update_shapes_a_vote_bot_receives() -> None:
    """Update.model_validate takes telegram-api.md's shapes, but a callback_query needs chat_instance."""
    user = {"id": 7000000001, "is_bot": False, "first_name": "Ann", "language_code": "en"}
    chat = {"id": 7000000001, "type": "private"}
    message = {"message_id": 5, "from": user, "chat": chat, "date": 1_700_000_000}
    start = Update.model_validate({"update_id": 1, "message": message | {"text": "/start poll_1"}})
    assert start.message is not None and start.message.from_user is not None
    assert start.message.from_user.id == 7000000001 and start.message.text == "/start poll_1"
    card = {"phone_number": "375291234567", "first_name": "Ann", "user_id": 7000000001}
    shared = Update.model_validate({"update_id": 2, "message": message | {"contact": card}})
    assert shared.message is not None and shared.message.contact is not None
    assert shared.message.contact.user_id == 7000000001
    tap = {"id": "99", "from": user, "message": message | {"text": "Vote?"}, "data": "v:1"}
    with pytest.raises(ValidationError, match="chat_instance"):
        Update.model_validate({"update_id": 3, "callback_query": tap})  # the doc's shape lacks it
    parsed = Update.model_validate({"update_id": 3, "callback_query": tap | {"chat_instance": "-42"}})
    assert parsed.callback_query is not None and parsed.callback_query.data == "v:1"
    blocked = {
        "chat": chat,
        "from": user,
        "date": 1_700_000_000,
        "old_chat_member": {"status": "member", "user": user},
        "new_chat_member": {"status": "kicked", "user": user, "until_date": 0},
    }
    member = Update.model_validate({"update_id": 4, "my_chat_member": blocked})
    assert member.my_chat_member is not None and member.my_chat_member.new_chat_member.status == "kicked"
