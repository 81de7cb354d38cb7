"""Viber's REST Bot API over a pooled HTTP client with timeouts and retries.

viberbot's own sender has no timeout, no session and logs the auth token; this replaces it.
ViberClient (urllib3, blocking) serves the CLI; AsyncViberClient (aiohttp) serves the sender's event loop.
Both classify answers with classify() and retry alike (the async one heeds a Retry-After of RETRY_AFTER_MAX_S
at most, leaving longer waits to the outbox).
"""

from __future__ import annotations

import asyncio
import json
import logging
from types import TracebackType
from typing import Any

import aiohttp
import urllib3
from urllib3.exceptions import HTTPError, InvalidHeader, MaxRetryError
from urllib3.util import Retry, Timeout

from webhook.core.errors import ViberApiError
from webhook.core.outbox import SendResult, SendStatus

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 10.0
QUICK_RETRIES = 2
"""Retries inside one send (connection errors, 429 and 5xx), before the outbox's own backoff."""
QUICK_BACKOFF_S = 0.2
"""Wait before the second quick retry (seconds; the first is at once), doubling after, as urllib3 does."""
QUICK_BACKOFF_MAX_S = 2.0
RETRY_AFTER_MAX_S = 10.0
"""A longer Retry-After (seconds) ends the async client's quick retries: the outbox's backoff takes over,
and a send stays well within the sender's STALE_MS."""
CLOSE_TIMEOUT_S = 5.0
RETRYABLE_HTTP = (429, 500, 502, 503, 504)
VIBER_OK = 0
VIBER_TOO_MANY_REQUESTS = 12
VIBER_RECEIVER_GONE = (5, 6)
"""receiverNotRegistered, receiverNotSubscribed: sending again cannot help."""
WEBHOOK_EVENTS = ("delivered", "seen", "failed", "subscribed", "unsubscribed", "conversation_started")


def classify(http_status: int, answer: dict[str, Any] | None) -> SendResult:
    """A send_message outcome from the HTTP status and the decoded answer (None if not a JSON object)."""
    if http_status in RETRYABLE_HTTP:
        return SendResult(SendStatus.RETRY, f"http {http_status}")
    if http_status != 200 or answer is None:
        return SendResult(SendStatus.DEAD, f"http {http_status}")
    status = answer.get("status")
    if status == VIBER_OK:
        return SendResult(SendStatus.SENT, "ok")
    if status == VIBER_TOO_MANY_REQUESTS:
        return SendResult(SendStatus.RETRY, "viber status 12")
    if status in VIBER_RECEIVER_GONE:
        return SendResult(SendStatus.DROPPED, f"viber status {status}")
    return SendResult(SendStatus.DEAD, f"viber status {status}")


def transport_failure(cause: BaseException) -> SendResult:
    """A send that got no HTTP answer (refused, reset, timed out): retried later, named by its cause."""
    return SendResult(SendStatus.RETRY, f"transport: {type(cause).__name__}")


def decode_answer(data: bytes) -> dict[str, Any] | None:
    """An API answer body as a JSON object, or None if it is not one."""
    try:
        answer = json.loads(data)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def quick_backoff_s(retry: int) -> float:
    """Wait before quick retry number `retry` (1-based), in seconds: urllib3's Retry backoff."""
    if retry <= 1:
        return 0.0
    return min(QUICK_BACKOFF_MAX_S, QUICK_BACKOFF_S * 2 ** (retry - 1))


def retry_after_s(value: str | None) -> float | None:
    """Seconds a Retry-After header (delay-seconds or HTTP date) asks to wait; None if absent or invalid."""
    if value is None:
        return None
    try:
        return Retry().parse_retry_after(value)  # urllib3's reading, as the blocking client's
    except InvalidHeader:
        return None


