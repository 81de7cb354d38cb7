"""Operator accounts: a name, and the scrypt hash of a token the service generated and showed once.

A token reads `vvop_<account id>_<secret>`. The account id is public and names the account, so
checking a Bearer token costs one scrypt at most, never one per account. A token that passed is
remembered in this process for VERIFIED_TTL_S under an HMAC of it (never the token itself), and
each use still reads the account's record from Redis: a removed or rotated account is refused at
once, and /metrics scraped every few seconds costs two HGETs instead of a scrypt.

The shared OPERATOR_TOKEN is the bootstrap: it is the operator "bootstrap" only while no account
exists; adding the first account retires it and ends its logins.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import WatchError

from webhook.operator import session_store
from webhook.store import keys

TOKEN_PREFIX = "vvop"
ACCOUNT_ID_BYTES = 6
TOKEN_SECRET_BYTES = 32
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
"""16 MiB and about 0.05-0.1 s per check: a leaked Redis dump cannot be turned back into tokens."""
SCRYPT_MAXMEM_BYTES = 64 * 1024 * 1024
SALT_BYTES = 16
HASH_BYTES = 32
KDF_SLOTS = 2
"""scrypt runs at once per process: a burst of wrong tokens cannot take every thread's memory and CPU."""
VERIFIED_TTL_S = 300
VERIFIED_MAX_ENTRIES = 256
BOOTSTRAP = "bootstrap"
NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,40}$")
"""Up to 40 characters, no control characters (the audit log keeps 40)."""

_kdf_slots = threading.BoundedSemaphore(KDF_SLOTS)
_verified_key = secrets.token_bytes(32)
_verified: dict[bytes, tuple[str, float]] = {}
"""HMAC(token) -> (the account record it matched, until when)."""
_verified_lock = threading.Lock()
_DUMMY_SALT = secrets.token_bytes(SALT_BYTES)


class AccountError(ValueError):
    """An account command that cannot be done (bad or taken name, no such account)."""


@dataclass(frozen=True)
class Account:
    """A verified operator."""

    name: str
    id: str
    record: str | None
    """The stored record the token matched; None for the bootstrap."""


BOOTSTRAP_ACCOUNT = Account(BOOTSTRAP, BOOTSTRAP, None)


def valid_name(name: str) -> bool:
    """Whether a name can be an account's: printable, trimmed, not the bootstrap's."""
    return bool(NAME.match(name)) and name == name.strip() and name.lower() != BOOTSTRAP


