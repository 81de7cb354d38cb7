"""Hostile clients of the operator side (issue #16, findings 3 and 4): guessing, weak tokens, bad ?next=.

Each test but the last two fails on the version before: 300 wrong logins went through without a
pause, `passwordpassword` was a valid token, and a CR/LF in ?next= was a 500. The last two check
that the throttle stays off the webhook and the public page, and follows TRUST_PROXY.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis

from tests.conftest import OPERATOR_TOKEN, message_event, operator_token, post_callback
from tests.test_dashboard import data_commands, login, login_form_csrf
from webhook import create_app
from webhook.core.errors import ConfigError
from webhook.operator import throttle

PER_CLIENT = throttle.PER_CLIENT.amount
IN_TOTAL = throttle.IN_TOTAL.amount
WINDOW_S = throttle.PER_CLIENT.get_expiry()


def from_address(app: Flask, address: str, **environ: str) -> FlaskClient:
    """A test client whose requests come from this address."""
    client = app.test_client()
    client.environ_base.update({"REMOTE_ADDR": address, **environ})
    return client


def form_login(client: FlaskClient, name: str, token: str, **extra: str) -> Any:
    """POST the login form."""
    data = {"name": name, "token": token, "csrf_token": login_form_csrf(client), **extra}
    return client.post("/dashboard/login", data=data)


def metrics_with(client: FlaskClient, token: str) -> int:
    """GET /metrics with a Bearer token; returns the status."""
    return client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code


def assert_throttled(response: Any) -> None:
    """429 with a Retry-After within the window."""
    assert response.status_code == 429, response.text
    assert 1 <= int(response.headers["Retry-After"]) <= WINDOW_S


def test_guessing_logins_is_throttled_per_client(app: Flask, redis: Redis) -> None:
    """After PER_CLIENT wrong logins a client waits (even with the right token); others do not."""
    token = operator_token(redis, "Alice")
    attacker = from_address(app, "203.0.113.7")
    for n in range(PER_CLIENT):
        assert form_login(attacker, "Alice", f"guess-{n}").status_code == 401
    refused = form_login(attacker, "Alice", "one-more-guess")
    assert_throttled(refused)
    assert "Too many failed logins" in refused.text
    assert_throttled(form_login(attacker, "Alice", token))  # a right guess looks the same now
    assert_throttled(form_login(attacker, "Nobody", "guess"))
    assert form_login(from_address(app, "198.51.100.20"), "Alice", token).status_code == 303


def test_guessing_bearer_tokens_is_throttled_per_client(app: Flask, redis: Redis) -> None:
    """Wrong Bearer tokens count on /metrics, /api, the dashboard's JSON and rq-dashboard alike."""
    attacker = from_address(app, "203.0.113.8")
    paths = ["/metrics", "/api/results", "/dashboard/api/state", "/dashboard/rq/0/data/queues.json"]
    for n in range(PER_CLIENT):
        wrong = {"Authorization": f"Bearer vvop_0123456789ab_guess{n}"}
        assert attacker.get(paths[n % len(paths)], headers=wrong).status_code == 401
    for path in paths:
        assert_throttled(attacker.get(path, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}))
    assert metrics_with(attacker, "wrong") == 429
    assert metrics_with(from_address(app, "198.51.100.21"), OPERATOR_TOKEN) == 200
    # One IPv6 subscriber holds a /64: its addresses share one budget.
    first = from_address(app, "2001:db8:1:2::1")
    for n in range(PER_CLIENT):
        assert metrics_with(first, f"guess-{n}") == 401
    assert metrics_with(from_address(app, "2001:db8:1:2:ffff::9"), OPERATOR_TOKEN) == 429
    assert metrics_with(from_address(app, "2001:db8:1:3::1"), OPERATOR_TOKEN) == 200


def test_guessing_from_many_addresses_is_throttled_in_total(app: Flask, redis: Redis) -> None:
    """A botnet gets IN_TOTAL failures per window between all its addresses, then everyone waits."""
    for n in range(IN_TOTAL):
        client = from_address(app, f"10.9.{n // 200}.{n % 200}")
        assert metrics_with(client, f"botnet-guess-{n}") == 401
    newcomer = from_address(app, "198.51.100.22")
    assert_throttled(newcomer.get("/metrics", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}))
    # Logins are counted apart from Bearer tokens, and an operator already logged in is not slowed.
    browser = from_address(app, "198.51.100.23")
    login(browser, "Alice")
    assert browser.get("/dashboard/api/state").status_code == 200


