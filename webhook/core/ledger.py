"""The ballot ledger: how a stored ballot is packed, recounts and receipt checks."""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis

from webhook.core.identity import RECEIPT_BITS
from webhook.core.polls import Poll
from webhook.store import keys
from webhook.store.streams import BadEntry, VoteEntry

EPOCH_S = 1577836800
"""Ballot minutes count from 2020-01-01T00:00Z, so a ballot packs into a 32-bit integer."""
OPTION_BITS = 6
SCAN_BATCH = 1000


def pack_ballot(option_index: int, accepted_at_s: int) -> int:
    """A ballot's stored value: the minute it was accepted, then its option index."""
    minute = max(0, (accepted_at_s - EPOCH_S) // 60)
    return minute << OPTION_BITS | option_index


def unpack_ballot(value: int) -> tuple[int, int]:
    """(option index, accepted-at Unix time rounded down to the minute) of a stored ballot."""
    return value & ((1 << OPTION_BITS) - 1), EPOCH_S + (value >> OPTION_BITS) * 60


@dataclass(frozen=True)
class Recount:
    """Ballots recounted from the ledger, next to the live counters."""

    poll_id: str
    recounted: dict[str, int]
    counters: dict[str, int]
    voters_claimed: int
    votes_pending: int
    accounts_claimed: int | None = None
    """Phone polls: messenger accounts claimed with the numbers (one each); None for other polls."""

    @property
    def matches(self) -> bool:
        """Counters equal the recount, every claimed voter has a ballot or a queued vote, and in a
        phone poll every number was claimed together with exactly one account."""
        ballots = sum(self.recounted.values())
        accounts_ok = self.accounts_claimed is None or self.accounts_claimed == self.voters_claimed
        return (
            self.recounted == self.counters
            and self.voters_claimed == ballots + self.votes_pending
            and accounts_ok
        )


def recount(redis: Redis, poll: Poll) -> Recount:
    """Recount every stored ballot of a poll and compare with its counters."""
    recounted = {option.id: 0 for option in poll.options}
    for _, values in _scan_hashes(redis, keys.ballots_pattern(poll.id)):
        for value in values.values():
            index, _ = unpack_ballot(int(value))
            option_id = poll.options[index].id if index < len(poll.options) else f"#{index}"
            recounted[option_id] = recounted.get(option_id, 0) + 1
    raw = redis.hgetall(keys.counts(poll.id))
    counters = {option.id: 0 for option in poll.options}
    counters.update({k.decode(): int(v) for k, v in raw.items()})
    claimed = sum(len(v) for _, v in _scan_hashes(redis, keys.voters_pattern(poll.id)))
    accounts = None
    if poll.require_phone:
        accounts = sum(len(v) for _, v in _scan_hashes(redis, keys.accounts_pattern(poll.id)))
    pending = _pending_votes(redis, poll.id)
    return Recount(poll.id, recounted, counters, claimed, pending, accounts)


def receipt_counted(redis: Redis, poll: Poll, number: int) -> bool:
    """Whether a ballot whose voter key starts with this receipt number is in the ledger."""
    bucket_bits = keys.BUCKET_BYTES * 8
    bucket_hex = (number >> (RECEIPT_BITS - bucket_bits)).to_bytes(keys.BUCKET_BYTES, "big").hex()
    rest_bits = RECEIPT_BITS - bucket_bits
    wanted = number & ((1 << rest_bits) - 1)
    for stored_field in redis.hkeys(keys.ballots_bucket(poll.id, bucket_hex)):
        if int.from_bytes(stored_field, "big") >> (len(stored_field) * 8 - rest_bits) == wanted:
            return True
    return False


def _scan_hashes(redis: Redis, pattern: str):  # type: ignore[no-untyped-def]
    """Yield (key, field map) of every hash matching a pattern, each once, read in pipelines."""
    found = sorted(set(redis.scan_iter(match=pattern, count=SCAN_BATCH, _type="hash")))
    for start in range(0, len(found), SCAN_BATCH):
        chunk = found[start : start + SCAN_BATCH]
        pipe = redis.pipeline(transaction=False)
        for key in chunk:
            pipe.hgetall(key)
        yield from zip(chunk, pipe.execute(), strict=True)


def _pending_votes(redis: Redis, poll_id: str) -> int:
    """Votes of this poll still queued for a tally worker."""
    pending = 0
    for _, fields in redis.xrange(keys.VOTES_STREAM):
        try:
            pending += VoteEntry.parse(fields).poll == poll_id
        except BadEntry:
            continue
    return pending
