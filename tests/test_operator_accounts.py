"""Named operator accounts (issue #16, finding 2): the CLI, who the audit log names, logins in Redis.

Each test here fails on the version with one shared token and signed-cookie sessions: there the
name typed at login was written to the audit log as given, and a cookie kept working after logout.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis

from tests.conftest import OPERATOR_TOKEN
from tests.test_dashboard import CSRF_META, SESSION_COOKIE, login_form_csrf
from webhook.operator import accounts
from webhook.operator.journal import AUDIT_KEY
from webhook.operator.session_store import SESSION_LIFETIME_S
from webhook.store import keys


def cli(app: Flask, *args: str) -> Any:
    """Run `flask --app wsgi <args>` against the app (its context pushed, as flask does)."""
    with app.app_context():
        return app.test_cli_runner().invoke(args=list(args))


def add(app: Flask, name: str) -> str:
    """`flask --app wsgi operator add NAME`; returns the token it printed."""
    result = cli(app, "operator", "add", name)
    assert result.exit_code == 0, result.output + result.stderr
    return result.stdout.strip()


def form_login(client: FlaskClient, name: str, token: str) -> Any:
    """POST the login form; returns the response."""
    data = {"name": name, "token": token, "csrf_token": login_form_csrf(client)}
    return client.post("/dashboard/login", data=data)


def logged_in(client: FlaskClient, name: str, token: str) -> str:
    """Log in and return the session cookie's value."""
    assert form_login(client, name, token).status_code == 303
    cookie = client.get_cookie(SESSION_COOKIE, path="/dashboard")
    assert cookie is not None
    return cookie.value


def with_cookie(app: Flask, value: str) -> FlaskClient:
    """A new browser that presents a copied session cookie."""
    other = app.test_client()
    other.set_cookie(SESSION_COOKIE, value, path="/dashboard")
    return other


def bearer(token: str) -> dict[str, str]:
    """An Authorization header."""
    return {"Authorization": f"Bearer {token}"}


def redis_dump(redis: Redis) -> bytes:
    """Every key and value in Redis, as one blob to search."""
    blob = []
    for key in redis.scan_iter(count=1000):
        kind = redis.type(key)
        blob.append(key)
        if kind == b"string":
            blob.append(redis.get(key) or b"")
        elif kind == b"hash":
            blob.extend(b for pair in redis.hgetall(key).items() for b in pair)
        elif kind == b"list":
            blob.extend(redis.lrange(key, 0, -1))
        elif kind == b"set":
            blob.extend(redis.smembers(key))
        elif kind == b"zset":
            blob.extend(redis.zrange(key, 0, -1))
    return b"\n".join(blob)


def test_cli_adds_lists_rotates_and_removes_accounts(app: Flask, client: FlaskClient, redis: Redis) -> None:
    """`operator add` prints a token once; list shows no secret; rotate and remove end the old token."""
    token = add(app, "Alice")
    assert token.startswith("vvop_") and len(token) >= 60
    listed = cli(app, "operator", "list")
    assert listed.exit_code == 0 and "Alice" in listed.stdout and token not in listed.stdout
    assert cli(app, "operator", "add", "Alice").exit_code == 1  # taken
    for bad in ("bootstrap", "Bootstrap", "", " Alice", "a\nb", "x" * 41):
        assert cli(app, "operator", "add", bad).exit_code != 0, bad
    assert client.get("/api/results", headers=bearer(token)).status_code == 200
    rotated = cli(app, "operator", "rotate", "Alice")
    assert rotated.exit_code == 0
    new_token = rotated.stdout.strip()
    assert new_token != token
    assert client.get("/api/results", headers=bearer(token)).status_code == 401
    assert form_login(app.test_client(), "Alice", token).status_code == 401
    assert client.get("/api/results", headers=bearer(new_token)).status_code == 200
    assert cli(app, "operator", "remove", "Alice").exit_code == 0
    assert client.get("/api/results", headers=bearer(new_token)).status_code == 401
    assert cli(app, "operator", "remove", "Alice").exit_code == 1  # no such account
    assert cli(app, "operator", "rotate", "Nobody").exit_code == 1


