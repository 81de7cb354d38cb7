"""The operator's bearer token, compared in constant time."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any

from flask import request

from webhook.http_errors import error_response
from webhook.runtime import runtime


def is_operator(authorization: str | None, operator_token: str) -> bool:
    """Whether an Authorization header carries the operator token."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(token.strip().encode(), operator_token.encode())


def operator_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Answer 401 unless the request carries the operator token."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not is_operator(request.headers.get("Authorization"), runtime().config.operator_token):
            response, status = error_response(401, "operator token required")
            response.headers["WWW-Authenticate"] = 'Bearer realm="viber-vote"'
            return response, status
        return view(*args, **kwargs)

    return wrapped
