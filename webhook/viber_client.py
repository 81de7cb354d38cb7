"""Viber's REST Bot API over a pooled HTTP client with timeouts and retries.

viberbot's own sender has no timeout, no session and logs the auth token; this replaces it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError, MaxRetryError
from urllib3.util import Retry, Timeout

from webhook.errors import ViberApiError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 10.0
QUICK_RETRIES = 2
"""Retries inside one send (connection errors, 429 and 5xx), before the outbox's own backoff."""
QUICK_BACKOFF_S = 0.2
RETRYABLE_HTTP = (429, 500, 502, 503, 504)
VIBER_OK = 0
VIBER_TOO_MANY_REQUESTS = 12
VIBER_RECEIVER_GONE = (5, 6)
"""receiverNotRegistered, receiverNotSubscribed: sending again cannot help."""
WEBHOOK_EVENTS = ("delivered", "seen", "failed", "subscribed", "unsubscribed", "conversation_started")


class SendStatus(StrEnum):
    """The fate of one send_message call."""

    SENT = "sent"
    RETRY = "retry"
    DEAD = "dead"
    DROPPED = "dropped"


@dataclass(frozen=True)
class SendResult:
    """A send's status and a short reason (never the payload or the token)."""

    status: SendStatus
    reason: str


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
            backoff_max=2.0,
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
            return SendResult(SendStatus.RETRY, f"transport: {type(cause).__name__}")
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
        try:
            answer = json.loads(response.data)
        except ValueError:
            return None, response.status
        return (answer if isinstance(answer, dict) else None), response.status
