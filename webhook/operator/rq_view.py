"""RQ's own dashboard (rq-dashboard) at /dashboard/rq, behind the operator login."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, abort, redirect, request, url_for

from webhook.http_errors import error_response
from webhook.operator.auth import bearer_operator, unauthorised
from webhook.operator.sessions import SAFE_METHODS, operator_name, same_origin
from webhook.runtime import EXTENSION, Runtime, runtime

INSTANCE_LABEL = "the service's Redis"
"""What rq-dashboard's instance list shows (it would show a URL)."""


def mount_rq_dashboard(app: Flask) -> None:
    """Serve rq-dashboard at /dashboard/rq, for logged-in operators only."""
    from rq_dashboard.web import blueprint as rq_blueprint
    from rq_dashboard.web import push_rq_connection

    # rq-dashboard reads the connection from app.redis_conn: the service's own one (URL or
    # Sentinel alike), never a second connection of its own made from a URL setting.
    app.redis_conn = runtime_of(app).redis  # type: ignore[attr-defined]
    app.config["RQ_DASHBOARD_REDIS_URL"] = (INSTANCE_LABEL,)
    app.register_blueprint(rq_blueprint, url_prefix="/dashboard/rq")

    # Scoped to rq-dashboard's blueprint (Flask keys these lists by blueprint name), so the
    # webhook and every other route do not run them. rq_blueprint is shared by every app, so
    # the hooks are attached to this app rather than to the blueprint object.
    def _guard_rq_dashboard() -> Any:
        if bearer_operator() is not None:
            if request.method not in SAFE_METHODS:  # a token reads; emptying a queue needs a login
                return error_response(403, "a token only reads: log in to the dashboard to change")
            return None
        if not operator_name():
            if request.method == "GET" and not request.path.endswith(".json"):
                return redirect(url_for("dashboard.login", next=request.full_path))
            return unauthorised()
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            # rq-dashboard's own pages POST with jQuery, which adds X-Requested-With; a
            # cross-site form cannot set that header, and the cookie is SameSite=Strict.
            if request.headers.get("X-Requested-With") != "XMLHttpRequest" or not same_origin():
                return error_response(403, "cross-site request refused")
        elif request.endpoint == "rq_dashboard.requeue_all":
            return error_response(405, "requeue with POST")
        return None

    def _rq_dashboard_headers(response: Response) -> Response:
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    def _service_connection() -> Any:
        instance = (request.view_args or {}).get("instance_number")
        if instance not in (None, 0):
            abort(404)  # one Redis: rq-dashboard's other instance numbers do not exist here
        app.redis_conn = runtime().redis  # type: ignore[attr-defined]
        return None

    # The login guard runs first: rq-dashboard's own hook, which would connect by URL (and
    # fail with a 500 on an unknown instance), is replaced by the service's connection.
    hooks = app.before_request_funcs.setdefault(rq_blueprint.name, [])
    hooks[:] = [_guard_rq_dashboard, *(h for h in hooks if h is not push_rq_connection), _service_connection]
    app.after_request_funcs.setdefault(rq_blueprint.name, []).append(_rq_dashboard_headers)


def runtime_of(app: Flask) -> Runtime:
    """The runtime create_app built for this app."""
    return app.extensions[EXTENSION]
