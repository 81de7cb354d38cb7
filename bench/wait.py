"""`python -m bench.wait` (make bench-wait): what waiting for a replica costs the intake and the tally.

A primary and one replica (redis-server, appendonly yes, appendfsync always, both on this
machine). The webhook's Redis step, BallotBox.cast (claim and queue the vote in one Lua call,
then with REDIS_WAIT_REPLICAS=1 `WAIT 1` on the same connection), runs in several processes of
several threads each, as gunicorn's workers do, with REDIS_WAIT_REPLICAS 0 and then 1:

- intake: votes cast per second, and each cast's latency;
- through the tally step: casting and workers.tally.drain (a separate process, as the tally
  worker) at once, from the first vote cast until every vote is counted.

The web process's own work (HTTP, signature, JSON) is left out: this is what one primary does.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from redis import Redis

from bench.memory import TOKEN_BASE, receiver
from bench.run import REPORT, code_state, describe_code, machine, table, write_section
from tests.support.redis_server import RedisServer
from webhook.config import DEFAULT_POLL_FILE, Config
from webhook.core.identity import IdentityKind, voter_key
from webhook.core.polls import load_polls
from webhook.runtime import Runtime
from webhook.store import keys
from webhook.store.connection import RedisSettings, ReplicaWait
from webhook.store.streams import VoteEntry
from workers.context import ensure_group
from workers.tally import drain

WAIT_TIMEOUT_MS = 500
TALLY_IDLE_S = 1.0
"""The tally process stops once no vote has come for this long (below the socket timeout: it blocks)."""
POLL_S = 0.02
WARM_UP_S = 0.5


@dataclass(frozen=True)
class Run:
    """One mode's figures."""

    replicas: int
    intake_per_s: float
    latency_ms: tuple[float, float]
    """Cast latency p50 and p99, in milliseconds."""
    through_tally_per_s: float
    primary_cpu_us: float
    """The primary's CPU (user + system, every thread) per vote cast and tallied, in microseconds."""


