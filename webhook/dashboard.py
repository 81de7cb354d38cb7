"""The operators' live dashboard at /dashboard: results, pipeline health, open/close, exports.

A browser logs in with the operator token once and keeps a signed session cookie; API
clients send the token as a Bearer header instead. The session key is derived from the
operator token, so every gunicorn worker accepts every other's cookies, and rotating the
token logs everyone out. Every POST from a session carries its CSRF token.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface, SessionMixin
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from rq import Queue, Worker
from werkzeug.wrappers import Request

from webhook import audit_log, keys, metrics
from webhook.http_errors import error_response
from webhook.kick import Stage
from webhook.operator_auth import is_operator
from webhook.phones import ContactRefusal
from webhook.polls import Poll, PollStatus
from webhook.runtime import EXTENSION, Runtime, runtime

log = logging.getLogger(__name__)
bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

SESSION_KEY_MESSAGE = b"viber-vote dashboard session v1"
SESSION_PATH = "/dashboard"
SESSION_LIFETIME = timedelta(hours=12)
"""A login lasts this long from the login, however active; the signed cookie's age is checked."""
INSECURE_COOKIE_ENV = "DASHBOARD_INSECURE_COOKIE"
"""Set to 1 to send the session cookie over plain http (a local run without TLS)."""
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
OPERATOR_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,40}$")
CHART_MINUTES = 60
AUDIT_SHOWN = 10
REJECT_REASONS = ("bad_signature", "bad_request", "stale")
REJECTED_FAMILY = metrics.REJECTED.describe()[0].name
STATUS_ACTIONS: dict[str, tuple[PollStatus | None, str]] = {
    "open": (PollStatus.OPEN, "open"),
    "closed": (PollStatus.CLOSED, "close"),
    "schedule": (None, "follow schedule"),
}
"""Requested status -> (what set_status gets, what the audit log says)."""
EXPORT_KINDS = ("results", "ballots", "receipts")
EXPORT_FORMATS = ("csv", "json")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


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


def init_app(app: Flask, operator_token: str) -> None:
    """Session settings, the dashboard blueprint, and rq-dashboard under the same login."""
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
    app.register_blueprint(bp)
    mount_rq_dashboard(app)


def mount_rq_dashboard(app: Flask) -> None:
    """Serve rq-dashboard at /dashboard/rq, for logged-in operators only."""
    from rq_dashboard.web import blueprint as rq_blueprint
    from rq_dashboard.web import setup_rq_connection

    app.config["RQ_DASHBOARD_REDIS_URL"] = runtime_of(app).config.redis_url
    setup_rq_connection(app)
    app.register_blueprint(rq_blueprint, url_prefix="/dashboard/rq")

    # Scoped to rq-dashboard's blueprint (Flask keys these lists by blueprint name), so the
    # webhook and every other route do not run them. rq_blueprint is shared by every app, so
    # the hooks are attached to this app rather than to the blueprint object.
    def _guard_rq_dashboard() -> Any:
        if _bearer_ok():
            return None
        if not operator_name():
            if request.method == "GET" and not request.path.endswith(".json"):
                return redirect(url_for("dashboard.login", next=request.full_path))
            return _unauthorised()
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            # rq-dashboard's own pages POST with jQuery, which adds X-Requested-With; a
            # cross-site form cannot set that header, and the cookie is SameSite=Strict.
            if request.headers.get("X-Requested-With") != "XMLHttpRequest" or not _same_origin():
                return error_response(403, "cross-site request refused")
        elif request.endpoint == "rq_dashboard.requeue_all":
            return error_response(405, "requeue with POST")
        return None

    def _rq_dashboard_headers(response: Response) -> Response:
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    app.before_request_funcs.setdefault(rq_blueprint.name, []).append(_guard_rq_dashboard)
    app.after_request_funcs.setdefault(rq_blueprint.name, []).append(_rq_dashboard_headers)


def runtime_of(app: Flask) -> Runtime:
    """The runtime create_app built for this app."""
    return app.extensions[EXTENSION]


