"""A local fake of the Telegram Bot API (https://api.telegram.org/bot<TOKEN>/<method>).

Point the code under test at it with TELEGRAM_API_URL = fake.url; the wire format it accepts
(and what aiogram really sends: form data, not JSON) is described in telegram_wire.py.
"""

from __future__ import annotations

import itertools
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from multidict import CIMultiDict

from tests.support import telegram_wire as wire
from tests.support.fake_api import (
    DEFAULT_TIMEOUT_S,
    FakeApi,
    cli_parser,
    one_line,
    serve_in_foreground,
)
from tests.support.loop_server import drop_connection, json_response

RATE_WINDOW_S = 1.0  # Telegram's limits are per second
LIMIT_RETRY_AFTER_S = 1  # what the emulated limits (and a 429 fault without retry_after) ask to wait
_PATH_RE = re.compile(r"/bot([^/]*)/([^/]+)/?")
_FAULT_DESCRIPTIONS = {
    400: "Bad Request: chat not found",
    403: "Forbidden: bot was blocked by the user",
    500: "Internal Server Error",
    502: "Bad Gateway",
}


@dataclass(frozen=True)
class TelegramRequest:
    """One received request; method is the canonical name, e.g. sendMessage."""

    method: str
    params: dict[str, Any]
    raw: bytes
    headers: Mapping[str, str]
    received_at: float


@dataclass(frozen=True)
class Fault:
    """One scripted answer to a sendMessage call (http_status 200: only the delay)."""

    http_status: int = 500
    description: str | None = None
    retry_after: int | None = None
    delay_s: float = 0.0
    close: bool = False

    def error(self) -> wire.ApiError:
        """The error answer this fault gives."""
        retry_after = self.retry_after
        if retry_after is None and self.http_status == 429:
            retry_after = LIMIT_RETRY_AFTER_S
        default = _FAULT_DESCRIPTIONS.get(self.http_status, f"Error {self.http_status}")
        if self.http_status == 429:
            default = f"Too Many Requests: retry after {retry_after}"
        return wire.ApiError(self.http_status, self.description or default, retry_after)


