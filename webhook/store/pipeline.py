"""The pipeline's stages and the RQ jobs that drain them.

The web side queues these jobs by dotted path, so it never imports worker code: the paths are
named here, once, and tests/test_layout.py checks that each one is a function in workers/.
"""

from __future__ import annotations

from enum import StrEnum

from redis import Redis
from rq import Queue

KICK_TTL_MS = 2000
"""How long a kick flag spares later callers from queueing another drain job (ms)."""
DRAIN_JOB_TIMEOUT_S = 300
DRAIN_JOBS = {"tally": "workers.tally.drain_votes", "send": "workers.sender.drain_outbox"}
"""Stage (its RQ queue name) -> dotted path of the job that drains it."""
SWEEP_JOB = "workers.sweep.sweep"
"""The periodic job that kicks stalled stages and requeues due retries (run by `rq cron`)."""


class Stage(StrEnum):
    """A pipeline stage: its RQ queue name and the job that drains it."""

    TALLY = "tally"
    SEND = "send"

    @property
    def job(self) -> str:
        """Dotted path of the job that drains this stage."""
        return DRAIN_JOBS[self.value]


def kick(stage: Stage, *, connection: Redis) -> None:
    """Queue one drain job for a stage (the caller holds the stage's kick flag)."""
    Queue(stage.value, connection=connection).enqueue(
        stage.job, job_timeout=DRAIN_JOB_TIMEOUT_S, result_ttl=0, failure_ttl=86400
    )
