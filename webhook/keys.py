"""The Redis key schema: every key the service writes is named here.

Per poll (POLL is the poll id from the poll file):
  vv:poll:POLL:counts         HASH   option id -> votes counted (read with HGETALL)
  vv:poll:POLL:state          STRING "open" | "closed": an operator's override of the schedule
  vv:poll:POLL:minutes        HASH   Unix minute -> votes counted in it (the dashboard's chart)
  vv:poll:POLL:voters:HHHH    HASH   uniqueness claims: voter key bytes 2..11 -> message tag
  vv:poll:POLL:ballots:HHHH   HASH   stored ballots: voter key bytes 2..11 -> minute*64 + option
HHHH is the hex of the voter key's first two bytes (65,536 small hashes per poll, so
Redis keeps each in its compact listpack encoding).

Pipeline (shared by all polls):
  vv:votes                    STREAM accepted votes waiting for a tally worker (group "tally")
  vv:outbox                   STREAM replies waiting to be sent to Viber (group "send")
  vv:outbox:retry             ZSET   replies to send again, scored by due Unix time
  vv:outbox:dead              LIST   replies given up on, for an operator to replay
  vv:kick:tally, vv:kick:send STRING set while a drain job is queued or running
  vv:stats                    HASH   event counters: vote_duplicate, vote_retry, vote_closed,
                                     vote_not_open, reply_limited, send_sent, send_retry, ...
                                     (rejected callbacks are counted in Prometheus only: a
                                     refused request writes nothing to Redis)
  vv:seen:TOKEN               STRING a callback's message token, for an hour (dedupe)
  vv:rate:VOTERHEX            STRING replies triggered by one voter in the current window
  vv:phone:VOTERHEX           STRING the phone-number voter key a Viber voter verified (30 days)
  vv:asked:VOTERHEX           STRING set when the bot asked a voter for their phone (1 hour)
VOTERHEX is the hex of a keyed hash of the Viber id, never the id itself.
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
STATS = f"{PREFIX}:stats"


def counts(poll_id: str) -> str:
    """Per-option vote counters of a poll."""
    return f"{PREFIX}:poll:{poll_id}:counts"


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


def seen(message_token: int) -> str:
    """Marks a callback's message token as handled."""
    return f"{PREFIX}:seen:{message_token}"


def rate(voter: bytes) -> str:
    """Counts the replies one voter triggered in the current window."""
    return f"{PREFIX}:rate:{voter.hex()}"


def phone_link(viber_voter: bytes) -> str:
    """The phone-number identity a Viber voter verified."""
    return f"{PREFIX}:phone:{viber_voter.hex()}"


def phone_asked(viber_voter: bytes) -> str:
    """Marks that the bot asked this voter to share their phone number."""
    return f"{PREFIX}:asked:{viber_voter.hex()}"
