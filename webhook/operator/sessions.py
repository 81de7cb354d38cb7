"""Operator sessions: the login cookie, CSRF tokens, and the guards on operator pages and APIs.

A browser logs in with the operator token once and keeps a signed session cookie; API
clients send the token as a Bearer header instead. The session key is derived from the
operator token, so every gunicorn worker accepts every other's cookies, and rotating the
token logs everyone out. Every POST from a session carries its CSRF token.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface, SessionMixin
from werkzeug.wrappers import Request

from webhook.http_errors import error_response
from webhook.operator.auth import is_operator
from webhook.runtime import runtime

SESSION_KEY_MESSAGE = b"viber-vote dashboard session v1"
SESSION_PATH = "/dashboard"
SESSION_LIFETIME = timedelta(hours=12)
"""A login lasts this long from the login, however active; the signed cookie's age is checked."""
INSECURE_COOKIE_ENV = "DASHBOARD_INSECURE_COOKIE"
"""Set to 1 to send the session cookie over plain http (a local run without TLS)."""
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


class OperatorSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, Secure unless testing or explicitly allowed over http."""

    def open_session(self, app: Flask, request: Request) -> SessionMixin | None:
        """A session only under /dashboard: the webhook and the public page never pay for one."""
        if not request.path.startswith(SESSION_PATH):
            return self.make_null_session(app)
        return super().open_session(app, request)

    def get_cookie_secure(self, app: Flask) -> bool:
        """Whether the cookie gets the Secure flag."""
        if app.testing or os.environ.get(INSECURE_COOKIE_ENV) == "1":
            return False
        return True


def session_key(operator_token: str) -> str:
    """The session-signing key: an HMAC of a fixed message under the operator token."""
    return hmac.new(operator_token.encode(), SESSION_KEY_MESSAGE, hashlib.sha256).hexdigest()


def configure(app: Flask, operator_token: str) -> None:
    """Signed, HttpOnly, Secure, SameSite=Strict session cookies scoped to /dashboard."""
    app.config.update(
        SECRET_KEY=session_key(operator_token),
        SESSION_COOKIE_NAME="vv_dashboard",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_PATH=SESSION_PATH,
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        SESSION_REFRESH_EACH_REQUEST=False,
    )
    app.session_interface = OperatorSessionInterface()


def operator_name() -> str | None:
    """The logged-in operator's name from the session, if the login is still valid."""
    who = session.get("who")
    return who if isinstance(who, str) and who else None


def bearer_ok() -> bool:
    """Whether the request carries the operator token as a Bearer header."""
    return is_operator(request.headers.get("Authorization"), runtime().config.operator_token)


def same_origin() -> bool:
    """Whether the request's Origin (if the browser sent one) names this host.

    Only the host is compared: behind a TLS-terminating proxy the app sees http, the browser https.
    """
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


def unauthorised() -> tuple[Response, int]:
    """401 with a Bearer challenge."""
    response, status = error_response(401, "operator login or token required")
    response.headers["WWW-Authenticate"] = 'Bearer realm="viber-vote"'
    return response, status


def csrf_token() -> str:
    """This session's CSRF token, made on first use."""
    token = session.get("csrf")
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_ok() -> bool:
    """Whether a POST carries this session's CSRF token (header or form field)."""
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD) or ""
    expected = session.get("csrf")
    if not isinstance(expected, str) or not expected:
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
    """401 unless a session or the Bearer token; a session's POST needs its CSRF token too."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if bearer_ok():
            return view(*args, who="api", **kwargs)
        who = operator_name()
        if not who:
            return unauthorised()
        if request.method == "POST" and not csrf_ok():
            return error_response(403, "missing or wrong CSRF token")
        return view(*args, who=who, **kwargs)

    return wrapped
