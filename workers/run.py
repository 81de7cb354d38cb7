"""`python -m workers.run tally|send|clock`: an RQ worker, or the clock, on the service's Redis connection.

The Procfile runs these (under workers.keepalive) instead of `rq worker --url ...`: Redis is then
reached the one way the rest of the service reaches it (webhook/store/connection.py, a URL or
Sentinel), and the jobs share the worker's connection.
"""

from __future__ import annotations

import logging
import os
import sys

from rq import Queue
from rq.cron import CronScheduler
from rq.utils import import_attribute
from rq.worker import SimpleWorker

from webhook.channels import registry
from webhook.store.pipeline import PROGRESS_JOB, SWEEP_JOB, Stage
from workers.context import worker_runtime

SWEEP_INTERVAL_S = 2
SWEEP_TTL_S = 10
"""A sweep not started within this time (seconds) is dropped: the next one will do."""
PROGRESS_CRON = "* * * * *"
"""The progress line is logged at the start of every minute."""
PROGRESS_TTL_S = 50
"""A progress line not logged within this time (seconds) is dropped: the next minute's comes."""
WORKER_TTL_S = 20
"""RQ blocks for a job 15 s less than this and raises its connection's socket timeout to 10 s above
that (15 s here, 415 s by RQ's default): a primary that stops answering, as a dead host does,
holds a worker that long before it gives up, exits, is restarted and asks the Sentinels again.
The worker's registration also expires this + 60 s after its last heartbeat (the sweep's sign of a
dead worker)."""
ROLES = ("tally", "send", "clock")
DEFAULT_LOG_LEVEL = "INFO"


def configure_logging(level_name: str) -> int:
    """The service's loggers at this level; RQ's, whose every job and tick is routine, only at DEBUG.

    Returns the level given to RQ (WARNING unless DEBUG): its job failures still show.
    """
    logging.basicConfig(level=level_name.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    rq_level = logging.DEBUG if logging.getLogger().getEffectiveLevel() <= logging.DEBUG else logging.WARNING
    logging.getLogger("rq").setLevel(rq_level)  # rq.cron and rq.worker inherit it
    return rq_level


def run_worker(stage: Stage, rq_level: int) -> None:
    """Work one stage's queue until stopped (SimpleWorker: jobs run in this process, no fork each)."""
    rt = worker_runtime()
    if stage is Stage.SEND:
        os.nice(rt.config.send_nice)  # confirmations yield the CPU to intake
        for channel in registry.configured(rt.config):
            channel.warm()  # aiogram's seconds of import now, not in a burst's first sends
    redis = rt.redis
    worker = SimpleWorker([Queue(stage.value, connection=redis)], connection=redis, worker_ttl=WORKER_TTL_S)
    worker.work(logging_level=rq_level)


def run_clock(rq_level: int) -> None:
    """Queue the sweep every SWEEP_INTERVAL_S seconds and the progress line every minute, until stopped."""
    cron = CronScheduler(connection=worker_runtime().redis, logging_level=rq_level)
    cron.register(
        import_attribute(SWEEP_JOB),
        queue_name=Stage.TALLY.value,
        interval=SWEEP_INTERVAL_S,
        ttl=SWEEP_TTL_S,
        result_ttl=0,
    )
    cron.register(
        import_attribute(PROGRESS_JOB),
        queue_name=Stage.TALLY.value,
        cron=PROGRESS_CRON,
        ttl=PROGRESS_TTL_S,
        result_ttl=0,
    )
    cron.start()


def main(argv: list[str]) -> int:
    """Run the role named on the command line."""
    if len(argv) != 1 or argv[0] not in ROLES:
        print(f"usage: python -m workers.run {{{','.join(ROLES)}}}", file=sys.stderr)
        return 2
    rq_level = configure_logging(os.environ.get("LOG_LEVEL") or DEFAULT_LOG_LEVEL)
    if argv[0] == "clock":
        run_clock(rq_level)
    else:
        run_worker(Stage(argv[0]), rq_level)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
