"""The sweep job, run every few seconds by `rq cron`: nothing queued is left unattended."""

from __future__ import annotations

import logging

from redis import Redis
from rq import Queue
from rq.registry import StartedJobRegistry

from webhook import keys
from webhook.kick import KICK_TTL_MS, Stage, kick
from workers.context import worker_runtime

log = logging.getLogger(__name__)


def sweep() -> dict[str, int]:
    """RQ job: kick stages with work but no drain job, requeue due retries, clean registries."""
    rt = worker_runtime()
    return sweep_once(rt.redis, rt.outbox.move_due_retries())


def sweep_once(redis: Redis, retries_moved: int = 0) -> dict[str, int]:
    """One sweep over the pipeline on this connection."""
    report = {"retries_moved": retries_moved}
    for stage, stream, flag in (
        (Stage.TALLY, keys.VOTES_STREAM, keys.KICK_TALLY),
        (Stage.SEND, keys.OUTBOX_STREAM, keys.KICK_SEND),
    ):
        kicked = redis.xlen(stream) > 0 and bool(redis.set(flag, "1", nx=True, px=KICK_TTL_MS))
        if kicked:
            kick(stage, connection=redis)
        report[f"kicked_{stage.value}"] = int(kicked)
        StartedJobRegistry(queue=Queue(stage.value, connection=redis)).cleanup()
    return report