def _kdf(token: str, salt: bytes, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> bytes:
    """scrypt of a token, at most KDF_SLOTS at a time in this process."""
    with _kdf_slots:
        return hashlib.scrypt(
            token.encode(), salt=salt, n=n, r=r, p=p, maxmem=SCRYPT_MAXMEM_BYTES, dklen=HASH_BYTES
        )


def _new_record(account_id: str, token: str, created: float | None = None) -> str:
    """The stored form of an account: its id and the salted scrypt hash of its token."""
    salt = secrets.token_bytes(SALT_BYTES)
    now = round(time.time(), 3)
    return json.dumps(
        {
            "id": account_id,
            "kdf": "scrypt",
            "n": SCRYPT_N,
            "r": SCRYPT_R,
            "p": SCRYPT_P,
            "salt": base64.b64encode(salt).decode(),
            "hash": base64.b64encode(_kdf(token, salt)).decode(),
            "created": now if created is None else created,
            "changed": now,
        }
    )


def _parse(record: bytes | str | None) -> dict[str, Any] | None:
    """A stored record as a dict, or None if missing or unreadable."""
    if record is None:
        return None
    try:
        parsed = json.loads(record)
    except (ValueError, UnicodeDecodeError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _matches(record: dict[str, Any], token: str) -> bool:
    """Whether a token hashes to the record's hash (constant-time comparison)."""
    try:
        salt, expected = base64.b64decode(record["salt"]), base64.b64decode(record["hash"])
        actual = _kdf(token, salt, int(record["n"]), int(record["r"]), int(record["p"]))
    except (KeyError, TypeError, ValueError):
        return False
    return hmac.compare_digest(actual, expected)


def _new_token(account_id: str) -> str:
    """A fresh token for an account: its public id, then 256 random bits."""
    return f"{TOKEN_PREFIX}_{account_id}_{secrets.token_urlsafe(TOKEN_SECRET_BYTES)}"


def _account_id_of(token: str) -> str | None:
    """The account id a token carries, if it has the token shape."""
    prefix, _, rest = token.partition("_")
    account_id, _, secret = rest.partition("_")
    if prefix != TOKEN_PREFIX or not secret or not re.fullmatch(r"[0-9a-f]{12}", account_id):
        return None
    return account_id


def has_accounts(redis: Redis) -> bool:
    """Whether any operator account exists (then the bootstrap token is retired)."""
    return bool(redis.hlen(keys.OPERATORS))


def _bootstrap(redis: Redis, token: str, bootstrap_token: str) -> Account | None:
    """The bootstrap operator, if this is its token and no account exists yet."""
    if hmac.compare_digest(token.encode(), bootstrap_token.encode()) and not has_accounts(redis):
        return BOOTSTRAP_ACCOUNT
    return None


def verify_login(redis: Redis, name: str, token: str, bootstrap_token: str) -> Account | None:
    """The account a login form's name and token prove, or None."""
    if name == BOOTSTRAP:
        return _bootstrap(redis, token, bootstrap_token)
    raw = redis.hget(keys.OPERATORS, name) if valid_name(name) else None
    record = _parse(raw)
    if raw is None or record is None:
        _kdf(token, _DUMMY_SALT)  # the same time as a known name: names are not told apart
        return None
    if not _matches(record, token):
        return None
    return Account(name, str(record.get("id")), raw.decode())


def verify_bearer(redis: Redis, token: str, bootstrap_token: str) -> Account | None:
    """The account a Bearer token proves, or None; one scrypt at most, none while remembered."""
    account_id = _account_id_of(token)
    if account_id is None:
        return _bootstrap(redis, token, bootstrap_token)
    name_raw = redis.hget(keys.OPERATOR_IDS, account_id)
    raw = redis.hget(keys.OPERATORS, name_raw) if name_raw is not None else None
    record = _parse(raw)
    if name_raw is None or raw is None or record is None or record.get("id") != account_id:
        return None
    account = Account(name_raw.decode(), account_id, raw.decode())
    remembered = hmac.new(_verified_key, token.encode(), hashlib.sha256).digest()
    now = time.monotonic()
    with _verified_lock:
        seen = _verified.get(remembered)
    if seen is not None and seen[0] == account.record and seen[1] > now:
        return account
    if not _matches(record, token):
        return None
    with _verified_lock:
        if len(_verified) >= VERIFIED_MAX_ENTRIES:
            _verified.pop(next(iter(_verified)))  # the oldest: insertion order
        _verified[remembered] = (account.record, now + VERIFIED_TTL_S)
    return account


def add(redis: Redis, name: str) -> str:
    """Create an account; returns its token (shown once, stored only as a hash)."""
    if not valid_name(name):
        raise AccountError(
            f"{name!r} cannot be an operator name (1-40 printable characters, not {BOOTSTRAP!r})"
        )
    account_id = secrets.token_hex(ACCOUNT_ID_BYTES)
    token = _new_token(account_id)
    record = _new_record(account_id, token)
    with redis.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(keys.OPERATORS)
            if pipe.hexists(keys.OPERATORS, name):
                raise AccountError(f"operator {name!r} exists already (rotate its token instead)")
            pipe.multi()
            pipe.hset(keys.OPERATORS, name, record)
            pipe.hset(keys.OPERATOR_IDS, account_id, name)
            pipe.execute()
        except WatchError:
            raise AccountError("operator accounts changed meanwhile; try again") from None
    session_store.end_all(redis, BOOTSTRAP)  # the first account retires the bootstrap token
    return token


def _replace(redis: Redis, name: str, change: Callable[[Pipeline, dict[str, Any]], None]) -> dict[str, Any]:
    """Apply change(pipe, record) to an existing account in one transaction; returns the old record."""
    with redis.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(keys.OPERATORS)
            record = _parse(pipe.hget(keys.OPERATORS, name))
            if record is None:
                raise AccountError(f"no operator {name!r}")
            pipe.multi()
            change(pipe, record)
            pipe.execute()
        except WatchError:
            raise AccountError("operator accounts changed meanwhile; try again") from None
    return record


def remove(redis: Redis, name: str) -> int:
    """Delete an account; its token stops working and its logins end at once. Returns logins ended."""

    def delete(pipe: Pipeline, record: dict[str, Any]) -> None:
        pipe.hdel(keys.OPERATORS, name)
        pipe.hdel(keys.OPERATOR_IDS, str(record.get("id")))

    record = _replace(redis, name, delete)
    return session_store.end_all(redis, str(record.get("id")))


def rotate(redis: Redis, name: str) -> str:
    """Give an account a new token; the old one stops working and its logins end at once."""
    fresh: dict[str, str] = {}

    def renew(pipe: Pipeline, record: dict[str, Any]) -> None:
        account_id = str(record.get("id"))
        fresh["token"] = _new_token(account_id)
        pipe.hset(keys.OPERATORS, name, _new_record(account_id, fresh["token"], record.get("created")))

    record = _replace(redis, name, renew)
    session_store.end_all(redis, str(record.get("id")))
    return fresh["token"]


def listing(redis: Redis) -> list[dict[str, Any]]:
    """Every account: name, id, created and last changed (Unix seconds); never a hash."""
    rows = []
    for name, raw in sorted(redis.hgetall(keys.OPERATORS).items()):
        record = _parse(raw) or {}
        rows.append(
            {
                "name": name.decode(),
                "id": record.get("id"),
                "created": record.get("created"),
                "changed": record.get("changed"),
            }
        )
    return rows
