"""The progress line: once a minute, the votes counted in the last minute and what waits in the pipeline.

The clock queues this job at the start of every minute (rq cron), so an operator watching the
logs (or `make run`) sees one line a minute instead of every routine job, which RQ logs only
at LOG_LEVEL=DEBUG.
"""

from __future__ import annotations

import logging
import time

from redis import Redis

from webhook.core.polls import PollBook
from webhook.store import keys
from webhook.store.pipeline import backlog
from workers.context import worker_runtime

log = logging.getLogger(__name__)
MINUTE_S = 60


def report_progress() -> str:
    """RQ job: log the progress line of the minute that has just ended; return it."""
    rt = worker_runtime()
    line = progress_line(rt.redis, rt.polls, time.time())
    log.info("%s", line)
    return line


def progress_line(redis: Redis, polls: PollBook, now: float) -> str:
    """Votes counted in the last whole minute (per poll that had any) and the pipeline's backlog."""
    minute = int(now) // MINUTE_S - 1
    pipe = redis.pipeline(transaction=False)
    for poll in polls.polls:
        pipe.hget(keys.minutes(poll.id), str(minute))
    counted = {poll.id: int(votes or 0) for poll, votes in zip(polls.polls, pipe.execute(), strict=True)}
    per_poll = ", ".join(f"{poll_id} {votes}" for poll_id, votes in counted.items() if votes)
    waiting = backlog(redis)
    return (
        f"progress: {sum(counted.values())} votes/min"
        + (f" ({per_poll})" if per_poll else "")
        + f"; waiting: votes {waiting['votes']}, replies {waiting['replies']}"
        + f" (retrying {waiting['retrying']}); dead letters {waiting['dead_letters']}"
    )
