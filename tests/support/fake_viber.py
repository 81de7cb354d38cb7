"""A local fake of Viber's REST Bot API (https://chatapi.viber.com/pa)."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import json
import logging
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.log import access_logger, server_logger

API_PREFIX = "/pa"
MAX_BODY_BYTES = 30 * 1024  # Viber rejects request bodies over 30 KB.
AUTH_HEADER = "X-Viber-Auth-Token"
LISTEN_BACKLOG = 1024  # hundreds of clients may connect at once (the benchmark's senders)
STOP_GRACE_S = 0.1  # stop() lets requests in flight (already cut off) run this long, then cancels them
# aiohttp's errors (malformed requests, handler crashes) are logged only when the fake is verbose.
_QUIET_LOG = logging.getLogger("tests.support.fake_viber.quiet")
_QUIET_LOG.setLevel(logging.CRITICAL + 1)
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


class _StderrAccessLog(AbstractAccessLogger):
    """Access log lines on stderr, like http.server's, for a verbose fake."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, elapsed: float) -> None:
        """Write one line per answered request."""
        when = datetime.datetime.now().strftime("%d/%b/%Y %H:%M:%S")
        line = f"{request.method} {request.raw_path} HTTP/{request.version.major}.{request.version.minor}"
        sys.stderr.write(f'{request.remote} - - [{when}] "{line}" {response.status} -\n')