def cpu_s(redis: Redis) -> float:
    """CPU seconds the server has used so far (INFO cpu: user + system, all its threads)."""
    info = redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def cast_share(config: Config, start: int, stop: int, step: int, threads: int) -> list[float]:
    """Cast votes start, start+step, ... < stop from `threads` threads on one runtime; each cast's seconds."""
    rt = Runtime.build(config)
    poll = rt.polls.polls[0]
    now = int(time.time())
    latencies: list[float] = []

    def cast_some(offset: int) -> None:
        """Cast every threads-th vote of this share."""
        for index in range(start + offset * step, stop, step * threads):
            who = receiver(index)
            vote = VoteEntry(
                poll=poll.id,
                voter=voter_key(config.voter_id_secret, IdentityKind.VIBER, who),
                option=index % len(poll.options),
                receiver=rt.seal.seal(who),
                language="en",
                accepted_at=now,
                channel="viber",
            )
            began = time.perf_counter()
            rt.ballot_box.cast(poll, vote, message_token=TOKEN_BASE + index)
            latencies.append(time.perf_counter() - began)  # list.append is atomic under the GIL

    workers = [threading.Thread(target=cast_some, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    rt.redis.close()
    return latencies


def ready(pause_s: float) -> None:
    """Nothing but a pause: run once in every pool process, so spawning and imports are not timed."""
    time.sleep(pause_s)


def tally_all(config: Config) -> int:
    """Tally votes as they come, until none has come for TALLY_IDLE_S; returns how many were counted."""
    rt = Runtime.build(config)
    counted = drain(rt, "bench-wait", budget_s=float("inf"), idle_s=TALLY_IDLE_S)
    rt.redis.close()
    return counted


def measure(config: Config, votes: int, processes: int, threads: int, primary: RedisServer) -> Run:
    """Intake alone, then intake with the tally at once, in this config's wait mode."""
    with (
        primary.client() as redis,
        ProcessPoolExecutor(processes + 1, mp_context=get_context("spawn")) as pool,
    ):
        redis.flushall()
        for warming in [pool.submit(ready, WARM_UP_S) for _ in range(processes + 1)]:
            warming.result()
        started = time.monotonic()
        latencies = _cast(pool, config, 0, votes, processes, threads)
        intake_s = time.monotonic() - started
        redis.flushall()
        ensure_group(redis, keys.VOTES_STREAM, keys.TALLY_GROUP)
        cpu_before = cpu_s(redis)
        started = time.monotonic()
        tally: Future[int] = pool.submit(tally_all, config)
        shares = [pool.submit(cast_share, config, i, votes, processes, threads) for i in range(processes)]
        poll_id = load_polls(config.poll_file).polls[0].id
        while sum(int(n) for n in redis.hvals(keys.counts(poll_id))) < votes:
            time.sleep(POLL_S)
        through_s = time.monotonic() - started
        primary_cpu_s = cpu_s(redis) - cpu_before
        for share in shares:
            share.result()
        tally.result()
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Run(
        config.redis.wait.replicas,
        votes / intake_s,
        (statistics.median(ordered) * 1000, p99 * 1000),
        votes / through_s,
        primary_cpu_s / votes * 1e6,
    )


def _cast(
    pool: ProcessPoolExecutor, config: Config, start: int, votes: int, processes: int, threads: int
) -> list[float]:
    """Cast votes from every process at once; every cast's latency."""
    shares = [
        pool.submit(cast_share, config, start + i, start + votes, processes, threads)
        for i in range(processes)
    ]
    return [latency for share in shares for latency in share.result()]


def spread(values: list[float], unit: str, digits: int = 0) -> str:
    """The median and, for several runs, the range: "1,234 /s (1,100–1,300)"."""
    fmt = f"{{:,.{digits}f}}"
    text = fmt.format(statistics.median(values)) + unit
    if len(values) > 1:
        text += f" ({fmt.format(min(values))}–{fmt.format(max(values))})"
    return text


def render(runs: list[Run], argv: list[str], code: str, setup: str, load: tuple[float, float]) -> str:
    """The section of BENCHMARKS.md: per mode, the median of the runs and their range."""
    info = machine()
    rows = []
    for replicas in sorted({run.replicas for run in runs}):
        mine = [run for run in runs if run.replicas == replicas]
        rows.append(
            [
                f"REDIS_WAIT_REPLICAS={replicas}",
                spread([run.intake_per_s for run in mine], " /s"),
                spread([run.latency_ms[0] for run in mine], " ms", 1),
                spread([run.latency_ms[1] for run in mine], " ms", 1),
                spread([run.through_tally_per_s for run in mine], " /s"),
                spread([run.primary_cpu_us for run in mine], " µs"),
                spread([1e6 / run.primary_cpu_us for run in mine], " /s"),
            ]
        )
    return "\n".join(
        [
            f"Command: `{shlex.join(['python', '-m', 'bench.wait', *argv])}`",
            f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            f"Code: {code}",
            "Machine: "
            + ", ".join(f"{k} {v}" for k, v in info.items())
            + f", load average (1 min) before/after {load[0]:.2f}/{load[1]:.2f}",
            "",
            setup,
            "",
            table(
                rows,
                [
                    "mode",
                    "intake (cast)",
                    "cast p50",
                    "cast p99",
                    "through the tally step",
                    "primary CPU per vote",
                    "one primary core's ceiling",
                ],
            ),
        ]
    )


def bench_config(redis_url: str, replicas: int) -> Config:
    """The service's configuration for one mode: REDIS_WAIT_REPLICAS = replicas."""
    return Config(
        viber_auth_token="bench-bot-token-0123456789abcdef",
        redis=RedisSettings(redis_url, wait=ReplicaWait(replicas, WAIT_TIMEOUT_MS)),
        voter_id_secret="bench-voter-secret-0123456789abcdef",
        operator_token="bench-operator-token-0123456789",
        poll_file=DEFAULT_POLL_FILE,
    )


def main(argv: list[str] | None = None) -> int:
    """Measure both modes, print and record them."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.wait", description=__doc__.split("\n")[0])
    parser.add_argument("--votes", type=int, default=20_000, help="votes per run")
    parser.add_argument("--processes", type=int, default=2, help="casting processes (gunicorn workers)")
    parser.add_argument("--threads", type=int, default=16, help="casting threads per process")
    parser.add_argument("--rounds", type=int, default=3, help="runs per mode")
    parser.add_argument("--output", type=Path, default=REPORT, help="report file ('-' for none)")
    args = parser.parse_args(argv)
    code_before = code_state()
    load_before = os.getloadavg()[0]
    directory = Path(tempfile.mkdtemp(prefix="viber-vote-wait-"))
    runs = []
    try:
        with RedisServer(directory / "primary", appendonly=True) as primary:
            replica_of = {"replicaof": f"127.0.0.1 {primary.port}"}
            with RedisServer(directory / "replica", appendonly=True, extra=replica_of) as replica:
                with replica.client() as client:
                    while client.info("replication").get("master_link_status") != "up":
                        time.sleep(POLL_S)
                for round_ in range(args.rounds):
                    for replicas in (0, 1) if round_ % 2 == 0 else (1, 0):  # alternate: no mode always first
                        config = bench_config(primary.url, replicas)
                        runs.append(measure(config, args.votes, args.processes, args.threads, primary))
                        print(runs[-1], flush=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    setup = (
        f"A primary and one replica on this machine (appendonly yes, appendfsync always); {args.votes:,} "
        f"votes per run cast with BallotBox.cast from {args.processes} processes × {args.threads} threads; "
        f"WAIT timeout {WAIT_TIMEOUT_MS} ms; {args.rounds} runs per mode, alternating, median (range). "
        "Through the tally step: casting and workers.tally.drain (another process) at once, until every "
        "vote is counted. The clients, the tally process and both servers share the machine's cores: "
        "the rates are bounded by the clients' CPU. The primary's CPU per vote (cast, tally and "
        "replication, including fsync) gives the ceiling of one primary, whose commands run on one core. "
        "Rerun with `make bench-wait`; on a shared machine the load average above says how busy it was."
    )
    load = (load_before, os.getloadavg()[0])
    text = render(runs, argv, describe_code(code_before, code_state()), setup, load)
    print(text)
    if str(args.output) != "-":
        write_section(args.output, "Waiting for a replica (WAIT)", text)
        print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