def test_the_audit_log_names_the_account_not_a_typed_name(app: Flask, redis: Redis) -> None:
    """A name is proven by its token: neither the shared token nor another's token logs in as it."""
    browser = app.test_client()
    # Before any account: the shared token is the operator "bootstrap", under no other name.
    assert form_login(browser, "Anyone", OPERATOR_TOKEN).status_code == 401
    assert form_login(browser, "bootstrap", OPERATOR_TOKEN).status_code == 303
    assert json.loads(redis.lindex(AUDIT_KEY, 0))["who"] == "bootstrap"
    alice, bob = add(app, "Alice"), add(app, "Bob")
    other = app.test_client()
    assert form_login(other, "bootstrap", OPERATOR_TOKEN).status_code == 401  # retired by the first account
    assert form_login(other, "Alice", bob).status_code == 401
    assert form_login(other, "Alice", alice).status_code == 303
    csrf = CSRF_META.search(other.get("/dashboard/").text).group(1)
    closed = other.post(
        "/dashboard/api/polls/main/status", json={"status": "closed"}, headers={"X-CSRF-Token": csrf}
    )
    assert closed.status_code == 200
    bobs_browser = app.test_client()
    assert form_login(bobs_browser, "Bob", bob).status_code == 303
    csrf = CSRF_META.search(bobs_browser.get("/dashboard/").text).group(1)
    reopened = bobs_browser.post(
        "/dashboard/api/polls/main/status", json={"status": "open"}, headers={"X-CSRF-Token": csrf}
    )
    assert reopened.status_code == 200
    entries = [json.loads(e) for e in redis.lrange(AUDIT_KEY, 0, 3)]
    assert [(e["who"], e["what"]) for e in entries] == [
        ("Bob", "open"),
        ("Bob", "log in"),
        ("Alice", "close"),
        ("Alice", "log in"),
    ]


def test_logout_ends_the_login_everywhere_at_once(app: Flask, client: FlaskClient, redis: Redis) -> None:
    """A cookie copied before logout no longer works after it (a signed cookie kept working 12 h)."""
    cookie = logged_in(client, "Alice", add(app, "Alice"))
    assert with_cookie(app, cookie).get("/dashboard/").status_code == 200
    csrf = CSRF_META.search(client.get("/dashboard/").text).group(1)
    assert client.post("/dashboard/logout", data={"csrf_token": csrf}).status_code == 303
    stolen = with_cookie(app, cookie)
    assert stolen.get("/dashboard/").status_code == 302
    assert stolen.get("/dashboard/api/state").status_code == 401
    assert stolen.get("/dashboard/rq/0/data/queues.json").status_code == 401


def test_removing_or_rotating_an_account_ends_its_logins_and_tokens(app: Flask, redis: Redis) -> None:
    """Every browser of the account is logged out, and a remembered Bearer token refused, at once."""
    token = add(app, "Alice")
    bob = logged_in(app.test_client(), "Bob", add(app, "Bob"))
    first = logged_in(app.test_client(), "Alice", token)
    second = logged_in(app.test_client(), "Alice", token)
    api = app.test_client()
    for _ in range(3):  # the token is verified once, then remembered by this process
        assert api.get("/metrics", headers=bearer(token)).status_code == 200
    assert cli(app, "operator", "rotate", "Alice").exit_code == 0
    assert with_cookie(app, first).get("/dashboard/api/state").status_code == 401
    assert with_cookie(app, second).get("/dashboard/api/state").status_code == 401
    assert api.get("/metrics", headers=bearer(token)).status_code == 401
    assert with_cookie(app, bob).get("/dashboard/api/state").status_code == 200  # others stay
    fresh = cli(app, "operator", "rotate", "Bob").stdout.strip()
    assert api.get("/metrics", headers=bearer(fresh)).status_code == 200
    again = logged_in(app.test_client(), "Bob", fresh)
    assert cli(app, "operator", "remove", "Bob").exit_code == 0
    assert with_cookie(app, again).get("/dashboard/").status_code == 302
    assert api.get("/metrics", headers=bearer(fresh)).status_code == 401
    assert redis.hget(keys.OPERATORS, "Bob") is None


