"""Queue the drain jobs that move work through the pipeline, by dotted path."""

from __future__ import annotations

from enum import StrEnum

from redis import Redis
from rq import Queue

KICK_TTL_MS = 2000
"""How long a kick flag spares later callers from queueing another drain job (ms)."""
DRAIN_JOB_TIMEOUT_S = 300


class Stage(StrEnum):
    """A pipeline stage: its RQ queue name and the job that drains it."""

    TALLY = "tally"
    SEND = "send"

    @property
    def job(self) -> str:
        """Dotted path of the job that drains this stage."""
        return {Stage.TALLY: "workers.tally.drain_votes", Stage.SEND: "workers.sender.drain_outbox"}[self]


def kick(stage: Stage, *, connection: Redis) -> None:
    """Queue one drain job for a stage (the caller holds the stage's kick flag)."""
    Queue(stage.value, connection=connection).enqueue(
        stage.job, job_timeout=DRAIN_JOB_TIMEOUT_S, result_ttl=0, failure_ttl=86400
    )
