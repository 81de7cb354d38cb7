"""The Redis key schema: every key the service writes is named here.

Per poll (POLL is the poll id from the poll file):
  vv:poll:POLL:counts         HASH   option id -> votes counted (read with HGETALL)
  vv:poll:POLL:state          STRING "open" | "closed": an operator's override of the schedule
  vv:poll:POLL:minutes        HASH   Unix minute -> votes counted in it (the dashboard's chart)
  vv:poll:POLL:channels       HASH   channel (viber, telegram) -> votes counted from it
  vv:poll:POLL:voters:HHHH    HASH   uniqueness claims: voter key bytes 2..11 -> message tag
  vv:poll:POLL:ballots:HHHH   HASH   stored ballots: voter key bytes 2..11 -> minute*64 + option
  vv:poll:POLL:accounts:HHHH  HASH   phone polls: the messenger accounts that voted, claimed with
                                     the number (account key bytes 2..11 -> message tag)
HHHH is the hex of the voter key's first two bytes (65,536 small hashes per poll, so
Redis keeps each in its compact listpack encoding).

Pipeline (shared by all polls):
  vv:votes                    STREAM accepted votes waiting for a tally worker (group "tally");
                                     entry formats of both streams: webhook/store/streams.py
  vv:outbox                   STREAM replies waiting to be sent (group "send"), any channel
  vv:outbox:retry             ZSET   replies to send again, scored by due Unix time
  vv:outbox:dead              LIST   replies given up on, for an operator to replay
  vv:kick:tally, vv:kick:send STRING set while a drain job is queued or running
  vv:limits:telegram/...      LIST   Telegram send windows (limits' moving window): all chats, and
                                     per chat under a keyed hash of the chat id
  vv:stats                    HASH   event counters: vote_duplicate, vote_retry, vote_closed,
                                     vote_not_open, reply_limited, send_sent, send_retry,
                                     contact_refused:CHANNEL:REASON, bind_bound, bind_same,
                                     bind_other_number, bind_bound_elsewhere, ...
                                     (rejected callbacks are counted in Prometheus only: a
                                     refused request writes nothing to Redis)
  vv:seen:CH:TOKEN            STRING a callback's message token (Telegram: update id) while the
                                     channel may still deliver it again (dedupe)
  vv:rate:VOTERHEX            STRING replies triggered by one voter in the current window
  vv:bind:account:CH:HHHH     HASH   phone bindings, for good: account key bytes 2..11 -> the
                                     phone key the account verified (CH: the messenger)
  vv:bind:phone:CH:HHHH       HASH   the same bindings the other way: phone key bytes 2..11 ->
                                     the one account of that messenger that holds the number
  vv:phone:VOTERHEX           STRING a phone link made by an older version (30-day TTL): read as
                                     the account's first binding, moved into vv:bind:account:...
VOTERHEX is the hex of a keyed hash of the Viber id, never the id itself.

Operators (shared by all polls; webhook/operator/accounts.py, session_store.py, throttle.py):
  vv:operators                HASH   operator name -> account record (JSON: account id, scrypt
                                     parameters, salt and hash of the token; never the token)
  vv:operators:ids            HASH   account id (the public part of its token) -> operator name
  vv:opsession:SHA            HASH   one dashboard login: who, account, csrf, created, expires;
                                     expires with the login (TTL). SHA is the SHA-256 of the
                                     cookie's session id: a dump of Redis holds no usable cookie
  vv:opsessions:ACCOUNT       SET    the SHAs of one account's logins, so that removing or
                                     rotating it (or adding the first account, for "bootstrap")
                                     ends them all at once
  vv:throttle:LIMITER/auth-KIND/client/CLIENT/..., vv:throttle:LIMITER/auth-KIND/all/...
                              LIST   moving windows (failure times) kept by the `limits` library:
                                     failed logins / Bearer tokens (KIND) per client (CLIENT: a
                                     keyed hash of its address, never the address) and in total
  vv:audit                    LIST   the operators' audit log (webhook/operator/journal.py)
"""

from __future__ import annotations

PREFIX = "vv"
BUCKET_BYTES = 2