def test_the_first_account_retires_the_bootstrap_token(app: Flask, redis: Redis) -> None:
    """OPERATOR_TOKEN works (as "bootstrap") only until an account exists; its logins end then."""
    api = app.test_client()
    assert api.get("/metrics", headers=bearer(OPERATOR_TOKEN)).status_code == 200
    cookie = logged_in(app.test_client(), "bootstrap", OPERATOR_TOKEN)
    assert with_cookie(app, cookie).get("/dashboard/").status_code == 200
    added = cli(app, "operator", "add", "Alice")
    assert "no longer logs in" in added.stderr
    assert with_cookie(app, cookie).get("/dashboard/").status_code == 302
    assert api.get("/metrics", headers=bearer(OPERATOR_TOKEN)).status_code == 401


def test_redis_holds_no_token_and_no_usable_session_id(app: Flask, redis: Redis) -> None:
    """Tokens are stored as scrypt hashes and logins under SHA-256 of the cookie, with a TTL."""
    token = add(app, "Alice")
    browser = app.test_client()
    cookie = logged_in(browser, "Alice", token)
    assert app.test_client().get("/api/results", headers=bearer(token)).status_code == 200
    dump = redis_dump(redis)
    for secret in (token, token.split("_", 2)[2], cookie, OPERATOR_TOKEN):  # the secret may hold "_"
        assert secret.encode() not in dump
    stored = keys.operator_session(hashlib.sha256(cookie.encode()).hexdigest())
    assert redis.hget(stored, "who") == b"Alice"
    assert SESSION_LIFETIME_S - 60 <= redis.ttl(stored) <= SESSION_LIFETIME_S
    record = json.loads(redis.hget(keys.OPERATORS, "Alice"))
    assert record["kdf"] == "scrypt" and record["n"] >= 2**14


def test_session_cookie_holds_a_random_id_with_hardened_flags(
    app: Flask, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside tests the cookie is Secure, HttpOnly, SameSite=Strict, /dashboard, 12 h; a new id per login."""
    app.testing = False
    monkeypatch.delenv("DASHBOARD_INSECURE_COOKIE", raising=False)
    token = add(app, "Alice")
    browser = app.test_client()
    response = form_login(browser, "Alice", token)
    assert response.status_code == 303
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith(f"{SESSION_COOKIE}="))
    for flag in (
        "; Secure",
        "; HttpOnly",
        "SameSite=Strict",
        "Path=/dashboard",
        f"Max-Age={SESSION_LIFETIME_S}",
    ):
        assert flag in cookie, (flag, cookie)
    first = cookie.split(";")[0].split("=", 1)[1]
    second = form_login(app.test_client(), "Alice", token).headers.getlist("Set-Cookie")
    assert len(first) >= 43 and all(first not in c for c in second)


def test_bearer_tokens_cost_one_scrypt_and_dashboard_polling_none(
    app: Flask, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token names its account (one scrypt, not one per account), then is remembered; sessions need none."""
    tokens = [add(app, name) for name in ("Alice", "Bob", "Carol")]
    calls: list[int] = []
    real_kdf = accounts._kdf
    monkeypatch.setattr(accounts, "_kdf", lambda *a, **kw: calls.append(1) or real_kdf(*a, **kw))
    api = app.test_client()
    assert api.get("/metrics", headers=bearer(tokens[2])).status_code == 200
    assert len(calls) == 1
    for _ in range(20):
        assert api.get("/metrics", headers=bearer(tokens[2])).status_code == 200
    assert len(calls) == 1
    browser = app.test_client()
    logged_in(browser, "Bob", tokens[1])
    calls.clear()
    for _ in range(20):
        assert browser.get("/dashboard/api/state").status_code == 200
    assert calls == []


def test_concurrent_wrong_tokens_run_few_scrypts_at_once(
    app: Flask, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst of well-formed wrong tokens cannot run a 16 MiB scrypt on every thread at once."""
    token = add(app, "Alice")
    wrong = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    running, peak, lock = [0], [0], threading.Lock()
    real_scrypt = hashlib.scrypt

    def counting_scrypt(*args: Any, **kwargs: Any) -> bytes:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            return real_scrypt(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(accounts.hashlib, "scrypt", counting_scrypt)
    statuses: list[int] = []

    def guess(n: int) -> None:
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = f"198.51.100.{n}"
        statuses.append(client.get("/metrics", headers=bearer(wrong)).status_code)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert statuses == [401] * 8
    assert peak[0] <= accounts.KDF_SLOTS
