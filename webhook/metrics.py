"""Prometheus metrics: the web processes' own counters, and gauges read from Redis at scrape time.

Under gunicorn, gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR so every worker process's
counters are summed. No label carries anything per voter: cardinality stays bounded.
"""

from __future__ import annotations

import os

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from redis import Redis
from rq import Queue, Worker

from webhook import keys
from webhook.kick import Stage
from webhook.phones import ContactRefusal
from webhook.polls import PollBook

REJECTED = Counter(
    "viber_vote_callbacks_rejected_total", "Callbacks refused before any vote logic.", ["reason"]
)
VOTES = Counter("viber_vote_webhook_votes_total", "Vote messages received, by outcome.", ["outcome"])
WEBHOOK_SECONDS = Histogram(
    "viber_vote_webhook_seconds",
    "Time to answer a Viber callback.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)


class RedisCollector:
    """Counts and queue depths read from Redis on each scrape."""

    def __init__(self, redis: Redis, polls: PollBook) -> None:
        """Read from this connection, for these polls."""
        self.redis, self.polls = redis, polls

    def collect(self):  # type: ignore[no-untyped-def]
        """Yield the metric families."""
        votes = CounterMetricFamily(
            "viber_vote_votes", "Votes counted, by poll and option.", labels=["poll", "option"]
        )
        for poll in self.polls.polls:
            raw = self.redis.hgetall(keys.counts(poll.id))
            for option in poll.options:
                votes.add_metric([poll.id, option.id], int(raw.get(option.id.encode(), 0)))
        yield votes
        events = CounterMetricFamily(
            "viber_vote_events", "Pipeline events counted in Redis.", labels=["event"]
        )
        stats = {name.decode(): int(value) for name, value in self.redis.hgetall(keys.STATS).items()}
        for name, value in sorted(stats.items()):
            events.add_metric([name], value)
        yield events
        refused = CounterMetricFamily(
            "viber_vote_contacts_refused",
            "Shared phone numbers refused, by reason (a rising bound_elsewhere is a take-over attempt).",
            labels=["reason"],
        )
        for reason in ContactRefusal:
            refused.add_metric([reason.value], stats.get(keys.refused_contact_stat(reason.value), 0))
        yield refused
        depth = GaugeMetricFamily(
            "viber_vote_pending", "Items waiting in each pipeline stage.", labels=["stage"]
        )
        depth.add_metric(["votes"], self.redis.xlen(keys.VOTES_STREAM))
        depth.add_metric(["confirmations"], self.redis.xlen(keys.OUTBOX_STREAM))
        depth.add_metric(["retries"], self.redis.zcard(keys.OUTBOX_RETRY))
        depth.add_metric(["dead_letters"], self.redis.llen(keys.OUTBOX_DEAD))
        yield depth
        jobs = GaugeMetricFamily("viber_vote_rq_jobs", "Jobs queued in RQ, by queue.", labels=["queue"])
        for stage in Stage:
            jobs.add_metric([stage.value], Queue(stage.value, connection=self.redis).count)
        yield jobs
        yield GaugeMetricFamily(
            "viber_vote_workers", "RQ workers alive.", value=Worker.count(connection=self.redis)
        )


def render(redis: Redis, polls: PollBook) -> bytes:
    """The text exposition of every metric."""
    scraped = CollectorRegistry()
    scraped.register(RedisCollector(redis, polls))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own = CollectorRegistry()
        MultiProcessCollector(own)
        return generate_latest(own) + generate_latest(scraped)
    return generate_latest(REGISTRY) + generate_latest(scraped)
