"""Event counters the pipeline keeps in Redis (vv:stats), read the way operators want them."""

from __future__ import annotations

from redis import Redis

from webhook.core.phones import ContactRefusal
from webhook.store import keys


def read_stats(redis: Redis) -> dict[str, int]:
    """Every vv:stats counter by name."""
    return {name.decode(): int(value) for name, value in redis.hgetall(keys.STATS).items()}


def refused_contacts(stats: dict[str, int]) -> dict[str, dict[str, int]]:
    """Refused contacts by channel, then by reason (every reason present, zeros included)."""
    by_channel: dict[str, dict[str, int]] = {}
    for name, value in stats.items():
        if not name.startswith(keys.REFUSED_CONTACT_STAT_PREFIX):
            continue
        channel, _, reason = name[len(keys.REFUSED_CONTACT_STAT_PREFIX) :].partition(":")
        by_channel.setdefault(channel, {r.value: 0 for r in ContactRefusal})[reason] = value
    return by_channel


def refused_contacts_total(stats: dict[str, int]) -> dict[str, int]:
    """Refused contacts by reason, all channels together."""
    totals = {reason.value: 0 for reason in ContactRefusal}
    for reasons in refused_contacts(stats).values():
        for reason, value in reasons.items():
            totals[reason] = totals.get(reason, 0) + value
    return totals


def channel_votes(redis: Redis, poll_id: str) -> dict[str, int]:
    """Votes counted per channel in one poll."""
    return {name.decode(): int(value) for name, value in redis.hgetall(keys.channel_counts(poll_id)).items()}
