"""Everything the dashboard shows of a poll, as one JSON document (GET /dashboard/api/state)."""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from rq import Queue, Worker

from webhook import telemetry
from webhook.core.polls import Poll, PollStatus
from webhook.operator import journal as audit_log
from webhook.operator.pipeline_stats import channel_votes, refused_contacts, refused_contacts_total
from webhook.runtime import Runtime
from webhook.store import keys
from webhook.store.pipeline import Stage

CHART_MINUTES = 60
AUDIT_SHOWN = 10
REJECT_REASONS = ("bad_signature", "bad_request", "stale")
REJECTED_FAMILY = telemetry.REJECTED_BY_CHANNEL.describe()[0].name


def rejected_callbacks() -> dict[str, dict[str, int]]:
    """Callbacks refused before any vote logic, by channel then reason, summed over every web process.

    Under gunicorn each worker has its own counters in PROMETHEUS_MULTIPROC_DIR; reading
    them through a MultiProcessCollector sums them, where the counter alone is this process's.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        families = registry.collect()
    else:
        families = telemetry.REJECTED_BY_CHANNEL.collect()
    by_channel: dict[str, dict[str, int]] = {}
    for family in families:
        if family.name != REJECTED_FAMILY:
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                reasons = by_channel.setdefault(sample.labels["channel"], dict.fromkeys(REJECT_REASONS, 0))
                reason = sample.labels.get("reason", "")
                reasons[reason] = reasons.get(reason, 0) + int(sample.value)
    return by_channel


def _summed(by_channel: dict[str, dict[str, int]]) -> dict[str, int]:
    """Counts by reason, all channels together."""
    totals = dict.fromkeys(REJECT_REASONS, 0)
    for reasons in by_channel.values():
        for reason, value in reasons.items():
            totals[reason] = totals.get(reason, 0) + value
    return totals


def dashboard_state(rt: Runtime, poll: Poll, now: float) -> dict[str, Any]:
    """The JSON the dashboard renders: poll, results, votes per minute, pipeline, audit."""
    redis = rt.redis
    status = rt.ballot_box.status(poll, now)
    counts = rt.ballot_box.counts(poll)
    total = sum(counts.values())
    this_minute = int(now) // 60
    minutes = list(range(this_minute - CHART_MINUTES + 1, this_minute + 1))
    pipe = redis.pipeline(transaction=False)
    pipe.hmget(keys.minutes(poll.id), minutes)
    pipe.hgetall(keys.STATS)
    pipe.xlen(keys.VOTES_STREAM)
    pipe.xlen(keys.OUTBOX_STREAM)
    pipe.zcard(keys.OUTBOX_RETRY)
    pipe.llen(keys.OUTBOX_DEAD)
    per_minute, raw_stats, votes_queued, outbox, retries, dead = pipe.execute()
    stats = {name.decode(): int(value) for name, value in raw_stats.items()}
    rejected_by_channel = rejected_callbacks()
    rejected = _summed(rejected_by_channel)
    jobs = {stage.value: Queue(stage.value, connection=redis).count for stage in Stage}
    return {
        "now": now,
        "poll": {
            "id": poll.id,
            "question": poll.question,
            "status": status.value,
            "results_policy": poll.results.value,
            "opens_at": poll.opens_at,
            "closes_at": poll.closes_at,
            "closes_in_s": _seconds_until(poll.closes_at, now) if status is PollStatus.OPEN else None,
            "opens_in_s": _seconds_until(poll.opens_at, now) if status is PollStatus.NOT_OPEN else None,
        },
        "total": total,
        "options": [
            {
                "id": option.id,
                "label": option.label,
                "votes": counts[option.id],
                "percent": round(100 * counts[option.id] / total, 1) if total else 0.0,
            }
            for option in poll.options
        ],
        "minutes": [[minute, int(votes or 0)] for minute, votes in zip(minutes, per_minute, strict=True)],
        "pipeline": {
            "duplicates_rejected": stats.get("vote_duplicate", 0),
            "invalid_signatures": rejected["bad_signature"],
            "rejected": rejected,
            "votes_queued": votes_queued,
            "jobs_queued": jobs,
            "queue_depth": votes_queued + sum(jobs.values()),
            "confirmations_pending": outbox + retries,
            "confirmations_retrying": retries,
            "dead_letters": dead,
            "workers": Worker.count(connection=redis),
        },
        "contacts_refused": refused_contacts_total(stats),
        "channels": {
            "votes": channel_votes(redis, poll.id),
            "rejected": rejected_by_channel,
            "contacts_refused": refused_contacts(stats),
        },
        "stats": stats,
        "audit": audit_log.recent(redis, AUDIT_SHOWN),
    }


def _seconds_until(when: float | None, now: float) -> int | None:
    """Whole seconds from now to a time, or None when there is no such time ahead."""
    if when is None or when <= now:
        return None
    return int(when - now)
