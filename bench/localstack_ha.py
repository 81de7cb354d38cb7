"""`make run-ha`: `make run` on a Redis primary, two replicas and three Sentinels, to watch a failover.

The set is tests/support/redis_ha.py's, on 127.0.0.1 (append-only, fsync always, min-replicas-to-write
1, Sentinel timings tuned for a quick failover: down-after 1 s, failover-timeout 4 s), with its data
in var/redis-ha, emptied at each start. The service is pointed at the Sentinels (REDIS_SENTINELS,
REDIS_SENTINEL_MASTER; a vote waits for 1 replica), then bench/localstack.py runs the Procfile as
`make run` does. Meanwhile a watcher prints which node the Sentinels name as primary whenever that
changes, and starts a killed data node again after a few seconds, so that it rejoins as a replica.

Try it: `kill -9 PID` with the primary's pid printed below; Sentinel promotes a replica in ~2-3 s,
and the web answers 503 (never 500) until then.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time

from bench import localstack
from tests.support.redis_ha import RedisHA
from tests.support.redis_server import RedisServer

DATA = localstack.VAR / "redis-ha"
WATCH_INTERVAL_S = 0.5
RESTART_AFTER_S = 5.0
"""A killed data node is started again this long after it was found dead (it rejoins as a replica)."""
DATA_NODE_CONFIG = {"min-replicas-to-write": "1", "min-replicas-max-lag": "10"}
"""As README's "Running on more than one machine" advises: a primary no replica has heard from
for 10 s refuses writes."""


def describe(node: RedisServer) -> str:
    """ ":port (pid N)" of a data node."""
    return f":{node.port} (pid {node.pid})"


def watch(ha: RedisHA, stop: threading.Event) -> None:
    """Print each change of primary, and how long after the old one went down; restart dead nodes."""
    named = seen = ha.primary()
    dead_since: dict[int, float] = {}
    while not stop.wait(WATCH_INTERVAL_S):
        for node in ha.nodes:
            if node.running:
                dead_since.pop(node.port, None)
            elif node.port not in dead_since:
                dead_since[node.port] = time.monotonic()
                print(f"[redis-ha] :{node.port} is down", flush=True)
            elif time.monotonic() - dead_since[node.port] >= RESTART_AFTER_S:
                ha.restart(node)
                print(
                    f"[redis-ha] started :{node.port} again (pid {node.pid}); it rejoins as a replica",
                    flush=True,
                )
        try:
            primary = ha.primary()
        except RuntimeError:
            continue  # no Sentinel answers right now
        if primary is not seen:  # mid-election the Sentinels may disagree: wait for a second look
            seen = primary
            continue
        if primary is not named:
            down_at = dead_since.get(named.port)
            after = f", {time.monotonic() - down_at:.1f} s after :{named.port} went down" if down_at else ""
            print(f"[redis-ha] the Sentinels name {describe(primary)} the primary{after}", flush=True)
            named = primary


def main() -> int:
    """Start the set, point the service at it, watch it, run `make run`'s stack until Ctrl-C."""
    shutil.rmtree(DATA, ignore_errors=True)
    with RedisHA(DATA, extra=DATA_NODE_CONFIG) as ha:
        os.environ.pop("REDIS_URL", None)
        os.environ["REDIS_SENTINELS"] = ha.sentinels_env
        os.environ["REDIS_SENTINEL_MASTER"] = ha.master_name
        replicas = ", ".join(describe(node) for node in ha.replicas())
        sentinels = ", ".join(f":{s.port}" for s in ha.sentinels)
        print(f"started Redis: primary {describe(ha.primary())}, replicas {replicas}, Sentinels {sentinels}")
        print(f"  REDIS_SENTINELS={ha.sentinels_env} REDIS_SENTINEL_MASTER={ha.master_name}")
        print(f"  watch a failover: kill -9 {ha.primary().pid}")
        stop = threading.Event()
        watcher = threading.Thread(target=watch, args=(ha, stop), name="redis-ha-watch", daemon=True)
        watcher.start()
        try:
            return localstack.main()
        finally:
            stop.set()
            watcher.join(timeout=5)


if __name__ == "__main__":
    sys.exit(main())
