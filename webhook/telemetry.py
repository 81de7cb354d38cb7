"""The web processes' own Prometheus counters, incremented by the channels' webhooks.

Under gunicorn, gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR so every worker process's counters
are summed (webhook/operator/metrics.py reads them). No label carries anything per voter.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REJECTED = Counter(
    "viber_vote_callbacks_rejected_total",
    "Callbacks refused before any vote logic, all channels.",
    ["reason"],
)
REJECTED_BY_CHANNEL = Counter(
    "viber_vote_channel_callbacks_rejected_total",
    "Callbacks refused before any vote logic, by channel and reason.",
    ["channel", "reason"],
)
VOTES = Counter("viber_vote_webhook_votes_total", "Vote messages received, by outcome.", ["outcome"])
WEBHOOK_SECONDS = Histogram(
    "viber_vote_webhook_seconds",
    "Time to answer a messenger callback.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)


def rejected(channel: str, reason: str) -> None:
    """Count a callback refused before any vote logic (bad signature or secret, bad body, stale)."""
    REJECTED.labels(reason).inc()
    REJECTED_BY_CHANNEL.labels(channel, reason).inc()
