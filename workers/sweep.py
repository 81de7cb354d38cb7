"""The sweep job, run every few seconds by `rq cron`: nothing queued is left unattended."""

from __future__ import annotations

import logging
import os
import socket

from redis import Redis
from rq import Queue, Worker
from rq.executions import Execution
from rq.registry import StartedJobRegistry

from webhook.store import keys
from webhook.store.pipeline import KICK_TTL_MS, Stage, kick
from webhook.store.scripts import Scripts
from workers.context import worker_runtime

log = logging.getLogger(__name__)


CONSUMER_IDLE_MAX_MS = 10 * 60_000
"""A stream consumer idle this long (ms) and holding no entry is deleted from its group: far
longer than a drain job runs (20 s) or an entry may stay unfinished (STALE_MS, at most 120 s)."""
MAX_PRUNED_PER_SWEEP = 1000
"""Most consumers one sweep deletes per group (a restart storm's backlog goes over a few sweeps)."""


def sweep() -> dict[str, int]:
    """RQ job: kick stages with work but no drain job, requeue due retries, clean registries and groups."""
    rt = worker_runtime()
    return sweep_once(rt.redis, rt.outbox.move_due_retries(), scripts=rt.ballot_box.scripts)


def sweep_once(
    redis: Redis,
    retries_moved: int = 0,
    *,
    scripts: Scripts | None = None,
    consumer_idle_ms: int = CONSUMER_IDLE_MAX_MS,
) -> dict[str, int]:
    """One sweep over the pipeline on this connection."""
    scripts = scripts or Scripts.register(redis)
    report = {"retries_moved": retries_moved}
    for stage, stream, group, flag in (
        (Stage.TALLY, keys.VOTES_STREAM, keys.TALLY_GROUP, keys.KICK_TALLY),
        (Stage.SEND, keys.OUTBOX_STREAM, keys.SEND_GROUP, keys.KICK_SEND),
    ):
        kicked = redis.xlen(stream) > 0 and bool(redis.set(flag, "1", nx=True, px=KICK_TTL_MS))
        if kicked:
            kick(stage, connection=redis)
        report[f"kicked_{stage.value}"] = int(kicked)
        report[f"abandoned_{stage.value}"] = expire_abandoned_jobs(Queue(stage.value, connection=redis))
        pruned, holding = scripts.prune_consumers(
            keys=[stream], args=[group, consumer_idle_ms, MAX_PRUNED_PER_SWEEP]
        )
        report[f"consumers_pruned_{stage.value}"] = int(pruned)
        report[f"consumers_idle_holding_{stage.value}"] = int(holding)
        if pruned:
            log.info("%d idle consumer(s) with nothing pending deleted from %s/%s", pruned, stream, group)
    return report


def expire_abandoned_jobs(queue: Queue) -> int:
    """Hand jobs whose worker is gone to RQ's own abandoned-job handling now, not after their timeout.

    A SimpleWorker killed mid-job leaves its job in the started registry until the job's timeout
    runs out. A worker is known dead when its registration expired, or when it ran on this
    host under a pid that no longer exists; its votes are taken over through the stream anyway.
    """
    registry = StartedJobRegistry(queue=queue)
    redis = queue.connection
    expired = 0
    for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
        try:
            worker_name = Execution.fetch(execution_id, job_id, connection=redis).worker_name
        except ValueError:
            worker_name = ""
        if not _worker_alive(redis, worker_name):
            redis.zadd(registry.key, {f"{job_id}:{execution_id}": 0}, xx=True)
            expired += 1
    registry.cleanup()
    if expired:
        log.warning("%d job(s) of dead workers on queue %s marked abandoned", expired, queue.name)
    return expired


def _worker_alive(redis: Redis, worker_name: str) -> bool:
    """Whether a worker may still be running (unknown hosts are given the benefit of the doubt)."""
    if not worker_name:
        return False
    worker = Worker.find_by_key(Worker.redis_worker_namespace_prefix + worker_name, connection=redis)
    if worker is None:
        return False
    if worker.hostname != socket.gethostname() or not worker.pid:
        return True
    try:
        os.kill(worker.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
