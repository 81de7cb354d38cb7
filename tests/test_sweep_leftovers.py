"""The sweep lets go of drain jobs no worker runs: what a Redis failover leaves in RQ's bookkeeping.

A failover brings the new primary RQ's records as the old one had them: a job a worker had started
(the worker then went on with other jobs), or one it had moved into RQ's intermediate queue and
never started. tests/faults/test_redis_failover.py shows both after a real failover.
"""

from __future__ import annotations

import os
import time

from redis import Redis
from rq import Queue
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.worker import SimpleWorker

from webhook.store.pipeline import DRAIN_JOB_TIMEOUT_S, Stage
from workers.sweep import STARTING_GRACE_S, STRANDED_AFTER_S, expire_abandoned_jobs, requeue_stranded_jobs


def test_started_job_of_a_live_worker_busy_with_another_is_abandoned(redis: Redis) -> None:
    """The worker is alive (this process) but its current job is another one: the started job is let go."""
    queue = Queue(Stage.TALLY.value, connection=redis)
    job = queue.enqueue("workers.tally.drain_votes", job_timeout=DRAIN_JOB_TIMEOUT_S)
    worker = SimpleWorker([queue], connection=redis)
    worker.register_birth()
    try:
        assert queue.dequeue_any([queue], None, connection=redis) is not None
        execution = worker.prepare_execution(job)  # what a SimpleWorker does to start a job
        assert expire_abandoned_jobs(queue) == 0, "being started: the worker names no job yet"
        worker.prepare_job_execution(job)
        assert worker.pid == os.getpid()
        assert expire_abandoned_jobs(queue) == 0, "its worker is running it"
        worker.set_current_job_id("another-job")
        assert expire_abandoned_jobs(queue) == 0, "just started: the grace for a start"
        started_long_ago = time.time() - STARTING_GRACE_S - 1
        redis.hset(execution.key, "created_at", started_long_ago)
        assert expire_abandoned_jobs(queue) == 1
        assert StartedJobRegistry(queue=queue).get_job_ids(cleanup=False) == []
        assert job.id in FailedJobRegistry(queue=queue)
    finally:
        worker.register_death()


def test_job_stranded_in_the_intermediate_queue_goes_back_to_its_queue(redis: Redis) -> None:
    """Taken by a worker (BLMOVE) and never started: back in the queue once seen there for a while."""
    queue = Queue(Stage.TALLY.value, connection=redis)
    job = queue.enqueue("workers.tally.drain_votes")
    intermediate = queue.intermediate_queue
    redis.lmove(queue.key, intermediate.key)
    assert queue.get_job_ids() == []
    assert requeue_stranded_jobs(queue) == 0, "first seen now"
    assert requeue_stranded_jobs(queue) == 0, "not for long yet"
    seen_long_ago = time.time() - STRANDED_AFTER_S - 1
    redis.set(intermediate.get_first_seen_key(job.id), seen_long_ago)
    assert requeue_stranded_jobs(queue) == 1
    assert (queue.get_job_ids(), intermediate.get_job_ids()) == ([job.id], [])
    assert redis.get(intermediate.get_first_seen_key(job.id)) is None
