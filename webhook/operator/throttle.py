"""Failed operator logins and Bearer tokens, throttled per client and in total (429 + Retry-After).

The windows live in the service's Redis, kept by `limits` (Flask-Limiter's engine), so every
gunicorn worker and every web machine counts together. Only a request that presents a credential
comes here (one Redis call per window to test them, one more per window to count a failure): the
webhooks and the public page never do, and a logged-in dashboard's polling does not either.
A client over its limit is refused before its credential is even checked, so a right guess then
looks the same as a wrong one.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import time

from flask import Flask, Response, current_app, request
from limits import RateLimitItem, parse
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from webhook.http_errors import error_response
from webhook.runtime import EXTENSION as RUNTIME
from webhook.runtime import runtime
from webhook.store import keys

log = logging.getLogger(__name__)

PER_CLIENT = parse("10 per 5 minutes")
"""Failures one client (an address; an IPv6 /64) may make per kind before it waits."""
IN_TOTAL = parse("100 per 5 minutes")
"""Failures from all clients together per kind: bounds a botnet's guessing, and its scrypt CPU."""
KINDS = ("login", "bearer")
EXTENSION = "viber_vote_throttle"
CLIENT_KEY_MESSAGE = b"viber-vote throttle client v1"


class Throttled(Exception):
    """Too many failures: come back after retry_after_s."""

    def __init__(self, kind: str, retry_after_s: int) -> None:
        """Remember which kind and how long to wait."""
        super().__init__(f"too many failed {kind} attempts")
        self.kind = kind
        self.retry_after_s = retry_after_s


def init_app(app: Flask) -> None:
    """One limiter per app on the service's own Redis connection pool; 429 for Throttled."""
    # The storage gets the pool of the connection webhook/store/connection.py made (URL or
    # Sentinel alike); the URI only tells `limits` it is Redis and is never dialled.
    pool = app.extensions[RUNTIME].redis.connection_pool
    storage = RedisStorage("redis://", connection_pool=pool, key_prefix=keys.THROTTLE_PREFIX)
    app.extensions[EXTENSION] = MovingWindowRateLimiter(storage)

    @app.errorhandler(Throttled)
    def _throttled(exc: Throttled) -> tuple[Response, int]:
        return too_many(exc)


def too_many(exc: Throttled) -> tuple[Response, int]:
    """429 with Retry-After, as JSON."""
    response, status = error_response(429, f"{exc}; try again in {exc.retry_after_s} s")
    response.headers["Retry-After"] = str(exc.retry_after_s)
    return response, status


def client() -> str:
    """The client, as a keyed hash of its address (IPv6: its /64, which one subscriber holds)."""
    address = request.remote_addr or "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        network = address
    else:
        if ip.version == 6 and ip.ipv4_mapped is None:
            network = str(ipaddress.ip_network(f"{ip}/64", strict=False))
        else:
            network = str(getattr(ip, "ipv4_mapped", None) or ip)
    key = hmac.new(runtime().config.voter_id_secret.encode(), CLIENT_KEY_MESSAGE, hashlib.sha256).digest()
    return hmac.new(key, network.encode(), hashlib.sha256).hexdigest()[:24]


def _windows(kind: str) -> list[tuple[RateLimitItem, tuple[str, ...]]]:
    """The windows a failure of this kind counts in: this client's, and everyone's."""
    return [(PER_CLIENT, (f"auth-{kind}", "client", client())), (IN_TOTAL, (f"auth-{kind}", "all"))]


def check(kind: str) -> None:
    """Raise Throttled if this client, or everyone together, failed too often lately."""
    limiter: MovingWindowRateLimiter = current_app.extensions[EXTENSION]
    for item, identifiers in _windows(kind):
        if not limiter.test(item, *identifiers):
            reset_at = limiter.get_window_stats(item, *identifiers).reset_time
            raise Throttled(kind, max(1, math.ceil(reset_at - time.time())))


def attempt(kind: str) -> None:
    """Count an attempt before its token is checked; raise Throttled past the limit.

    Counting first (not after a failure) keeps a burst of simultaneous attempts from one client
    within the limit: the logins, where a success costs a slot too (humans log in rarely).
    """
    limiter: MovingWindowRateLimiter = current_app.extensions[EXTENSION]
    for item, identifiers in _windows(kind):
        if not limiter.hit(item, *identifiers):
            reset_at = limiter.get_window_stats(item, *identifiers).reset_time
            raise Throttled(kind, max(1, math.ceil(reset_at - time.time())))


def refused(kind: str) -> None:
    """Log a refused attempt (already counted by attempt())."""
    log.warning("operator %s refused (wrong name or token); client %s", kind, client()[:8])


def failed(kind: str) -> None:
    """Count one failure of this kind, for this client and in total."""
    limiter: MovingWindowRateLimiter = current_app.extensions[EXTENSION]
    for item, identifiers in _windows(kind):
        limiter.hit(item, *identifiers)
    log.warning("operator %s refused (wrong name or token); client %s", kind, client()[:8])
