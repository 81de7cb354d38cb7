"""Operator endpoints: results, and health checks for the load balancer."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from webhook.core.results import poll_results
from webhook.http_errors import error_response
from webhook.operator import metrics
from webhook.operator.auth import operator_required
from webhook.runtime import runtime

bp = Blueprint("operator_api", __name__)


@bp.get("/api/results")
@operator_required
def results() -> Any:
    """Live counts of a poll (?poll=ID, default the current poll)."""
    rt = runtime()
    poll_id = request.args.get("poll")
    poll = rt.polls.get(poll_id) if poll_id else rt.polls.current(time.time())
    return jsonify(poll_results(rt.ballot_box, poll))


@bp.get("/metrics")
@operator_required
def metrics_page() -> Any:
    """Prometheus metrics (scrape with the operator token as bearer token)."""
    rt = runtime()
    return Response(metrics.render(rt.redis, rt.polls), mimetype=CONTENT_TYPE_LATEST)


@bp.get("/healthz")
def healthz() -> Any:
    """The process is up."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Any:
    """The process can reach Redis."""
    try:
        runtime().redis.ping()
    except RedisError:
        return error_response(503, "redis unreachable")
    return jsonify({"status": "ready"})