class FakeTelegram(FakeApi[TelegramRequest, Fault]):
    """A fake Telegram Bot API server: aiohttp on its own event loop in a background thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_s: float = 0.0,
        *,
        token: str | None = None,
        verbose: bool = False,
        on_message: Callable[[dict[str, Any]], None] | None = None,
        enforce_limits: bool = False,
        per_chat_per_s: int = 1,
        global_per_s: int = 30,
    ) -> None:
        """Configure the fake (token None: any non-empty token); it listens only after start()."""
        super().__init__(host, port, latency_s, verbose=verbose, on_message=on_message)
        self.token = token
        self.enforce_limits = enforce_limits
        self.per_chat_per_s = per_chat_per_s
        self.global_per_s = global_per_s
        self.clock: Callable[[], float] = time.monotonic  # settable: tests pin it to test the limits
        self._answered: list[tuple[str, dict[str, Any]]] = []
        self._limited = 0
        self._chat_windows: dict[int, deque[float]] = {}
        self._global_window: deque[float] = deque()
        self._message_ids = itertools.count(1)
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}  # (chat, message_id) -> Message
        self._webhook: dict[str, Any] = {}
        self._methods: dict[str, Callable[[str, dict[str, Any]], dict[str, Any]]] = {
            "sendMessage": self._send_message,
            "answerCallbackQuery": self._answer_callback_query,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "getMe": lambda token, params: wire.ok(wire.bot_user(token)),
            "editMessageReplyMarkup": self._edit_message_reply_markup,
        }
        # Telegram's method names are case-insensitive.
        self._canonical = {name.lower(): name for name in self._methods}

    # Scripting

    def fail_next(
        self,
        n: int,
        *,
        http_status: int = 500,
        description: str | None = None,
        retry_after: int | None = None,
        delay_s: float = 0.0,
        close: bool = False,
    ) -> None:
        """Queue n faults, consumed one per authorised sendMessage call in arrival order."""
        self._script(Fault(http_status, description, retry_after, delay_s, close), n)

    # Inspection

    def calls(self, method: str) -> list[dict[str, Any]]:
        """Parameters of the calls of one method answered ok, in order."""
        name = self._canonical.get(method.lower(), method)
        with self._cond:
            return [params for called, params in self._answered if called == name]

    def sent_messages(self) -> list[dict[str, Any]]:
        """Parameters of the sendMessage calls answered ok, in order."""
        return self.calls("sendMessage")

    def messages_to(self, chat_id: int | str) -> list[dict[str, Any]]:
        """Sent messages to one chat (ids compared as strings: form bodies send "123")."""
        return [m for m in self.sent_messages() if str(m.get("chat_id")) == str(chat_id)]

    def wait_for_calls(
        self, method: str, n: int, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> list[dict[str, Any]]:
        """Wait until at least n calls of a method were answered ok and return them all."""
        name = self._canonical.get(method.lower(), method)
        with self._cond:
            self._wait_for(lambda: len(self.calls(name)), n, timeout_s, f"{name} call(s) answered ok")
            return self.calls(name)

    def wait_for_messages(self, n: int, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[dict[str, Any]]:
        """Wait until at least n messages were sent and return them all."""
        return self.wait_for_calls("sendMessage", n, timeout_s)

    def _progress(self) -> str:
        """What a failed wait reports: requests, rate-limited answers and pending faults."""
        return f"{super()._progress()}, {self._limited} rate-limited, {len(self._faults)} fault(s) pending"

    @property
    def limited(self) -> int:
        """How many 429s the rate-limit emulation gave (scripted faults not counted)."""
        with self._cond:
            return self._limited

    @property
    def webhook(self) -> dict[str, Any]:
        """The webhook settings last set (url, secret_token, max_connections, allowed_updates)."""
        with self._cond:
            return dict(self._webhook)

    def clear(self) -> None:
        """Forget requests, answered calls, faults and limit windows; keep webhook and messages."""
        with self._cond:
            super().clear()
            self._answered.clear()
            self._limited = 0
            self._chat_windows.clear()
            self._global_window.clear()

    # Serving (on the fake's event loop)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Record a request and answer it like api.telegram.org would."""
        if request.method not in ("GET", "POST"):
            return json_response(405, wire.ApiError(405, "Method Not Allowed").payload())
        raw = await request.content.read()
        match = _PATH_RE.fullmatch(urlsplit(request.raw_path).path)
        token, name = match.groups() if match else ("", "")
        method = self._canonical.get(name.lower(), name)
        params: dict[str, Any] = {}
        decode_error: wire.ApiError | None = None
        try:
            params = wire.decode_params(request, raw)
        except wire.ApiError as exc:
            decode_error = exc
        except ValueError:  # bad JSON or a body that is not UTF-8
            decode_error = wire.bad_request("can't parse request body")
        self._record(TelegramRequest(method, params, raw, CIMultiDict(request.headers), time.time()))
        try:
            if match is None:
                raise wire.ApiError(404, "Not Found")
            answer = await self._call(token, method, params, decode_error)
        except wire.ApiError as exc:
            return json_response(exc.code, exc.payload())
        if answer is None:
            return drop_connection(request)
        with self._cond:
            self._answered.append((method, params))
            self._cond.notify_all()
        if method == "sendMessage" and self.on_message is not None:
            self.on_message(params)
        return json_response(200, answer)

    async def _call(
        self, token: str, method: str, params: dict[str, Any], decode_error: wire.ApiError | None
    ) -> dict[str, Any] | None:
        """The ok answer of one call, or None to drop the connection; raises ApiError."""
        if not token or (self.token is not None and token != self.token):
            raise wire.ApiError(401, "Unauthorized")
        handler = self._methods.get(method)
        if handler is None:
            raise wire.ApiError(404, "Not Found")
        if decode_error is not None:
            raise decode_error
        # Every authorised call waits out the latency; only sendMessage takes a scripted fault.
        fault = await self._wait_out(scripted=method == "sendMessage")
        if fault is not None and fault.close:
            return None
        if fault is not None and fault.http_status != 200:
            raise fault.error()
        return handler(token, params)

    def _send_message(self, token: str, params: dict[str, Any]) -> dict[str, Any]:
        """sendMessage: validate, apply the limits, answer the new Message."""
        chat_id, text = wire.chat_id_param(params), wire.message_text(params)
        markup = params.get("reply_markup")
        wire.check_markup(markup)
        self._check_limits(chat_id)
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "from": wire.bot_user(token),
            "chat": {"id": chat_id, "type": "private"},
            "date": int(time.time()),
            "text": text,
        }
        # A Message carries only an inline keyboard (aiogram rejects any other kind there).
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        with self._cond:
            self._messages[(chat_id, message["message_id"])] = message
        return wire.ok(message)

    def _check_limits(self, chat_id: int) -> None:
        """When enforced, 429 past per_chat_per_s to one chat or global_per_s in total."""
        if not self.enforce_limits:
            return
        now = self.clock()
        with self._cond:
            chat_window = self._chat_windows.setdefault(chat_id, deque())
            for window in (chat_window, self._global_window):
                while window and window[0] <= now - RATE_WINDOW_S:
                    window.popleft()
            if len(chat_window) >= self.per_chat_per_s or len(self._global_window) >= self.global_per_s:
                self._limited += 1
                raise wire.too_many_requests(LIMIT_RETRY_AFTER_S)
            chat_window.append(now)
            self._global_window.append(now)

    def _answer_callback_query(self, token: str, params: dict[str, Any]) -> dict[str, Any]:
        """answerCallbackQuery: needs callback_query_id."""
        if not params.get("callback_query_id"):
            raise wire.bad_request("QUERY_ID_INVALID")
        return wire.ok(True)

    def _set_webhook(self, token: str, params: dict[str, Any]) -> dict[str, Any]:
        """setWebhook: store the settings."""
        settings = wire.webhook_settings(params)
        with self._cond:
            self._webhook = settings
        return wire.ok(True, "Webhook was set" if settings else "Webhook was deleted")

    def _delete_webhook(self, token: str, params: dict[str, Any]) -> dict[str, Any]:
        """deleteWebhook: forget the webhook."""
        with self._cond:
            had_webhook, self._webhook = bool(self._webhook), {}
        return wire.ok(True, "Webhook was deleted" if had_webhook else "Webhook is already deleted")

    def _get_webhook_info(self, token: str, params: dict[str, Any]) -> dict[str, Any]:
        """getWebhookInfo: the stored url etc. (never the secret token, as on Telegram)."""
        webhook = self.webhook
        info: dict[str, Any] = {"url": webhook.get("url", ""), "has_custom_certificate": False}
        info["pending_update_count"] = 0
        if webhook:
            info["max_connections"] = webhook["max_connections"]
            if webhook["allowed_updates"] is not None:
                info["allowed_updates"] = webhook["allowed_updates"]
        return wire.ok(info)

    def _edit_message_reply_markup(self, token: str, params: dict[str, Any]) -> dict[str, Any]:
        """editMessageReplyMarkup: true for an inline message, else the edited Message."""
        markup = params.get("reply_markup")
        wire.check_markup(markup, inline_only=True)
        if params.get("inline_message_id"):
            return wire.ok(True)
        chat_id, message_id = wire.chat_id_param(params), wire.int_param(params, "message_id", None)
        if message_id is None:
            raise wire.bad_request("message identifier is not specified")
        key = (chat_id, message_id)
        with self._cond:
            message = self._messages.get(key)
            if message is None:
                raise wire.bad_request("message to edit not found")
            if message.get("reply_markup") == (markup or None):
                raise wire.bad_request(wire.NOT_MODIFIED)  # Telegram refuses an edit that changes nothing
            message = {k: v for k, v in message.items() if k != "reply_markup"}
            message |= {"reply_markup": markup} if markup else {}
            self._messages[key] = message
        return wire.ok(message)


