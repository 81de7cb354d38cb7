"""The operators' live dashboard at /dashboard: results, pipeline health, open/close, exports."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, Response, abort, jsonify, redirect, render_template, request, url_for

from webhook.core.polls import Poll, PollStatus
from webhook.http_errors import error_response
from webhook.operator import exports, login, rq_view, throttle
from webhook.operator import journal as audit_log
from webhook.operator.auth import via_bearer
from webhook.operator.blueprint import bp
from webhook.operator.sessions import api_auth_required, csrf_token, operator_name, page_login_required
from webhook.operator.state import dashboard_state
from webhook.runtime import Runtime, runtime

log = logging.getLogger(__name__)

STATUS_ACTIONS: dict[str, tuple[PollStatus | None, str]] = {
    "open": (PollStatus.OPEN, "open"),
    "closed": (PollStatus.CLOSED, "close"),
    "schedule": (None, "follow schedule"),
}
"""Requested status -> (what set_status gets, what the audit log says)."""
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


@bp.after_request
def _headers(response: Response) -> Response:
    """Never cache operator pages; lock down what they may load."""
    response.headers["Cache-Control"] = "no-store"
    response.headers.update(SECURITY_HEADERS)
    return response


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
        export_kinds=exports.KINDS,
        export_formats=exports.FORMATS,
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
    if request.is_json or request.accept_mimetypes.best == "application/json" or via_bearer():
        return jsonify(dashboard_state(rt, poll, time.time()))
    return redirect(url_for("dashboard.page", poll=poll.id), code=303)


@bp.get("/export/<poll_id>/<kind>.<fmt>")
@api_auth_required
def export(poll_id: str, kind: str, fmt: str, who: str) -> Any:
    """Download a poll's results, anonymous ballot ledger or receipt codes as CSV or JSON."""
    if kind not in exports.KINDS or fmt not in exports.FORMATS:
        abort(404)
    rt = runtime()
    poll = rt.polls.get(poll_id)
    body, mimetype = exports.render(exports.rows_of(rt, poll, kind), fmt)
    audit_log.record(rt.redis, who=who, what=f"export {kind} {fmt}", poll=poll.id)
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{poll.id}-{kind}.{fmt}"'
    return response


def _poll(rt: Runtime) -> Poll:
    """The poll named by ?poll=, else the current one (UnknownPoll answers 404)."""
    poll_id = request.args.get("poll")
    return rt.polls.get(poll_id) if poll_id else rt.polls.current(time.time())


def init_app(app: Flask) -> None:
    """The failed-login throttle, the dashboard (login included), and rq-dashboard under the same login."""
    throttle.init_app(app)
    assert login.bp is bp  # the login views are registered with the dashboard's blueprint
    app.register_blueprint(bp)
    rq_view.mount_rq_dashboard(app)
