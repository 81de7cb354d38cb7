"""The sender's aiohttp client: classified and quickly retried exactly like the blocking ViberClient."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import BOT_TOKEN
from tests.support.fake_viber import FakeViber
from webhook.channels.viber.client import (
    QUICK_BACKOFF_S,
    QUICK_RETRIES,
    AsyncViberClient,
    SendResult,
    SendStatus,
    ViberClient,
    retry_after_s,
)
from webhook.config import Config
from workers.context import send_loop

RECEIVER = "async-client-receiver"
PAYLOAD = {"receiver": RECEIVER, "type": "text", "text": "Your vote is counted", "sender": {"name": "Bot"}}
SEND_TIMEOUT_S = 30.0

Send = Callable[[], SendResult]


def send_async(client: AsyncViberClient) -> SendResult:
    """One send_message on the worker's send loop, as the sender makes it."""
    return asyncio.run_coroutine_threadsafe(client.send_message(PAYLOAD), send_loop()).result(SEND_TIMEOUT_S)


@pytest.fixture(params=["async", "sync"])
def send(request: pytest.FixtureRequest, viber: AsyncViberClient, config: Config) -> Send:
    """Send PAYLOAD with the async client, or with the blocking ViberClient it must agree with."""
    if request.param == "async":
        return lambda: send_async(viber)
    client = ViberClient(config.viber_api_url, config.viber_auth_token)
    return lambda: client.send_message(PAYLOAD)


def attempts(fake: FakeViber) -> int:
    """send_message requests to RECEIVER, answered or not."""
    return sum(
        1 for r in fake.requests if r.path == "/send_message" and (r.body or {}).get("receiver") == RECEIVER
    )


@pytest.mark.parametrize(
    ("fault", "expected", "requests"),
    [
        (None, SendResult(SendStatus.SENT, "ok"), 1),
        ({"n": 1, "http_status": 500}, SendResult(SendStatus.SENT, "ok"), 2),
        ({"n": 2, "http_status": 503}, SendResult(SendStatus.SENT, "ok"), 3),
        ({"n": 3, "http_status": 500}, SendResult(SendStatus.RETRY, "http 500"), 3),
        ({"n": 3, "http_status": 429}, SendResult(SendStatus.RETRY, "http 429"), 3),
        ({"n": 1, "http_status": 400}, SendResult(SendStatus.DEAD, "http 400"), 1),
        ({"n": 1, "http_status": 404}, SendResult(SendStatus.DEAD, "http 404"), 1),
        ({"n": 1, "viber_status": 12}, SendResult(SendStatus.RETRY, "viber status 12"), 1),
        ({"n": 1, "viber_status": 5}, SendResult(SendStatus.DROPPED, "viber status 5"), 1),
        ({"n": 1, "viber_status": 6}, SendResult(SendStatus.DROPPED, "viber status 6"), 1),
        ({"n": 1, "viber_status": 3}, SendResult(SendStatus.DEAD, "viber status 3"), 1),
        ({"n": 1, "close": True}, SendResult(SendStatus.SENT, "ok"), 2),
    ],
)
def test_answers_are_classified_and_retried_alike(
    send: Send, fake_viber: FakeViber, fault: dict[str, Any] | None, expected: SendResult, requests: int
) -> None:
    """Each scripted answer gives the same result and the same number of requests with either client."""
    if fault is not None:
        fake_viber.fail_next(**fault)
    assert send() == expected
    assert attempts(fake_viber) == requests
    assert fake_viber.pending_faults == 0


def test_transport_failures_are_retried_then_named(send: Send, fake_viber: FakeViber) -> None:
    """A connection dropped without an answer, every time: QUICK_RETRIES more tries, then RETRY later."""
    fake_viber.fail_next(QUICK_RETRIES + 1, close=True)
    result = send()
    assert result.status is SendStatus.RETRY and result.reason.startswith("transport: ")
    assert attempts(fake_viber) == QUICK_RETRIES + 1


def test_quick_retries_back_off_like_urllib3(viber: AsyncViberClient, fake_viber: FakeViber) -> None:
    """The first quick retry goes at once, the second after 2 × QUICK_BACKOFF_S."""
    fake_viber.fail_next(2, http_status=502)
    started = time.monotonic()
    assert send_async(viber) == SendResult(SendStatus.SENT, "ok")
    taken_s = time.monotonic() - started
    assert 2 * QUICK_BACKOFF_S <= taken_s < 2 * QUICK_BACKOFF_S + 1.0
    assert attempts(fake_viber) == 3


def test_answers_slower_than_the_read_timeout_are_a_transport_failure(
    config: Config, fake_viber: FakeViber
) -> None:
    """Three answers later than read_timeout_s: three tries, then RETRY naming the timeout."""
    fake_viber.fail_next(3, http_status=200, delay_s=1.0)
    with AsyncViberClient(config.viber_api_url, config.viber_auth_token, read_timeout_s=0.3) as client:
        started = time.monotonic()
        result = send_async(client)
    assert result.status is SendStatus.RETRY and result.reason.startswith("transport: ")
    assert "Timeout" in result.reason
    assert attempts(fake_viber) == 3
    assert time.monotonic() - started < 3 * 1.0


def test_refused_connections_are_retried_then_named(
    viber: AsyncViberClient, fake_viber: FakeViber, caplog: pytest.LogCaptureFixture
) -> None:
    """With the API down: RETRY with the cause's name; neither the token nor the payload is logged."""
    assert send_async(viber).status is SendStatus.SENT  # a pooled connection, cut by the stop
    fake_viber.stop()
    with caplog.at_level(logging.DEBUG):
        result = send_async(viber)
    assert result.status is SendStatus.RETRY and result.reason.startswith("transport: ")
    assert BOT_TOKEN not in caplog.text and RECEIVER not in caplog.text
    assert BOT_TOKEN not in result.reason and RECEIVER not in result.reason


def test_retry_after_is_honoured(viber: AsyncViberClient, fake_viber: FakeViber) -> None:
    """A 429 asking for 1 s is retried after that second, not at once."""
    fake_viber.fail_next(1, http_status=429, retry_after="1")
    assert send_async(viber) == SendResult(SendStatus.SENT, "ok")
    first, second = (r.received_at for r in fake_viber.requests)
    assert 1.0 <= second - first < 2.0


def test_a_long_retry_after_is_left_to_the_outbox(viber: AsyncViberClient, fake_viber: FakeViber) -> None:
    """A 503 asking for minutes ends the quick retries: RETRY at once, the outbox's backoff takes over."""
    fake_viber.fail_next(1, http_status=503, retry_after="300")
    assert send_async(viber) == SendResult(SendStatus.RETRY, "http 503")
    assert len(fake_viber.requests) == 1


def test_retry_after_values() -> None:
    """Delay-seconds and HTTP dates are read; anything else is ignored."""
    assert retry_after_s("3") == 3.0
    assert retry_after_s(" 0 ") == 0.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    in_a_minute = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
    assert 55 < (retry_after_s(in_a_minute) or 0) <= 60
    assert retry_after_s(None) is None
    assert retry_after_s("soon") is None


def test_a_client_serves_only_its_first_loop(viber: AsyncViberClient, fake_viber: FakeViber) -> None:
    """Its session belongs to the loop it first sent from; another loop is refused, not silently broken."""
    assert send_async(viber).status is SendStatus.SENT
    with pytest.raises(RuntimeError, match="only the event loop"):
        asyncio.run(viber.send_message(PAYLOAD))
