"""`python -m bench.sustained` (make bench-sustained): a steady rate held for minutes, memory watched.

The Procfile stack takes callbacks at a fixed offered rate (distinct voters plus the usual duplicates
and retries) for --seconds; every --every seconds the resident memory of each process kind and
Redis's used_memory are sampled. Memory is flat when the web and worker processes hold what they
held after the first minute, and Redis grows by the ballots alone: its growth per vote, minus what
a stored vote costs (bench.memory, 52.5 bytes at a million votes; more at fewer, its buckets
filling), stays near zero, and the streams end empty. The checks of `make bench` apply: every vote
counted once and confirmed once. The section "Sustained" of BENCHMARKS.md is written.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from redis import Redis

from bench.loadgen import percentile
from bench.run import (
    REPORT,
    WORKDIR,
    Settings,
    code_state,
    cpu_table,
    descendants,
    describe_code,
    machine,
    measure_pipeline,
    service_cpu_us_per_vote,
    table,
    write_section,
)
from tests.support.redis_server import RedisServer
from tests.support.stack import Stack
from webhook.config import DEFAULT_POLL_FILE
from webhook.core.polls import load_polls
from webhook.store import keys

MIB = 1024 * 1024
POLL_ID = load_polls(DEFAULT_POLL_FILE).polls[0].id
"""The poll the load generator votes in (bench.run's)."""


def rss_bytes(pids: list[int]) -> int:
    """Resident memory of processes, from /proc (VmRSS; a process gone meanwhile counts 0)."""
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += next(
            (int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0
        )
    return total


@dataclass
class Sample:
    """Memory at one moment of the run."""

    at_s: float
    rss: dict[str, int]
    redis_used: int
    counted: int
    queued_votes: int
    queued_replies: int


@dataclass
class MemoryWatch:
    """Samples memory every `every_s` while a run goes on (bench.run.Watch)."""

    every_s: float
    samples: list[Sample] = field(default_factory=list)

    @contextmanager
    def __call__(self, stack: Stack, server: RedisServer, redis: Redis) -> Iterator[None]:
        """Sample until the block ends (the run drained), once more at its end."""
        stopping = threading.Event()
        started = time.monotonic()

        def sample() -> None:
            rss = {
                name: rss_bytes(descendants([p.pid for p in procs]))
                for name, procs in stack.processes.items()
            }
            rss["redis (RSS)"] = rss_bytes([server.pid] if server.pid else [])
            pipe = redis.pipeline(transaction=False)
            pipe.info("memory").hvals(keys.counts(POLL_ID))
            pipe.xlen(keys.VOTES_STREAM).xlen(keys.OUTBOX_STREAM)
            info, counts, votes, replies = pipe.execute()
            counted = sum(int(v) for v in counts)
            self.samples.append(
                Sample(time.monotonic() - started, rss, int(info["used_memory"]), counted, votes, replies)
            )

        def loop() -> None:
            while not stopping.wait(self.every_s):
                sample()

        sample()
        thread = threading.Thread(target=loop, name="bench-memory-watch", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stopping.set()
            thread.join()
            sample()


def memory_table(samples: list[Sample]) -> str:
    """Each sample's memory, per process kind (MiB) and Redis used_memory."""
    names = list(samples[0].rss)
    rows = [
        [
            f"{s.at_s:,.0f}",
            f"{s.counted:,}",
            *(f"{s.rss.get(n, 0) / MIB:,.1f}" for n in names),
            f"{s.redis_used / MIB:,.1f}",
            f"{s.queued_votes:,} / {s.queued_replies:,}",
        ]
        for s in samples
    ]
    header = [
        "s",
        "votes counted",
        *(f"{n} RSS MiB" for n in names),
        "Redis used_memory MiB",
        "queued votes / replies",
    ]
    return table(rows, header)


def main(argv: list[str] | None = None) -> int:
    """Run the steady rate, print and write the memory samples and the run's checks."""
    parser = argparse.ArgumentParser(prog="python -m bench.sustained", description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=500.0, help="offered callbacks/s")
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--every", type=float, default=30.0, help="seconds between memory samples")
    parser.add_argument("--workdir", type=Path, default=WORKDIR)
    parser.add_argument("--output", type=Path, default=REPORT, help="report file ('-' for none)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    code_before = code_state()
    settings = Settings(workdir=args.workdir)
    watch = MemoryWatch(args.every)
    voters = int(args.rate * args.seconds / (1 + settings.duplicate_share + settings.retry_share))
    run = measure_pipeline(settings, "sustained", voters, rate=args.rate, watch=watch)
    first = next((s for s in watch.samples if s.at_s >= 60), watch.samples[0])
    last = watch.samples[-1]
    redis_per_vote = (last.redis_used - first.redis_used) / max(1, last.counted - first.counted)
    growth = {n: (last.rss.get(n, 0) - first.rss.get(n, 0)) / MIB for n in first.rss}
    latencies = run.confirm_latency_s or [float("nan")]
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    drained = "never" if run.drain_s is None else f"{run.drain_s:.1f} s"
    lines = [
        f"Command: `python -m bench.sustained --rate {args.rate:g} --seconds {args.seconds:g}`",
        f"Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"Code: {describe_code(code_before, code_state())}",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in machine().items()),
        "",
        f"{len(run.plan.items()):,} callbacks ({run.plan.voters:,} voters) offered at {args.rate:,.0f}/s for "
        f"{args.seconds:,.0f} s: achieved {run.load.rate:,.0f}/s, {run.load.late:,} callbacks sent more than "
        f"10 ms behind schedule; drained {drained} after the last callback; "
        f"vote-to-confirmation p50 {p50:.2f} s, p99 {p99:.2f} s; "
        f"service CPU per confirmed vote {service_cpu_us_per_vote(run):,.0f} µs.",
        "",
        "Memory from the first minute to the end: "
        + ", ".join(f"{n} {g:+,.1f} MiB" for n, g in growth.items())
        + f"; Redis used_memory grew {redis_per_vote:,.1f} bytes per vote counted meanwhile (the stored "
        "ballot and claim; `make bench-memory`: 52.5 bytes per vote at a million votes).",
        "",
        memory_table(watch.samples),
        "",
        "### Checks",
        "",
        *(f"- {check.line()}" for check in run.checks),
        "",
        "### CPU",
        "",
        cpu_table(run),
    ]
    text = "\n".join(lines)
    print(text)
    if str(args.output) != "-":
        write_section(args.output, "Sustained", text)
        print(f"\nwrote {args.output}")
    return 0 if run.passed else 1


if __name__ == "__main__":
    sys.exit(main())
