"""Tests of the fake Viber Bot API in tests.support.fake_viber."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_viber import FakeViber

TOKEN = "test-token"
CLI_START_TIMEOUT_S = 30.0


@pytest.fixture
def fake() -> Iterator[FakeViber]:
    """A running fake that only accepts TOKEN."""
    with FakeViber(auth_token=TOKEN) as fv:
        yield fv


def call(
    fv: FakeViber,
    endpoint: str,
    body: dict[str, Any],
    *,
    token: str | None = TOKEN,
    timeout: float = 5.0,
) -> tuple[int, dict[str, Any]]:
    """POST JSON to the fake; return (HTTP status, decoded JSON), even on errors."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["X-Viber-Auth-Token"] = token
    request = urllib.request.Request(
        f"{fv.url}/{endpoint}",
        data=json.dumps(body).encode(),
        headers=headers,
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def message(receiver: str = "user-1", text: str = "hello") -> dict[str, Any]:
    """A minimal text message body."""
    return {"receiver": receiver, "type": "text", "text": text}


def test_message_is_recorded(fake: FakeViber) -> None:
    """A sent message is answered ok and recorded with its headers."""
    code, answer = call(fake, "send_message", message("abc", "hi"))
    assert code == 200
    assert answer["status"] == 0 and isinstance(answer["message_token"], int)
    assert fake.wait_for_messages(1, timeout_s=1) == [message("abc", "hi")]
    assert fake.messages_to("abc") == [message("abc", "hi")]
    assert fake.messages_to("other") == []
    (recorded,) = fake.requests
    assert recorded.path == "/send_message"
    assert recorded.headers["X-Viber-Auth-Token"] == TOKEN
    assert json.loads(recorded.raw) == recorded.body
    second = call(fake, "send_message", message())[1]
    assert second["message_token"] > answer["message_token"]


def test_other_endpoints(fake: FakeViber) -> None:
    """set_webhook echoes event types, account info answers, unknown paths 404."""
    code, answer = call(fake, "set_webhook", {"url": "https://x", "event_types": ["seen"]})
    assert (code, answer["status"], answer["event_types"]) == (200, 0, ["seen"])
    assert call(fake, "get_account_info", {})[1]["id"] == "fake-bot"
    assert call(fake, "nope", {}) == (404, {"status": 8, "status_message": "notFound"})
    assert call(fake, "send_message", message(text="x" * 31_000))[1]["status"] == 3
    assert fake.sent_messages() == []


def test_fail_next_500_then_success(fake: FakeViber) -> None:
    """A scripted 500 is answered once, then the next call succeeds."""
    fake.fail_next(1)
    assert call(fake, "send_message", message()) == (
        500,
        {"status": 1, "status_message": "fake failure"},
    )
    assert fake.sent_messages() == []
    assert call(fake, "send_message", message())[1]["status"] == 0
    assert len(fake.wait_for_messages(1, timeout_s=1)) == 1
    assert len(fake.requests) == 2


def test_viber_status_too_many_requests(fake: FakeViber) -> None:
    """viber_status answers HTTP 200 with that Viber status and records no message."""
    fake.fail_next(1, viber_status=12)
    code, answer = call(fake, "send_message", message())
    assert (code, answer["status"], answer["status_message"]) == (
        200,
        12,
        "tooManyRequests",
    )
    assert fake.sent_messages() == []


def test_delay_triggers_client_timeout(fake: FakeViber) -> None:
    """delay_s longer than the client's timeout makes the client time out."""
    fake.fail_next(1, http_status=200, delay_s=1.0)
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        call(fake, "send_message", message(), timeout=0.2)
    with pytest.raises(AssertionError, match="got 0"):
        fake.wait_for_messages(1, timeout_s=0.05)
    # It is still delivered after the delay: a duplicate risk the app must handle.
    assert len(fake.wait_for_messages(1, timeout_s=3)) == 1


def test_close_drops_connection(fake: FakeViber) -> None:
    """close=True closes the connection without an answer."""
    fake.fail_next(1, close=True)
    with pytest.raises((urllib.error.URLError, http.client.RemoteDisconnected, ConnectionError)):
        call(fake, "send_message", message())
    assert fake.sent_messages() == []
    assert call(fake, "send_message", message())[1]["status"] == 0


def test_wrong_or_missing_token(fake: FakeViber) -> None:
    """A wrong or missing token gets status 2 and records no message."""
    assert call(fake, "send_message", message(), token="wrong")[1]["status"] == 2
    assert call(fake, "send_message", message(), token=None)[1]["status"] == 2
    assert fake.sent_messages() == []
    assert len(fake.requests) == 2


def test_keep_alive_and_clear(fake: FakeViber) -> None:
    """Several requests share one HTTP/1.1 connection; clear() forgets everything."""
    host, port = fake.url.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    headers = {"X-Viber-Auth-Token": TOKEN, "Content-Type": "application/json"}
    for i in range(3):
        conn.request("POST", "/pa/send_message", json.dumps(message(text=str(i))), headers)
        response = conn.getresponse()
        assert json.loads(response.read())["status"] == 0
    conn.close()
    assert [m["text"] for m in fake.sent_messages()] == ["0", "1", "2"]
    fake.fail_next(2)
    fake.clear()
    assert fake.requests == [] and fake.sent_messages() == [] and fake.pending_faults == 0


def test_latency_overlaps_across_hundreds_of_keep_alive_connections() -> None:
    """300 connections each wait out the latency at once, and stay open for a second round."""
    with FakeViber(latency_s=0.5, auth_token=TOKEN) as fv:
        conns = [http.client.HTTPConnection("127.0.0.1", fv.port, timeout=20) for _ in range(300)]
        headers = {"X-Viber-Auth-Token": TOKEN, "Content-Type": "application/json"}
        try:
            for round_ in range(2):
                started = time.monotonic()
                for i, conn in enumerate(conns):
                    conn.request(
                        "POST", "/pa/send_message", json.dumps(message(f"u{i}", str(round_))), headers
                    )
                answers = [json.loads(conn.getresponse().read()) for conn in conns]
                assert [a["status"] for a in answers] == [0] * len(conns)
                assert time.monotonic() - started < 10  # one after another would take 150 s
        finally:
            for conn in conns:
                conn.close()
        assert len(fv.sent_messages()) == 600
        assert len({r.headers["host"] for r in fv.requests}) == 1


def test_close_all_connections_then_stop_and_restart_on_the_same_port(fake: FakeViber) -> None:
    """Open connections can be cut; a stopped fake refuses connections and restarts on its port."""
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    headers = {"X-Viber-Auth-Token": TOKEN, "Content-Type": "application/json"}
    conn.request("POST", "/pa/send_message", json.dumps(message()), headers)
    assert json.loads(conn.getresponse().read())["status"] == 0
    fake.close_all_connections()
    assert conn.sock is not None and conn.sock.recv(1) == b""  # the server closed it
    conn.close()
    port = fake.port
    fake.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    fake.start()
    assert fake.port == port
    assert call(fake, "send_message", message())[1]["status"] == 0
    assert len(fake.sent_messages()) == 2


def test_cli_prints_its_url_and_each_message() -> None:
    """python -m tests.support.fake_viber prints VIBER_API_URL, then one line per message."""
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "tests.support.fake_viber", "--auth-token", TOKEN, "--latency-ms", "1"]
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as process:
        try:
            assert process.stdout is not None
            first = process.stdout.readline().strip()
            assert first.startswith("VIBER_API_URL=http://127.0.0.1:") and first.endswith("/pa")
            request = urllib.request.Request(
                f"{first.split('=', 1)[1]}/send_message",
                data=json.dumps(message("receiver-123", "Hi\nthere")).encode(),
                headers={"Content-Type": "application/json", "X-Viber-Auth-Token": TOKEN},
            )
            with urllib.request.urlopen(request, timeout=CLI_START_TIMEOUT_S) as response:
                assert json.loads(response.read())["status"] == 0
            assert process.stdout.readline().strip() == "send_message -> receiv: Hi there"
        finally:
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=CLI_START_TIMEOUT_S)
    assert process.returncode == 0
    assert "# stopped after 1 message(s)" in err