def operator_name() -> str | None:
    """The logged-in operator's name from the session, if the login is still valid."""
    who = session.get("who")
    return who if isinstance(who, str) and who else None


def _bearer_ok() -> bool:
    """Whether the request carries the operator token as a Bearer header."""
    return is_operator(request.headers.get("Authorization"), runtime().config.operator_token)


def _same_origin() -> bool:
    """Whether the request's Origin (if the browser sent one) names this host.

    Only the host is compared: behind a TLS-terminating proxy the app sees http, the browser https.
    """
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


def _unauthorised() -> tuple[Response, int]:
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


def _csrf_ok() -> bool:
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
        if _bearer_ok():
            return view(*args, who="api", **kwargs)
        who = operator_name()
        if not who:
            return _unauthorised()
        if request.method == "POST" and not _csrf_ok():
            return error_response(403, "missing or wrong CSRF token")
        return view(*args, who=who, **kwargs)

    return wrapped


@bp.after_request
def _headers(response: Response) -> Response:
    """Never cache operator pages; lock down what they may load."""
    response.headers["Cache-Control"] = "no-store"
    response.headers.update(SECURITY_HEADERS)
    return response


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
    if not _csrf_ok():
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
    if who and not _csrf_ok():
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


@bp.get("/")
@page_login_required
def page() -> Any:
    """The dashboard page; its script fills it from /dashboard/api/state every second."""
    rt = runtime()
    poll = _poll(rt)
    return render_template(
        "dashboard.html",
        poll=poll,
        polls=rt.polls.polls,
        who=operator_name(),
        csrf=csrf_token(),
        export_kinds=EXPORT_KINDS,
        export_formats=EXPORT_FORMATS,
    )


@bp.get("/api/state")
@api_auth_required
def state(who: str) -> Any:
    """Everything the dashboard shows, for one poll (?poll=ID, default the current poll)."""
    rt = runtime()
    return jsonify(dashboard_state(rt, _poll(rt), time.time()))


@bp.post("/api/polls/<poll_id>/status")
@api_auth_required
def set_status(poll_id: str, who: str) -> Any:
    """Open or close a poll by hand, or hand it back to its schedule; audit-logged."""
    rt = runtime()
    poll = rt.polls.get(poll_id)
    body = request.get_json(silent=True) if request.is_json else None
    wanted = (body or {}).get("status") if isinstance(body, dict) else request.form.get("status")
    if wanted not in STATUS_ACTIONS:
        return error_response(400, f"status must be one of {', '.join(STATUS_ACTIONS)}")
    status, what = STATUS_ACTIONS[wanted]
    rt.ballot_box.set_status(poll, status)
    audit_log.record(rt.redis, who=who, what=what, poll=poll.id)
    log.info("operator %r: %s poll %s", who, what, poll.id)
    if request.is_json or request.accept_mimetypes.best == "application/json" or who == "api":
        return jsonify(dashboard_state(rt, poll, time.time()))
    return redirect(url_for("dashboard.page", poll=poll.id), code=303)


@bp.get("/export/<poll_id>/<kind>.<fmt>")
@api_auth_required
def export(poll_id: str, kind: str, fmt: str, who: str) -> Any:
    """Download a poll's results, anonymous ballot ledger or receipt codes as CSV or JSON."""
    if kind not in EXPORT_KINDS or fmt not in EXPORT_FORMATS:
        abort(404)
    try:
        from webhook import exports
    except ImportError:
        return error_response(501, "exports are not available in this version")
    rt = runtime()
    poll = rt.polls.get(poll_id)
    rows: list[Any]
    if kind == "results":
        rows = exports.results_rows(rt, poll)
    elif kind == "ballots":
        rows = exports.ballot_rows(rt.redis, poll)
    else:
        rows = exports.receipt_codes(rt.redis, poll)
    body, mimetype = exports.render(rows, fmt)
    audit_log.record(rt.redis, who=who, what=f"export {kind} {fmt}", poll=poll.id)
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{poll.id}-{kind}.{fmt}"'
    return response