VOTES_STREAM = f"{PREFIX}:votes"
TALLY_GROUP = "tally"
OUTBOX_STREAM = f"{PREFIX}:outbox"
SEND_GROUP = "send"
OUTBOX_RETRY = f"{PREFIX}:outbox:retry"
OUTBOX_DEAD = f"{PREFIX}:outbox:dead"
KICK_TALLY = f"{PREFIX}:kick:tally"
KICK_SEND = f"{PREFIX}:kick:send"
TELEGRAM_LIMITS = f"{PREFIX}:limits:telegram"
"""Prefix of the `limits` library's moving windows for Telegram sends (per chat: a keyed hash)."""
STATS = f"{PREFIX}:stats"
OPERATORS = f"{PREFIX}:operators"
OPERATOR_IDS = f"{PREFIX}:operators:ids"
THROTTLE_PREFIX = f"{PREFIX}:throttle"
"""The key prefix the `limits` library gets for its windows."""


REFUSED_CONTACT_STAT_PREFIX = "contact_refused:"


def refused_contact_stat(channel: str, reason: str) -> str:
    """The vv:stats counter of one channel's contacts refused for one reason (a ContactRefusal value)."""
    return f"{REFUSED_CONTACT_STAT_PREFIX}{channel}:{reason}"


def counts(poll_id: str) -> str:
    """Per-option vote counters of a poll."""
    return f"{PREFIX}:poll:{poll_id}:counts"


def channel_counts(poll_id: str) -> str:
    """Votes counted per channel of a poll."""
    return f"{PREFIX}:poll:{poll_id}:channels"


def minutes(poll_id: str) -> str:
    """Votes counted per Unix minute of a poll."""
    return f"{PREFIX}:poll:{poll_id}:minutes"


def state(poll_id: str) -> str:
    """An operator's open/close override of a poll."""
    return f"{PREFIX}:poll:{poll_id}:state"


def bucket(voter: bytes) -> str:
    """Hex of the bucket a voter key falls in."""
    return voter[:BUCKET_BYTES].hex()


def field(voter: bytes) -> bytes:
    """The part of a voter key stored inside its bucket."""
    return voter[BUCKET_BYTES:]


def voters(poll_id: str, voter: bytes) -> str:
    """The uniqueness-claim bucket holding this voter."""
    return f"{PREFIX}:poll:{poll_id}:voters:{bucket(voter)}"


def ballots(poll_id: str, voter: bytes) -> str:
    """The ballot bucket holding this voter's ballot."""
    return f"{PREFIX}:poll:{poll_id}:ballots:{bucket(voter)}"


def ballots_bucket(poll_id: str, bucket_hex: str) -> str:
    """A ballot bucket by its hex name."""
    return f"{PREFIX}:poll:{poll_id}:ballots:{bucket_hex}"


def ballots_pattern(poll_id: str) -> str:
    """SCAN pattern matching every ballot bucket of a poll."""
    return f"{PREFIX}:poll:{poll_id}:ballots:*"


def voters_pattern(poll_id: str) -> str:
    """SCAN pattern matching every claim bucket of a poll."""
    return f"{PREFIX}:poll:{poll_id}:voters:*"


def accounts(poll_id: str, account: bytes) -> str:
    """The bucket of a phone poll's account claims holding this account."""
    return f"{PREFIX}:poll:{poll_id}:accounts:{bucket(account)}"


def accounts_pattern(poll_id: str) -> str:
    """SCAN pattern matching every account-claim bucket of a poll."""
    return f"{PREFIX}:poll:{poll_id}:accounts:*"


def account_binding(channel: str, account: bytes) -> str:
    """The bucket holding the phone key an account of this messenger is bound to."""
    return f"{PREFIX}:bind:account:{channel}:{bucket(account)}"


def phone_binding(channel: str, phone: bytes) -> str:
    """The bucket holding the account of this messenger a phone key is bound to."""
    return f"{PREFIX}:bind:phone:{channel}:{bucket(phone)}"


def seen(channel: str, message_token: int) -> str:
    """Marks a channel's callback (by its message token or update id) as handled."""
    return f"{PREFIX}:seen:{channel}:{message_token}"


def rate(voter: bytes) -> str:
    """Counts the replies one voter triggered in the current window."""
    return f"{PREFIX}:rate:{voter.hex()}"


def legacy_phone_link(viber_voter: bytes) -> str:
    """A phone link an older version made (STRING, 30-day TTL): the account's first binding."""
    return f"{PREFIX}:phone:{viber_voter.hex()}"


def operator_session(session_sha: str) -> str:
    """One dashboard login, by the SHA-256 (hex) of its cookie's session id."""
    return f"{PREFIX}:opsession:{session_sha}"


def operator_sessions(account_id: str) -> str:
    """The set of one operator account's logins (session SHAs)."""
    return f"{PREFIX}:opsessions:{account_id}"
