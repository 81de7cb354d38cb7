"""Operator sessions: the login cookie, CSRF tokens, and the guards on operator pages and APIs.

A browser logs in with an account's name and token once; the cookie then holds only a random
session id, and the login itself lives in Redis (webhook/operator/session_store.py), so logging
out, removing or rotating the account ends it at once. API clients send their token as a Bearer
header instead (webhook/operator/auth.py). Every POST from a session carries its CSRF token; the
login form, before any session exists, carries one that a second cookie repeats (double submit),
so a visitor who is not logged in costs Redis nothing.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import Response, after_this_request, current_app, g, redirect, request, url_for

from webhook.http_errors import error_response
from webhook.operator import session_store
from webhook.operator.auth import bearer_operator, unauthorised
from webhook.operator.session_store import SESSION_LIFETIME_S, Login
from webhook.runtime import runtime

SESSION_PATH = "/dashboard"
SESSION_COOKIE = "vv_dashboard"
LOGIN_CSRF_COOKIE = "vv_login_csrf"
INSECURE_COOKIE_ENV = "DASHBOARD_INSECURE_COOKIE"
"""Set to 1 to send the session cookie over plain http (a local run without TLS)."""
SAFE_METHODS = ("GET", "HEAD")
"""What a Bearer token may do: read."""
SESSION_ONLY_ENDPOINTS = frozenset({"dashboard.export"})
"""Reads that still need a logged-in operator: downloads of the ledger and the receipts."""
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
BOOTSTRAP_MARK_MESSAGE = b"viber-vote bootstrap login v1"


def _cookie_secure() -> bool:
    """Whether cookies get the Secure flag (not in tests, nor when plain http is allowed)."""
    return not (current_app.testing or os.environ.get(INSECURE_COOKIE_ENV) == "1")


def _set_cookie(response: Response, name: str, value: str, max_age_s: int | None) -> None:
    """An HttpOnly, SameSite=Strict cookie for /dashboard only."""
    response.set_cookie(
        name,
        value,
        max_age=max_age_s,
        path=SESSION_PATH,
        secure=_cookie_secure(),
        httponly=True,
        samesite="Strict",
    )


def bootstrap_mark() -> str:
    """A fingerprint of the current bootstrap token: a login made with another one is over."""
    token = runtime().config.operator_token.encode()
    return hmac.new(token, BOOTSTRAP_MARK_MESSAGE, hashlib.sha256).hexdigest()[:32]


def current_login() -> Login | None:
    """This request's login, from the cookie's session id (looked up once per request)."""
    if "operator_login" not in g:
        session_id = request.cookies.get(SESSION_COOKIE) or ""
        login = session_store.load(runtime().redis, session_id) if session_id else None
        if login is not None and login.mark and not hmac.compare_digest(login.mark, bootstrap_mark()):
            login = None
        g.operator_login = login
    return g.operator_login


def operator_name() -> str | None:
    """The logged-in operator's name, if the login is still valid."""
    login = current_login()
    return login.who if login is not None else None


def start(response: Response, *, who: str, account: str, record: str | None) -> bool:
    """Store a new login and give the browser its cookie; False if the account changed meanwhile."""
    mark = bootstrap_mark() if record is None else ""
    opened = session_store.open_login(runtime().redis, who=who, account=account, record=record, mark=mark)
    if opened is None:
        return False
    session_id, _ = opened
    _set_cookie(response, SESSION_COOKIE, session_id, SESSION_LIFETIME_S)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=SESSION_PATH)
    return True


def end(response: Response) -> None:
    """End this request's login in Redis and forget the cookie."""
    login = current_login()
    if login is not None:
        session_store.close(runtime().redis, request.cookies.get(SESSION_COOKIE) or "", login)
    response.delete_cookie(SESSION_COOKIE, path=SESSION_PATH)
    g.operator_login = None


def same_origin() -> bool:
    """Whether the request's Origin (if the browser sent one) names this host.

    Only the host is compared: behind a TLS-terminating proxy the app sees http, the browser https.
    """
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


def csrf_token() -> str:
    """The session's CSRF token; before a login, the login form's (repeated in its own cookie)."""
    login = current_login()
    if login is not None:
        return login.csrf
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    if len(token) < 32:
        token = secrets.token_urlsafe(32)

        @after_this_request
        def _remember(response: Response) -> Response:
            _set_cookie(response, LOGIN_CSRF_COOKIE, token, None)
            return response

    return token


def csrf_ok() -> bool:
    """Whether a POST carries this session's CSRF token (or, before a login, the login form's)."""
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD) or ""
    login = current_login()
    expected = login.csrf if login is not None else request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    if len(expected) < 32:
        return False
    return hmac.compare_digest(sent.encode(), expected.encode())


def page_login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Redirect to the login form unless an operator is logged in."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not operator_name():
            return redirect(url_for("dashboard.login", next=request.full_path))
        return view(*args, **kwargs)

    return wrapped


def api_auth_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """401 unless a session or a Bearer token; a session's POST needs its CSRF token too.

    A Bearer token only reads (GET): tokens live in scrapers' and scripts' configuration, so one
    that leaks must not close a poll or export the receipts; changes and exports need a logged-in
    operator (or the CLI, on a host with the service's settings).
    """

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        by_token = bearer_operator()
        if by_token is not None:
            if request.method not in SAFE_METHODS or request.endpoint in SESSION_ONLY_ENDPOINTS:
                return error_response(403, "a token only reads: log in to the dashboard to change or export")
            return view(*args, who=by_token, **kwargs)
        who = operator_name()
        if not who:
            return unauthorised()
        if request.method == "POST" and not csrf_ok():
            return error_response(403, "missing or wrong CSRF token")
        return view(*args, who=who, **kwargs)

    return wrapped
