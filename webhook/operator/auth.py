"""Operators' Bearer tokens (an account's, or the bootstrap's while no account exists), throttled."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import Response, g, request

from webhook.http_errors import error_response
from webhook.operator import accounts, throttle
from webhook.runtime import runtime


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None for anything else."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def bearer_operator() -> str | None:
    """The operator the request's Bearer token proves, or None; raises throttle.Throttled.

    A request without a Bearer header is not a guess and costs nothing; one with a token is
    tested against the failure windows first, and counted there if the token is wrong.
    """
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        return None
    throttle.check("bearer")
    rt = runtime()
    account = accounts.verify_bearer(rt.redis, token, rt.config.operator_token)
    if account is None:
        throttle.failed("bearer")
        return None
    g.operator_via_bearer = account.name
    return account.name


def via_bearer() -> bool:
    """Whether this request was authorised by a Bearer token (an API client, not a browser)."""
    return bool(g.get("operator_via_bearer"))


def unauthorised(message: str = "operator login or token required") -> tuple[Response, int]:
    """401 with a Bearer challenge."""
    response, status = error_response(401, message)
    response.headers["WWW-Authenticate"] = 'Bearer realm="viber-vote"'
    return response, status


def operator_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Answer 401 unless the request carries an operator's Bearer token (429 while throttled)."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if bearer_operator() is None:
            return unauthorised("operator token required")
        return view(*args, **kwargs)

    return wrapped
