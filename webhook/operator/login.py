"""The dashboard's login and logout: the operator token checked in constant time, a session started."""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from typing import Any

from flask import redirect, render_template, request, session, url_for

from webhook.http_errors import error_response
from webhook.operator import journal as audit_log
from webhook.operator.blueprint import bp
from webhook.operator.sessions import csrf_ok, csrf_token, operator_name
from webhook.runtime import runtime

log = logging.getLogger(__name__)

OPERATOR_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,40}$")


@bp.get("/login")
def login() -> Any:
    """The login form."""
    if operator_name():
        return redirect(_next_url())
    return render_template("login.html", csrf=csrf_token(), next=_next_url(), error=None)


@bp.post("/login")
def login_post() -> Any:
    """Check the operator token in constant time and start a session."""
    rt = runtime()
    name = (request.form.get("name") or "").strip()
    token = request.form.get("token") or ""
    error, status = None, 200
    if not csrf_ok():
        error, status = "The form expired; please try again.", 400
    elif not OPERATOR_NAME.match(name):
        error, status = "Enter your name (up to 40 characters).", 400
    elif not hmac.compare_digest(token.encode(), rt.config.operator_token.encode()):
        log.warning("dashboard login refused (wrong token) from %s", request.remote_addr)
        error, status = "Wrong operator token.", 401
    if error is not None:
        page = render_template("login.html", csrf=csrf_token(), next=_next_url(), error=error, name=name)
        return page, status
    session.clear()
    session.permanent = True
    session["who"] = name
    session["csrf"] = secrets.token_urlsafe(32)
    audit_log.record(rt.redis, who=name, what="log in", poll=None)
    return redirect(_next_url(), code=303)


@bp.post("/logout")
def logout() -> Any:
    """End the session (CSRF-checked, so no other site can log an operator out)."""
    who = operator_name()
    if who and not csrf_ok():
        return error_response(403, "missing or wrong CSRF token")
    if who:
        audit_log.record(runtime().redis, who=who, what="log out", poll=None)
    session.clear()
    return redirect(url_for("dashboard.login"), code=303)


def _next_url() -> str:
    """Where to go after logging in: a dashboard path from ?next=, else the dashboard."""
    wanted = request.values.get("next") or ""
    if wanted.startswith("/dashboard/") and "\\" not in wanted and not wanted.startswith("/dashboard/login"):
        return wanted
    return url_for("dashboard.page")
