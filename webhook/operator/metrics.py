"""GET /metrics' text: the web processes' own counters (webhook/telemetry.py), and figures read
from Redis at scrape time. No label carries anything per voter: cardinality stays bounded.
"""

from __future__ import annotations

import os

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from redis import Redis
from rq import Queue, Worker

from webhook.core.polls import PollBook
from webhook.operator.pipeline_stats import (
    channel_votes,
    read_stats,
    refused_contacts,
    refused_contacts_total,
)
from webhook.store import keys
from webhook.store.pipeline import Stage


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
        stats = read_stats(self.redis)
        for name, value in sorted(stats.items()):
            events.add_metric([name], value)
        yield events
        yield from self._per_channel(stats)
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

    def _per_channel(self, stats: dict[str, int]):  # type: ignore[no-untyped-def]
        """Votes and refused phone numbers, per channel."""
        refused = CounterMetricFamily(
            "viber_vote_contacts_refused",
            "Shared phone numbers refused, by reason (a rising bound_elsewhere is a take-over attempt).",
            labels=["reason"],
        )
        for reason, value in refused_contacts_total(stats).items():
            refused.add_metric([reason], value)
        yield refused
        by_channel = CounterMetricFamily(
            "viber_vote_channel_contacts_refused",
            "Shared phone numbers refused, by channel and reason.",
            labels=["channel", "reason"],
        )
        for channel, reasons in sorted(refused_contacts(stats).items()):
            for reason, value in reasons.items():
                by_channel.add_metric([channel, reason], value)
        yield by_channel
        votes = CounterMetricFamily(
            "viber_vote_channel_votes", "Votes counted, by poll and channel.", labels=["poll", "channel"]
        )
        for poll in self.polls.polls:
            for channel, value in sorted(channel_votes(self.redis, poll.id).items()):
                votes.add_metric([poll.id, channel], value)
        yield votes


def render(redis: Redis, polls: PollBook) -> bytes:
    """The text exposition of every metric."""
    scraped = CollectorRegistry()
    scraped.register(RedisCollector(redis, polls))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own = CollectorRegistry()
        MultiProcessCollector(own)
        return generate_latest(own) + generate_latest(scraped)
    return generate_latest(REGISTRY) + generate_latest(scraped)