@pytest.mark.parametrize("key", ["OPERATOR_TOKEN", "VOTER_ID_SECRET"])
@pytest.mark.parametrize(
    "weak",
    [
        "passwordpassword",
        "passwordpasswordpassword",
        "Password1Password1Password1",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1",
        "012345678901234567890123456789",
        "test-token",
    ],
)
def test_weak_secrets_are_refused_at_start_up(environ: dict[str, str], key: str, weak: str) -> None:
    """The service does not start with a weak operator token or voter secret; it names the setting."""
    with pytest.raises(ConfigError, match=f"'{key}' is too (short|weak)"):
        create_app({**environ, key: weak})


@pytest.mark.parametrize(
    "make",
    [lambda: secrets.token_urlsafe(32), lambda: secrets.token_hex(16), lambda: secrets.token_hex(12)],
    ids=["token_urlsafe(32)", "token_hex(16)", "token_hex(12)"],
)
def test_generated_secrets_are_accepted(environ: dict[str, str], make: Callable[[], str]) -> None:
    """What the README tells operators to run passes the check."""
    generated = make()
    assert create_app({**environ, "OPERATOR_TOKEN": generated}).extensions["viber_vote"].config.operator_token


@pytest.mark.parametrize(
    "wanted",
    [
        "/dashboard/\r\nSet-Cookie: x=1",
        "/dashboard/\nLocation: //evil.example",
        "/dashboard/\x00",
        "/dashboard/é",
    ],
    ids=["crlf", "lf", "nul", "non-ascii"],
)
def test_next_with_control_characters_is_a_safe_redirect(app: Flask, redis: Redis, wanted: str) -> None:
    """?next= with CR/LF (a header split) lands on the dashboard instead of a 500, before and after login."""
    client = app.test_client()
    response = form_login(client, "Alice", operator_token(redis, "Alice"), next=wanted)
    assert response.status_code == 303
    assert response.headers["Location"] == "/dashboard/"
    assert "Set-Cookie: x" not in str(response.headers)
    again = client.get("/dashboard/login", query_string={"next": wanted})
    assert again.status_code == 302
    assert again.headers["Location"] == "/dashboard/"


def test_rq_dashboard_other_instances_are_a_login_or_a_404(client: FlaskClient, redis: Redis) -> None:
    """rq-dashboard's instance 1 (it has only 0 here) is a login redirect or 401, then a 404: never a 500."""
    anonymous = client.get("/dashboard/rq/1/view")
    assert anonymous.status_code == 302
    assert anonymous.headers["Location"].startswith("/dashboard/login?next=")
    assert client.get("/dashboard/rq/1/data/queues.json").status_code == 401
    login(client, "Alice")
    for path in ("/dashboard/rq/1/view", "/dashboard/rq/1/view/workers", "/dashboard/rq/7/data/queues.json"):
        assert client.get(path).status_code == 404, path
    assert client.get("/dashboard/rq/0/data/queues.json").status_code == 200  # the one instance


def test_the_webhook_and_public_page_never_meet_the_throttle(
    app: Flask, client: FlaskClient, redis: Redis
) -> None:
    """With every budget spent, callbacks and the public page answer as before, at no extra Redis cost."""
    for n in range(IN_TOTAL):
        assert metrics_with(from_address(app, f"10.8.{n // 200}.{n % 200}"), f"guess-{n}") == 401
    assert metrics_with(client, OPERATOR_TOKEN) == 429
    redis.config_resetstat()
    for _ in range(50):
        bad = client.post("/viber/webhook", data=b"{}", headers={"X-Viber-Content-Signature": "00"})
        assert bad.status_code == 403
    assert data_commands(redis) == {}  # not one Redis call
    assert (
        post_callback(client, message_event("throttle-voter", "yes", tracking_data="main")).status_code == 200
    )
    assert client.get("/").status_code == 200
    assert client.get("/live.json").status_code == 200


@pytest.mark.parametrize("trusted", [True, False], ids=["TRUST_PROXY=1", "unset"])
def test_the_client_address_comes_from_the_proxy_only_when_trusted(
    environ: dict[str, str], redis: Redis, trusted: bool
) -> None:
    """Behind nginx every client is 127.0.0.1: with TRUST_PROXY=1 X-Forwarded-For tells them apart.

    Without the flag the header is ignored, so a client cannot pick a fresh address per guess.
    """
    app = create_app({**environ, "TRUST_PROXY": "1"} if trusted else environ)
    app.testing = True
    attacker = from_address(app, "127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    for n in range(PER_CLIENT):
        assert metrics_with(attacker, f"guess-{n}") == 401
    assert metrics_with(attacker, OPERATOR_TOKEN) == 429
    neighbour = from_address(app, "127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.24")
    assert metrics_with(neighbour, OPERATOR_TOKEN) == (200 if trusted else 429)
