"""The dashboard's login and logout: an account's name and token checked, a session started in Redis."""

from __future__ import annotations

import re
from typing import Any

from flask import Response, redirect, render_template, request, url_for

from webhook.http_errors import error_response
from webhook.operator import accounts, sessions, throttle
from webhook.operator import journal as audit_log
from webhook.operator.blueprint import bp
from webhook.operator.sessions import csrf_ok, csrf_token, operator_name
from webhook.runtime import runtime

SAFE_NEXT = re.compile(r"^/dashboard/[\x21-\x5b\x5d-\x7e]*$")
"""?next= may name a dashboard path of printable ASCII: no CR/LF (a header), no backslash, no host."""


@bp.get("/login")
def login() -> Any:
    """The login form."""
    if operator_name():
        return redirect(_next_url())
    return _page(None, 200)


@bp.post("/login")
def login_post() -> Any:
    """Check an account's name and token (every attempt counted in the throttle) and start a session."""
    rt = runtime()
    name = (request.form.get("name") or "").strip()
    token = (request.form.get("token") or "").strip()
    if not csrf_ok():
        return _page("The form expired; please try again.", 400, name)
    if not (name == accounts.BOOTSTRAP or accounts.valid_name(name)):
        return _page("Enter your operator name (up to 40 characters).", 400, name)
    try:
        throttle.attempt("login")
    except throttle.Throttled as exc:
        page = _page(f"Too many failed logins: try again in {exc.retry_after_s} s.", 429, name)
        page.headers["Retry-After"] = str(exc.retry_after_s)
        return page
    account = accounts.verify_login(rt.redis, name, token, rt.config.operator_token)
    if account is None:
        throttle.refused("login")
        return _page("Wrong operator name or token.", 401, name)
    response = redirect(_next_url(), code=303)
    if not sessions.start(response, who=account.name, account=account.id, record=account.record):
        return _page("The account changed while logging in; please try again.", 409, name)
    audit_log.record(rt.redis, who=account.name, what="log in", poll=None)
    return response


@bp.post("/logout")
def logout() -> Any:
    """End the session (CSRF-checked, so no other site can log an operator out)."""
    who = operator_name()
    if who and not csrf_ok():
        return error_response(403, "missing or wrong CSRF token")
    response = redirect(url_for("dashboard.login"), code=303)
    if who:
        audit_log.record(runtime().redis, who=who, what="log out", poll=None)
    sessions.end(response)
    return response


def _page(error: str | None, status: int, name: str = "") -> Response:
    """The login form, with an error if there is one."""
    page = render_template("login.html", csrf=csrf_token(), next=_next_url(), error=error, name=name)
    return Response(page, status=status, mimetype="text/html")


def _next_url() -> str:
    """Where to go after logging in: a dashboard path from ?next=, else the dashboard."""
    wanted = request.values.get("next") or ""
    if SAFE_NEXT.match(wanted) and not wanted.startswith("/dashboard/login"):
        return wanted
    return url_for("dashboard.page")
