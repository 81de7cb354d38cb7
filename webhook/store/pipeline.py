"""The pipeline's stages and the RQ jobs that drain them.

The web side queues these jobs by dotted path, so it never imports worker code: the paths are
named here, once, and tests/test_layout.py checks that each one is a function in workers/.
"""

from __future__ import annotations

from enum import StrEnum

from redis import Redis
from rq import Queue

from webhook.store import keys

KICK_TTL_MS = 2000
"""How long a kick flag spares later callers from queueing another drain job (ms)."""
DRAIN_JOB_TIMEOUT_S = 300
DRAIN_JOBS = {"tally": "workers.tally.drain_votes", "send": "workers.sender.drain_outbox"}
"""Stage (its RQ queue name) -> dotted path of the job that drains it."""
SWEEP_JOB = "workers.sweep.sweep"
"""The periodic job that kicks stalled stages and requeues due retries (run by `rq cron`)."""
PROGRESS_JOB = "workers.progress.report_progress"
"""The once-a-minute job that logs votes counted and what waits in the pipeline (run by `rq cron`)."""


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


def backlog(redis: Redis) -> dict[str, int]:
    """What waits in the pipeline: votes to count, replies to send, replies to retry, dead letters."""
    pipe = redis.pipeline(transaction=False)
    pipe.xlen(keys.VOTES_STREAM)
    pipe.xlen(keys.OUTBOX_STREAM)
    pipe.zcard(keys.OUTBOX_RETRY)
    pipe.llen(keys.OUTBOX_DEAD)
    votes, replies, retrying, dead = pipe.execute()
    return {"votes": votes, "replies": replies, "retrying": retrying, "dead_letters": dead}