class ViberClient:
    """Calls Viber's REST API; thread-safe, one connection pool per process."""

    def __init__(
        self, api_url: str, auth_token: str, *, pool_size: int = 32, read_timeout_s: float = READ_TIMEOUT_S
    ) -> None:
        """Prepare a keep-alive pool for the API's host."""
        self.api_url = api_url.rstrip("/")
        self._headers = {"X-Viber-Auth-Token": auth_token, "Content-Type": "application/json"}
        retry = Retry(
            total=QUICK_RETRIES,
            backoff_factor=QUICK_BACKOFF_S,
            status_forcelist=RETRYABLE_HTTP,
            allowed_methods=None,
            raise_on_status=False,
            respect_retry_after_header=True,
            backoff_max=QUICK_BACKOFF_MAX_S,
        )
        self._base_path = urllib3.util.parse_url(self.api_url).path or ""
        self._http = urllib3.connection_from_url(
            self.api_url,
            maxsize=pool_size,
            block=True,
            retries=retry,
            timeout=Timeout(connect=CONNECT_TIMEOUT_S, read=read_timeout_s),
        )

    def send_message(self, payload: dict[str, Any]) -> SendResult:
        """Send one message and classify the answer."""
        try:
            answer, http_status = self._post("send_message", payload)
        except HTTPError as exc:
            cause = exc.reason if isinstance(exc, MaxRetryError) and exc.reason is not None else exc
            return transport_failure(cause)
        return classify(http_status, answer)

    def set_webhook(self, url: str) -> dict[str, Any]:
        """Register the webhook URL with Viber; raise ViberApiError unless it says ok."""
        body = {"url": url, "event_types": list(WEBHOOK_EVENTS), "send_name": True, "send_photo": False}
        try:
            answer, http_status = self._post("set_webhook", body)
        except HTTPError as exc:
            raise ViberApiError(f"set_webhook failed: {type(exc).__name__}") from None
        if http_status != 200 or answer is None or answer.get("status") != VIBER_OK:
            message = answer.get("status_message") if answer else None
            raise ViberApiError(f"set_webhook refused: http {http_status}, {message}")
        return answer

    def _post(self, method: str, body: dict[str, Any]) -> tuple[dict[str, Any] | None, int]:
        """POST JSON to an API method; return the decoded answer (None if not JSON) and HTTP status."""
        response = self._http.urlopen(
            "POST", f"{self._base_path}/{method}", body=json.dumps(body).encode(), headers=self._headers
        )
        return decode_answer(response.data), response.status


class AsyncViberClient:
    """Calls send_message from one asyncio event loop: many sends in flight, no thread each.

    Its aiohttp session (a keep-alive pool of pool_size connections) is made on the first send, in that
    send's loop, and serves that loop only. close() it from another thread when done.
    """

    def __init__(
        self, api_url: str, auth_token: str, *, pool_size: int = 32, read_timeout_s: float = READ_TIMEOUT_S
    ) -> None:
        """Remember where and how to send; nothing is opened until the first send."""
        self._url = f"{api_url.rstrip('/')}/send_message"
        self._headers = {"X-Viber-Auth-Token": auth_token, "Content-Type": "application/json"}
        self._pool_size = pool_size
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=read_timeout_s
        )
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def send_message(self, payload: dict[str, Any]) -> SendResult:
        """Send one message, retrying transport errors and RETRYABLE_HTTP answers quickly; classify it."""
        session = self._session_in_this_loop()
        body = json.dumps(payload).encode()
        retry = 0
        while True:
            wait_s = None
            try:
                http_status, answer, wait_s = await self._post(session, body)
            except (aiohttp.ClientError, TimeoutError) as exc:
                if retry == QUICK_RETRIES:
                    return transport_failure(exc)
            else:
                gave_up = retry == QUICK_RETRIES or (wait_s is not None and wait_s > RETRY_AFTER_MAX_S)
                if http_status not in RETRYABLE_HTTP or gave_up:
                    return classify(http_status, answer)
            retry += 1
            await asyncio.sleep(wait_s or quick_backoff_s(retry))

    async def aclose(self) -> None:
        """Close the session and its connections (in the loop the client runs on)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Close the session from a thread other than its loop's; nothing to do if it never sent."""
        loop = self._loop
        if self._session is not None and loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(timeout_s)

    def __enter__(self) -> AsyncViberClient:
        """Use the client for a block; close() at its end."""
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close the session."""
        self.close()

    async def _post(
        self, session: aiohttp.ClientSession, body: bytes
    ) -> tuple[int, dict[str, Any] | None, float | None]:
        """POST one attempt; the HTTP status, the decoded answer and a Retry-After wait (seconds) if any."""
        # No redirects: the token header would follow them to any host (urllib3's pool stays on its host).
        async with session.post(self._url, data=body, allow_redirects=False) as response:
            data = await response.read()
            wait_s = (
                retry_after_s(response.headers.get("Retry-After"))
                if response.status in RETRYABLE_HTTP
                else None
            )
            return response.status, decode_answer(data), wait_s

    def _session_in_this_loop(self) -> aiohttp.ClientSession:
        """The session, made on first use in the running loop; refuses any other loop."""
        loop = asyncio.get_running_loop()
        if self._session is None:
            self._loop = loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size),
                headers=self._headers,
                timeout=self._timeout,
            )
        elif loop is not self._loop:
            raise RuntimeError("an AsyncViberClient serves only the event loop it first sent from")
        return self._session
