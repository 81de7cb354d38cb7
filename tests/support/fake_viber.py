"""A local fake of Viber's REST Bot API (https://chatapi.viber.com/pa)."""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from tests.support.fake_api import (
    DEFAULT_TIMEOUT_S,
    FakeApi,
    cli_parser,
    one_line,
    serve_in_foreground,
)
from tests.support.loop_server import drop_connection, json_response

API_PREFIX = "/pa"
MAX_BODY_BYTES = 30 * 1024  # Viber rejects request bodies over 30 KB.
AUTH_HEADER = "X-Viber-Auth-Token"
DEFAULT_EVENT_TYPES = [
    "delivered",
    "seen",
    "failed",
    "subscribed",
    "unsubscribed",
    "conversation_started",
]
VIBER_STATUS_MESSAGES = {
    0: "ok",
    1: "invalidUrl",
    2: "invalidAuthToken",
    3: "badData",
    4: "missingData",
    5: "receiverNotRegistered",
    6: "receiverNotSubscribed",
    7: "publicAccountBlocked",
    8: "publicAccountNotFound",
    9: "publicAccountSuspended",
    10: "webhookNotSet",
    11: "receiverNoSuitableDevice",
    12: "tooManyRequests",
    13: "apiVersionNotSupported",
    14: "incompatibleWithVersion",
    15: "publicAccountNotAuthorized",
    16: "inchatReplyPublicAccountLimit",
    17: "publicAccountIsNotPublished",
    18: "publicAccountIsNotInline",
    19: "noBalance",
    20: "noBalanceAndAdvertising",
    21: "resourcesNotFound",
    22: "apiQuotaExceeded",
    23: "invalidBotAccountId",
    24: "invalidAccountStatus",
}


class Headers(dict[str, str]):
    """A dict of HTTP headers with lower-case keys and case-insensitive lookups."""

    def __init__(self, items: Any = ()) -> None:
        """Build from (name, value) pairs or a mapping."""
        pairs = items.items() if hasattr(items, "items") else items
        super().__init__((str(k).lower(), str(v)) for k, v in pairs)

    def __getitem__(self, key: str) -> str:
        """Look a header up whatever its case."""
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        """Tell whether a header is present whatever its case."""
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        """Look a header up whatever its case, with a default."""
        return super().get(key.lower(), default)


