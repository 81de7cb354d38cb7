"""Writes acknowledged only once replicas hold them: the write and WAIT on one connection.

Redis replicates asynchronously: a primary that dies (or is cut off and replaced) loses what its
replicas had not received. `WAIT n timeout` blocks until n replicas have acknowledged every write
made so far on the connection it is sent on; sent on another pooled connection it would wait for
that connection's writes (often none: it returns at once). So the script and WAIT go out in one
pipeline, which holds one connection for both.

WAIT waits for the replication offset of the connection's last write, and the replication stream
is one ordered log: once it is confirmed, so is every write made before it, by any connection. A
script run here must therefore write on every path (a stats counter at least): a path that only
read, say a retry finding the claim an unconfirmed first attempt made, would otherwise be answered
without that claim being on a replica (Redis 7.0 moves a connection's offset on every command, so
there such a path is covered anyway; from 7.2 on only a command that replicated something does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.commands.core import Script
from redis.exceptions import NoScriptError, RedisError

from webhook.store.connection import ReplicaWait, recheck_primary

Arg = bytes | str | int | float


class NotReplicated(RedisError):
    """The primary has the write, but fewer replicas than required confirmed it in time.

    A RedisError: the web answers 503, so the messenger sends the callback again; the retry finds
    the write already made (a retry, not a second vote) and waits for the replicas once more.
    """


def run_script(
    redis: Redis, script: Script, wait: ReplicaWait, keys: Sequence[Arg], args: Sequence[Arg]
) -> Any:
    """Run a script, then (when wait.replicas > 0) WAIT for that many replicas on the same connection.

    A primary that took over after a failover has no scripts loaded (the script cache is not
    replicated): on NOSCRIPT the script is loaded and run once more, in the same pipeline.
    """
    if wait.replicas <= 0:
        return script(keys=keys, args=args, client=redis)  # redis-py reloads on NOSCRIPT itself

    def run(pipe: Pipeline) -> None:
        """Queue the script call."""
        pipe.evalsha(script.sha, len(keys), *keys, *args)

    def load_and_run(pipe: Pipeline) -> None:
        """Queue loading the script, then its call."""
        pipe.script_load(script.script)
        run(pipe)

    try:
        return execute(redis, wait, run)[-1]
    except NoScriptError:
        return execute(redis, wait, load_and_run)[-1]


def execute(redis: Redis, wait: ReplicaWait, queue: Callable[[Pipeline], object]) -> list[Any]:
    """Run the commands queue() adds and WAIT, in one pipeline; their replies, WAIT's left out.

    Raises the first command's error, else NotReplicated when too few replicas confirmed.
    """
    pipe = redis.pipeline(transaction=False)
    queue(pipe)
    if wait.replicas > 0:
        pipe.wait(wait.replicas, wait.timeout_ms)
    replies = pipe.execute(raise_on_error=False)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    if wait.replicas <= 0:
        return replies
    *results, confirmed = replies
    if int(confirmed) < wait.replicas:
        recheck_primary(redis)  # this primary may be a former one that Sentinel has replaced
        raise NotReplicated(
            f"{confirmed} of {wait.replicas} replica(s) confirmed the write within {wait.timeout_ms} ms"
        )
    return results
