"""Every HTTP error as a small JSON body, from one helper."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

from webhook.core.errors import BadCallback, UnknownPoll

log = logging.getLogger(__name__)


def error_response(status: int, message: str) -> tuple[Response, int]:
    """A JSON error body with its status code."""
    return jsonify({"error": message}), status


def init_app(app: Flask) -> None:
    """Register the JSON error handlers."""

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> tuple[Response, int]:
        return error_response(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(BadCallback)
    def _bad_callback(exc: BadCallback) -> tuple[Response, int]:
        return error_response(400, f"bad callback: {exc}")

    @app.errorhandler(UnknownPoll)
    def _unknown_poll(exc: UnknownPoll) -> tuple[Response, int]:
        return error_response(404, f"no poll {exc}")

    @app.errorhandler(RedisError)
    def _redis_down(exc: RedisError) -> tuple[Response, int]:
        log.warning("redis unavailable: %s", type(exc).__name__)
        return error_response(503, "storage unavailable, try again")
