"""The sweep job, run every few seconds by `rq cron`: nothing queued is left unattended."""

from __future__ import annotations

import logging
import os
import socket

from redis import Redis
from rq import Queue, Worker
from rq.executions import Execution
from rq.registry import StartedJobRegistry
from rq.utils import now

from webhook.store import keys
from webhook.store.pipeline import KICK_TTL_MS, Stage, kick
from webhook.store.scripts import Scripts
from workers.context import worker_runtime

log = logging.getLogger(__name__)

STARTING_GRACE_S = 5.0
"""RQ records a job's execution, then in a separate step the worker's current job: an execution
this old whose worker names another job (or none) was abandoned, not being started."""
STRANDED_AFTER_S = 5.0
"""A job in RQ's intermediate queue this long, and not started, was taken by a worker that never ran
it (its Redis failed over in between): it goes back to its queue. Normally it stays milliseconds."""


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
        queue = Queue(stage.value, connection=redis)
        report[f"abandoned_{stage.value}"] = expire_abandoned_jobs(queue)
        report[f"stranded_{stage.value}"] = requeue_stranded_jobs(queue)
        pruned, holding = scripts.prune_consumers(
            keys=[stream], args=[group, consumer_idle_ms, MAX_PRUNED_PER_SWEEP]
        )
        report[f"consumers_pruned_{stage.value}"] = int(pruned)
        report[f"consumers_idle_holding_{stage.value}"] = int(holding)
        if pruned:
            log.info("%d idle consumer(s) with nothing pending deleted from %s/%s", pruned, stream, group)
    return report


def expire_abandoned_jobs(queue: Queue) -> int:
    """Hand jobs no worker is running to RQ's own abandoned-job handling now, not after their timeout.

    A SimpleWorker killed mid-job leaves its job in the started registry until the job's timeout
    runs out; so does a worker whose Redis failed over mid-job (the job's record came over to the
    new primary, the worker went on with other jobs). A job is abandoned when its worker's
    registration expired, when the worker ran on this host under a pid that no longer exists, or
    when the worker has been busy with another job, or none, for longer than a start takes. Its
    votes are taken over through the stream anyway.
    """
    registry = StartedJobRegistry(queue=queue)
    redis = queue.connection
    expired = 0
    for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
        try:
            execution: Execution | None = Execution.fetch(execution_id, job_id, connection=redis)
        except ValueError:
            execution = None
        if execution is None or not _worker_running(redis, execution):
            redis.zadd(registry.key, {f"{job_id}:{execution_id}": 0}, xx=True)
            expired += 1
    registry.cleanup()
    if expired:
        log.warning("%d job(s) no worker runs on queue %s marked abandoned", expired, queue.name)
    return expired


def requeue_stranded_jobs(queue: Queue) -> int:
    """Put back in their queue jobs a worker moved to RQ's intermediate queue and never started.

    RQ itself fails such a job after a minute, on a maintenance pass that runs every 10 minutes.
    Should the worker that took it start it after all, the job runs twice: a drain or a sweep
    may (each is idempotent).
    """
    intermediate = queue.intermediate_queue
    started = set(StartedJobRegistry(queue=queue).get_job_ids(cleanup=False))
    redis = queue.connection
    requeued = 0
    for job_id in intermediate.get_job_ids():
        if job_id in started or intermediate.set_first_seen(job_id):
            continue  # running, or seen for the first time now
        first_seen = intermediate.get_first_seen(job_id)
        if first_seen is None or (now() - first_seen).total_seconds() < STRANDED_AFTER_S:
            continue
        pipe = redis.pipeline()
        pipe.lrem(intermediate.key, 1, job_id)
        pipe.delete(intermediate.get_first_seen_key(job_id))
        if queue.fetch_job(job_id) is not None:
            queue.push_job_id(job_id, pipeline=pipe, at_front=True)
        pipe.execute()
        requeued += 1
    if requeued:
        log.warning("%d job(s) stranded in the intermediate queue of %s put back", requeued, queue.name)
    return requeued


def _worker_running(redis: Redis, execution: Execution) -> bool:
    """Whether a worker may still be running this execution (unknown hosts get the benefit of the doubt)."""
    if not execution.worker_name:
        return False
    key = Worker.redis_worker_namespace_prefix + execution.worker_name
    worker = Worker.find_by_key(key, connection=redis)
    if worker is None:
        return False
    if worker.get_current_job_id() != execution.job_id:
        # RQ records the execution first and the worker's current job a moment later, apart.
        return (now() - execution.created_at).total_seconds() < STARTING_GRACE_S
    if worker.hostname != socket.gethostname() or not worker.pid:
        return True
    try:
        os.kill(worker.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