@dataclass(frozen=True)
class RecordedRequest:
    """One received request; path is relative to the API base, e.g. /send_message."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    raw: bytes
    received_at: float


@dataclass(frozen=True)
class Fault:
    """One scripted answer to a /send_message request."""

    http_status: int = 500
    viber_status: int | None = None
    delay_s: float = 0.0
    close: bool = False
    retry_after: str | None = None
    """A Retry-After header to send with a failed answer (delay-seconds or an HTTP date)."""


class FakeViber(FakeApi[RecordedRequest, Fault]):
    """A fake Viber Bot API server: aiohttp on its own event loop in a background thread."""

    URL_PATH = API_PREFIX

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_s: float = 0.0,
        *,
        auth_token: str | None = None,
        verbose: bool = False,
        on_message: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """Configure the fake; it listens only after start()."""
        super().__init__(host, port, latency_s, verbose=verbose, on_message=on_message)
        self.auth_token = auth_token
        self._sent: list[dict[str, Any]] = []
        self._tokens = itertools.count(5_000_000_000_000_000_001)

    # Scripting

    def fail_next(
        self,
        n: int,
        *,
        http_status: int = 500,
        viber_status: int | None = None,
        delay_s: float = 0.0,
        close: bool = False,
        retry_after: str | None = None,
    ) -> None:
        """Queue n faults, consumed one per /send_message request in arrival order."""
        self._script(Fault(http_status, viber_status, delay_s, close, retry_after), n)

    # Inspection

    def sent_messages(self) -> list[dict[str, Any]]:
        """Bodies of /send_message calls answered HTTP 200 with status 0, in order."""
        with self._cond:
            return list(self._sent)

    def messages_to(self, receiver: str) -> list[dict[str, Any]]:
        """Successful messages whose receiver is the given user id."""
        return [m for m in self.sent_messages() if m.get("receiver") == receiver]

    def wait_for_messages(self, n: int, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[dict[str, Any]]:
        """Wait until at least n successful messages arrived and return them all."""
        with self._cond:
            self._wait_for(lambda: len(self._sent), n, timeout_s, "sent message(s)")
            return list(self._sent)

    def clear(self) -> None:
        """Forget recorded requests, sent messages and pending faults."""
        with self._cond:
            super().clear()
            self._sent.clear()

    # Serving (on the fake's event loop)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Record a request and answer it like chatapi.viber.com/pa would."""
        if request.method not in ("GET", "POST"):
            response = web.Response(status=501, text=f"Unsupported method ({request.method!r})")
            response.force_close()
            return response
        raw = await request.content.read()
        url_path = urlsplit(request.raw_path).path
        if url_path == API_PREFIX or url_path.startswith(API_PREFIX + "/"):
            path = url_path[len(API_PREFIX) :] or "/"
        else:
            path = url_path
        body: dict[str, Any] | None = None
        try:
            parsed = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            parsed = None
        if isinstance(parsed, dict):
            body = parsed
        recorded = RecordedRequest(
            path=path,
            headers=Headers(request.headers.items()),
            body=body,
            raw=raw,
            received_at=time.time(),
        )
        self._record(recorded)
        outcome = await self._answer(recorded, url_path.startswith(API_PREFIX + "/"))
        if outcome is None:  # scripted close=True
            return drop_connection(request)
        return json_response(*outcome)

    async def _answer(
        self, request: RecordedRequest, under_api: bool
    ) -> tuple[int, dict[str, Any]] | tuple[int, dict[str, Any], dict[str, str]] | None:
        """Decide the answer: (HTTP code, JSON[, headers]), or None to drop the connection."""
        path = request.path
        if not under_api or path not in (
            "/send_message",
            "/set_webhook",
            "/get_account_info",
        ):
            return 404, {"status": 8, "status_message": "notFound"}
        if path == "/send_message":
            fault = await self._wait_out(scripted=True)
            if fault is not None:
                if fault.close:
                    return None
                if fault.viber_status is not None:
                    return 200, _status(fault.viber_status)
                if fault.http_status != 200:
                    failure = {"status": 1, "status_message": "fake failure"}
                    if fault.retry_after is not None:
                        return fault.http_status, failure, {"Retry-After": fault.retry_after}
                    return fault.http_status, failure
        rejection = self._validate(request)
        if rejection is not None:
            return 200, rejection
        body = request.body or {}
        if path == "/send_message":
            with self._cond:
                token = next(self._tokens)
                self._sent.append(body)
                self._cond.notify_all()
            if self.on_message is not None:
                self.on_message(body)
            return 200, {
                "status": 0,
                "status_message": "ok",
                "message_token": token,
                "chat_hostname": "fake",
            }
        if path == "/set_webhook":
            event_types = body.get("event_types", DEFAULT_EVENT_TYPES)
            return 200, {
                "status": 0,
                "status_message": "ok",
                "event_types": event_types,
            }
        return 200, {
            "status": 0,
            "status_message": "ok",
            "id": "fake-bot",
            "name": "viber-vote",
        }

    def _validate(self, request: RecordedRequest) -> dict[str, Any] | None:
        """Viber's error for a bad token or an oversized/non-JSON body, else None."""
        token = request.headers.get(AUTH_HEADER)
        if token is None or (self.auth_token is not None and token != self.auth_token):
            return _status(2)
        if len(request.raw) > MAX_BODY_BYTES:
            return _status(3)
        if request.body is None and request.raw.strip():
            return _status(3)
        if request.path in ("/send_message", "/set_webhook") and request.body is None:
            return _status(3)
        return None


def _status(code: int) -> dict[str, Any]:
    """Build a Viber status answer."""
    return {"status": code, "status_message": VIBER_STATUS_MESSAGES.get(code, "error")}


def _summary(message: dict[str, Any]) -> str:
    """One line describing a sent message."""
    receiver = str(message.get("receiver", "?"))[:6]
    text = message.get("text")
    if text is None:
        text = f"<{message.get('type', '?')}>"
    return f"send_message -> {receiver}: {one_line(text)}"


def main(argv: list[str] | None = None) -> int:
    """Run the fake in the foreground until SIGINT or SIGTERM."""
    parser = cli_parser("python -m tests.support.fake_viber", __doc__, "delay per send_message")
    parser.add_argument("--auth-token", default=None, help="only accept this token")
    args = parser.parse_args(argv)
    latency_s = args.latency_ms / 1000.0
    fake = FakeViber(args.host, args.port, latency_s, auth_token=args.auth_token, verbose=args.verbose)
    return serve_in_foreground(fake, "VIBER_API_URL", _summary)


if __name__ == "__main__":
    sys.exit(main())