def _json_response(code: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    """JSON answer with a Content-Length, so the connection can be kept alive."""
    body = json.dumps(payload).encode()
    return web.Response(status=code, body=body, content_type="application/json", headers=headers)


class FakeViber:
    """A fake Viber Bot API server: aiohttp on its own event loop in a background thread."""

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
        self.host = host
        self.port = port
        self.latency_s = latency_s
        self.auth_token = auth_token
        self.verbose = verbose
        self.on_message = on_message  # called on the fake's event loop: keep it quick
        self.requests: list[RecordedRequest] = []
        self._sent: list[dict[str, Any]] = []
        self._faults: deque[Fault] = deque()
        self._cond = threading.Condition()
        self._tokens = itertools.count(5_000_000_000_000_000_001)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.ServerRunner | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle

    def start(self) -> None:
        """Bind the port and serve from an event loop in a daemon thread."""
        if self._loop is not None:
            raise RuntimeError("FakeViber already started")
        sock = socket.create_server((self.host, self.port), backlog=LISTEN_BACKLOG)
        self.port = int(sock.getsockname()[1])
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=self._run_loop, args=(loop,), name=f"fake-viber-{self.port}", daemon=True
        )
        thread.start()
        try:
            self._runner = asyncio.run_coroutine_threadsafe(self._serve(sock), loop).result(timeout=10)
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            sock.close()
            raise
        self._loop, self._thread = loop, thread

    def stop(self) -> None:
        """Stop serving, cut open keep-alive connections and close the socket."""
        loop, runner, thread = self._loop, self._runner, self._thread
        if loop is None:
            return
        try:
            if runner is not None:
                self._on_loop(self._shutdown(runner))
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(timeout=5)
            self._loop = self._runner = self._thread = None

    def __enter__(self) -> FakeViber:
        """Start and return the fake."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the fake."""
        self.stop()

    @property
    def url(self) -> str:
        """API base URL, e.g. http://127.0.0.1:PORT/pa."""
        if self._loop is None:
            raise RuntimeError("FakeViber not started")
        return f"http://{self.host}:{self.port}{API_PREFIX}"

    def close_all_connections(self) -> None:
        """Cut every open (keep-alive) connection, even mid-request; keep listening."""
        if self._runner is not None:
            self._on_loop(self._cut_connections(self._runner))

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
        fault = Fault(
            http_status=http_status,
            viber_status=viber_status,
            delay_s=delay_s,
            close=close,
            retry_after=retry_after,
        )
        with self._cond:
            self._faults.extend([fault] * n)

    @property
    def pending_faults(self) -> int:
        """Number of scripted faults not yet consumed."""
        with self._cond:
            return len(self._faults)

    # Inspection

    def sent_messages(self) -> list[dict[str, Any]]:
        """Bodies of /send_message calls answered HTTP 200 with status 0, in order."""
        with self._cond:
            return list(self._sent)

    def messages_to(self, receiver: str) -> list[dict[str, Any]]:
        """Successful messages whose receiver is the given user id."""
        return [m for m in self.sent_messages() if m.get("receiver") == receiver]

    def wait_for_messages(self, n: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        """Wait until at least n successful messages arrived and return them all."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._sent) >= n, timeout=timeout_s):
                raise AssertionError(
                    f"expected at least {n} sent message(s) within {timeout_s}s, "
                    f"got {len(self._sent)} ({len(self.requests)} request(s) in total)"
                )
            return list(self._sent)

    def clear(self) -> None:
        """Forget recorded requests, sent messages and pending faults."""
        with self._cond:
            self.requests.clear()
            self._sent.clear()
            self._faults.clear()

    # The event loop's thread

    def _on_loop(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a coroutine on the fake's loop and wait for it (from any other thread)."""
        loop = self._loop
        if loop is None or threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("FakeViber not started, or called from its own loop (e.g. on_message)")
        asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=10)

    def _run_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run the loop until stop(), then close it."""
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            # Requests still in flight past the stop grace (a long scripted delay) are cancelled.
            leftovers = asyncio.all_tasks(loop)
            for task in leftovers:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self, sock: socket.socket) -> web.ServerRunner:
        """Serve the bound socket with aiohttp's low-level server."""
        server = web.Server(
            self._handle,
            handler_cancellation=False,  # a client that gives up does not cancel the send
            logger=server_logger if self.verbose else _QUIET_LOG,
            access_log=access_logger if self.verbose else None,
            access_log_class=_StderrAccessLog,
        )
        runner = web.ServerRunner(server, shutdown_timeout=STOP_GRACE_S)
        await runner.setup()
        await web.SockSite(runner, sock, backlog=LISTEN_BACKLOG).start()
        return runner

    async def _shutdown(self, runner: web.ServerRunner) -> None:
        """Close the listening socket and every connection."""
        await self._cut_connections(runner)
        await runner.cleanup()

    async def _cut_connections(self, runner: web.ServerRunner) -> None:
        """Close every connection's transport; handlers still running finish unanswered."""
        if runner.server is not None:
            for connection in runner.server.connections:
                connection.force_close()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
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
        if outcome is None:
            # Scripted close=True: drop the connection without any answer.
            request.protocol.force_close()
            return web.Response()
        return _json_response(*outcome)

    def _record(self, request: RecordedRequest) -> None:
        """Append a request to the log."""
        with self._cond:
            self.requests.append(request)
            self._cond.notify_all()

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
            with self._cond:
                fault = self._faults.popleft() if self._faults else None
            delay = self.latency_s + (fault.delay_s if fault else 0.0)
            if delay > 0:
                await asyncio.sleep(delay)
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
    text = str(text).replace("\n", " ")
    if len(text) > 60:
        text = text[:60] + "…"
    return f"send_message -> {receiver}: {text}"


def main(argv: list[str] | None = None) -> int:
    """Run the fake in the foreground until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.fake_viber", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay per send_message")
    parser.add_argument("--auth-token", default=None, help="only accept this token")
    parser.add_argument("--verbose", action="store_true", help="log every HTTP request")
    args = parser.parse_args(argv)

    print_lock = threading.Lock()

    def show(message: dict[str, Any]) -> None:
        """Print a one-line summary of a message."""
        with print_lock:
            print(_summary(message), flush=True)

    fake = FakeViber(
        args.host,
        args.port,
        args.latency_ms / 1000.0,
        auth_token=args.auth_token,
        verbose=args.verbose,
        on_message=show,
    )
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        """Ask the main loop to stop."""
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    fake.start()
    try:
        with print_lock:
            print(f"VIBER_API_URL={fake.url}", flush=True)
        while not stopping.wait(0.5):
            pass
    finally:
        fake.stop()
    with print_lock:
        print(f"# stopped after {len(fake.sent_messages())} message(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
