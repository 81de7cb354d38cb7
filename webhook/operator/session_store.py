"""Dashboard logins kept in Redis: the cookie holds a random id, Redis holds the login under its hash.

Logging out deletes the login, and removing or rotating an account deletes all of its logins, so
either takes effect on the next request (a signed cookie would have stayed valid until it expired).
Redis holds only SHA-256(session id): a dump of it gives no cookie that would log anyone in.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import WatchError

from webhook.store import keys

SESSION_LIFETIME_S = 12 * 3600
"""A login lasts this long from the moment it started, however active."""
SESSION_ID_BYTES = 32
WATCH_ATTEMPTS = 3
"""Tries to store a login while accounts are changing under it, before giving up."""


@dataclass(frozen=True)
class Login:
    """One operator's login, as stored."""

    who: str
    account: str
    csrf: str
    expires: float
    mark: str = ""
    """For the bootstrap account: a fingerprint of the token it logged in with (a new token ends it)."""


def session_sha(session_id: str) -> str:
    """What Redis stores instead of the session id."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def open_login(
    redis: Redis, *, who: str, account: str, record: str | None, mark: str = ""
) -> tuple[str, Login] | None:
    """Store a new login if the account is still as verified: (session id, login), else None.

    `record` is the account record the token was checked against (None for the bootstrap, which
    needs no account to exist). The check and the write are one transaction (WATCH), so a login
    racing an account's removal or rotation is either refused or ended by it.
    """
    session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
    sha = session_sha(session_id)
    login = Login(
        who=who,
        account=account,
        csrf=secrets.token_urlsafe(32),
        expires=time.time() + SESSION_LIFETIME_S,
        mark=mark,
    )
    with redis.pipeline(transaction=True) as pipe:
        for _ in range(WATCH_ATTEMPTS):
            try:
                pipe.watch(keys.OPERATORS)
                current = pipe.hget(keys.OPERATORS, who) if record is not None else None
                still_valid = pipe.hlen(keys.OPERATORS) == 0 if record is None else current == record.encode()
                if not still_valid:
                    return None
                pipe.multi()
                pipe.hset(
                    keys.operator_session(sha),
                    mapping={
                        "who": who,
                        "account": account,
                        "csrf": login.csrf,
                        "created": round(time.time(), 3),
                        "expires": round(login.expires, 3),
                        "mark": mark,
                    },
                )
                pipe.expire(keys.operator_session(sha), SESSION_LIFETIME_S)
                pipe.sadd(keys.operator_sessions(account), sha)
                pipe.expire(keys.operator_sessions(account), SESSION_LIFETIME_S)
                pipe.execute()
                return session_id, login
            except WatchError:
                continue
    return None


def load(redis: Redis, session_id: str) -> Login | None:
    """The login a cookie's session id names, if it exists and has not expired."""
    stored = redis.hgetall(keys.operator_session(session_sha(session_id)))
    try:
        login = Login(
            who=stored[b"who"].decode(),
            account=stored[b"account"].decode(),
            csrf=stored[b"csrf"].decode(),
            expires=float(stored[b"expires"]),
            mark=stored.get(b"mark", b"").decode(),
        )
    except (KeyError, ValueError, UnicodeDecodeError):
        return None
    return login if login.expires > time.time() and login.who and login.csrf else None


def close(redis: Redis, session_id: str, login: Login) -> None:
    """End one login (logout)."""
    sha = session_sha(session_id)
    pipe = redis.pipeline(transaction=True)
    pipe.delete(keys.operator_session(sha))
    pipe.srem(keys.operator_sessions(login.account), sha)
    pipe.execute()


def end_all(redis: Redis, account: str) -> int:
    """End every login of one account at once; returns how many there were.

    Only the members read are removed from the index, so a login made meanwhile (with a rotated
    account's new token) stays listed for the next removal.
    """
    index = keys.operator_sessions(account)
    shas = [sha.decode() for sha in redis.smembers(index)]
    if not shas:
        return 0
    pipe = redis.pipeline(transaction=True)
    pipe.delete(*(keys.operator_session(sha) for sha in shas))
    pipe.srem(index, *shas)
    ended, _ = pipe.execute()
    return int(ended)