def _poll(rt: Runtime) -> Poll:
    """The poll named by ?poll=, else the current one (UnknownPoll answers 404)."""
    poll_id = request.args.get("poll")
    return rt.polls.get(poll_id) if poll_id else rt.polls.current(time.time())


def rejected_callbacks() -> dict[str, int]:
    """Callbacks refused before any vote logic, by reason, summed over every web process.

    Under gunicorn each worker has its own counters in PROMETHEUS_MULTIPROC_DIR; reading
    them through a MultiProcessCollector sums them, where REJECTED alone is this process's.
    """
    totals = dict.fromkeys(REJECT_REASONS, 0)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        families = registry.collect()
    else:
        families = metrics.REJECTED.collect()
    for family in families:
        if family.name != REJECTED_FAMILY:
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                reason = sample.labels.get("reason", "")
                totals[reason] = totals.get(reason, 0) + int(sample.value)
    return totals


def dashboard_state(rt: Runtime, poll: Poll, now: float) -> dict[str, Any]:
    """The JSON the dashboard renders: poll, results, votes per minute, pipeline, audit."""
    redis = rt.redis
    status = rt.ballot_box.status(poll, now)
    counts = rt.ballot_box.counts(poll)
    total = sum(counts.values())
    this_minute = int(now) // 60
    minutes = list(range(this_minute - CHART_MINUTES + 1, this_minute + 1))
    pipe = redis.pipeline(transaction=False)
    pipe.hmget(keys.minutes(poll.id), minutes)
    pipe.hgetall(keys.STATS)
    pipe.xlen(keys.VOTES_STREAM)
    pipe.xlen(keys.OUTBOX_STREAM)
    pipe.zcard(keys.OUTBOX_RETRY)
    pipe.llen(keys.OUTBOX_DEAD)
    per_minute, raw_stats, votes_queued, outbox, retries, dead = pipe.execute()
    stats = {name.decode(): int(value) for name, value in raw_stats.items()}
    rejected = rejected_callbacks()
    jobs = {stage.value: Queue(stage.value, connection=redis).count for stage in Stage}
    return {
        "now": now,
        "poll": {
            "id": poll.id,
            "question": poll.question,
            "status": status.value,
            "results_policy": poll.results.value,
            "opens_at": poll.opens_at,
            "closes_at": poll.closes_at,
            "closes_in_s": _seconds_until(poll.closes_at, now) if status is PollStatus.OPEN else None,
            "opens_in_s": _seconds_until(poll.opens_at, now) if status is PollStatus.NOT_OPEN else None,
        },
        "total": total,
        "options": [
            {
                "id": option.id,
                "label": option.label,
                "votes": counts[option.id],
                "percent": round(100 * counts[option.id] / total, 1) if total else 0.0,
            }
            for option in poll.options
        ],
        "minutes": [[minute, int(votes or 0)] for minute, votes in zip(minutes, per_minute, strict=True)],
        "pipeline": {
            "duplicates_rejected": stats.get("vote_duplicate", 0),
            "invalid_signatures": rejected["bad_signature"],
            "rejected": rejected,
            "votes_queued": votes_queued,
            "jobs_queued": jobs,
            "queue_depth": votes_queued + sum(jobs.values()),
            "confirmations_pending": outbox + retries,
            "confirmations_retrying": retries,
            "dead_letters": dead,
            "workers": Worker.count(connection=redis),
        },
        "contacts_refused": {
            reason.value: stats.get(keys.refused_contact_stat(reason.value), 0) for reason in ContactRefusal
        },
        "stats": stats,
        "audit": audit_log.recent(redis, AUDIT_SHOWN),
    }


def _seconds_until(when: float | None, now: float) -> int | None:
    """Whole seconds from now to a time, or None when there is no such time ahead."""
    if when is None or when <= now:
        return None
    return int(when - now)