def _summary(params: dict[str, Any]) -> str:
    """One line describing a sent message and its buttons."""
    text = one_line(params.get("text", ""))
    markup = params.get("reply_markup") if isinstance(params.get("reply_markup"), dict) else {}
    rows = markup.get("inline_keyboard") or markup.get("keyboard") or []
    labels = [str(b.get("text", "?")) for b in itertools.chain.from_iterable(rows) if isinstance(b, dict)]
    buttons = f" [{' | '.join(labels)}]" if labels else ""
    return f"sendMessage -> {params.get('chat_id')}: {text}{buttons}"


def main(argv: list[str] | None = None) -> int:
    """Run the fake in the foreground until SIGINT or SIGTERM."""
    parser = cli_parser("python -m tests.support.fake_telegram", __doc__, "delay per call")
    parser.add_argument("--token", default=None, help="only accept this bot token")
    parser.add_argument("--enforce-limits", action="store_true", help="answer 429 past Telegram's rates")
    args = parser.parse_args(argv)
    fake = FakeTelegram(
        args.host,
        args.port,
        args.latency_ms / 1000.0,
        token=args.token,
        verbose=args.verbose,
        enforce_limits=args.enforce_limits,
    )
    return serve_in_foreground(fake, "TELEGRAM_API_URL", _summary)


if __name__ == "__main__":
    sys.exit(main())
