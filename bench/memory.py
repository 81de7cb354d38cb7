"""`python -m bench.memory` (make bench-memory): Redis memory per counted vote.

Loads N votes into a fresh redis-server through the service's own code: BallotBox.cast for
each vote (the webhook's step, in a few processes at once), then workers.tally.drain, which
applies them with apply_batch in batches of 500 as the tally worker does. Confirmations are
transient, so the outbox and queued RQ jobs are deleted before measuring; what remains is
what a poll keeps: claims, ballots, counters. Reports INFO memory's used_memory delta per vote.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import re
import shlex
import shutil
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from redis import Redis

from bench.run import REPORT, code_state, describe_code, machine, table, write_section
from tests.support.redis_server import RedisServer
from webhook.config import DEFAULT_POLL_FILE, Config
from webhook.core.ballot_box import CastOutcome
from webhook.core.identity import IdentityKind, voter_key
from webhook.runtime import Runtime
from webhook.store import keys
from webhook.store.connection import RedisSettings
from webhook.store.streams import VoteEntry
from workers.context import ensure_group
from workers.tally import drain

TARGET_BYTES_PER_VOTE = 64
TOKEN_BASE = 5_300_000_000_000_000_000
SCAN_BATCH = 1000
BUCKET_SUFFIX = re.compile(r":[0-9a-f]{4}$")


@dataclass(frozen=True)
class MemoryResult:
    """Memory used by N counted votes, in total and per kind of key."""

    votes: int
    accepted: int
    counted: int
    used_before: int
    used_after: int
    keys: int
    by_family: dict[str, int]
    """Key family (a bucket's hex replaced by *) -> MEMORY USAGE bytes summed."""
    load_s: float
    tally_s: float

    @property
    def bytes_per_vote(self) -> float:
        """used_memory growth divided by the votes counted."""
        return (self.used_after - self.used_before) / self.votes


def receiver(index: int) -> str:
    """A Viber-like user id (24 characters of base64) for voter number index."""
    return base64.b64encode(index.to_bytes(16, "big")).decode()[:22] + "=="


def cast_share(config: Config, start: int, stop: int, step: int) -> int:
    """Cast votes start, start+step, ... < stop through BallotBox.cast; returns how many were accepted."""
    rt = Runtime.build(config)
    poll = rt.polls.polls[0]
    now = time.time()
    accepted = 0
    for index in range(start, stop, step):
        who = receiver(index)
        voter = voter_key(config.voter_id_secret, IdentityKind.VIBER, who)
        vote = VoteEntry(
            poll=poll.id,
            voter=voter,
            option=index % len(poll.options),
            receiver=rt.seal.seal(who),
            language="en",
            accepted_at=int(now),
            channel="viber",
        )
        outcome = rt.ballot_box.cast(poll, vote, message_token=TOKEN_BASE + index)
        accepted += outcome is CastOutcome.ACCEPTED
    rt.redis.close()
    return accepted


def cast_all(config: Config, votes: int, processes: int) -> int:
    """Cast every vote, spread over processes (one runs in this process)."""
    if processes <= 1:
        return cast_share(config, 0, votes, 1)
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        shares = [pool.submit(cast_share, config, i, votes, processes) for i in range(processes)]
        return sum(share.result() for share in shares)


def used_memory(redis: Redis) -> int:
    """INFO memory's used_memory, in bytes."""
    return int(redis.info("memory")["used_memory"])


def family_sizes(redis: Redis) -> tuple[int, dict[str, int]]:
    """How many keys there are and MEMORY USAGE summed per key family."""
    sizes: Counter[str] = Counter()
    count = 0
    batch: list[bytes] = []
    for key in redis.scan_iter(count=SCAN_BATCH):
        batch.append(key)
        if len(batch) == SCAN_BATCH:
            count += _add_sizes(redis, batch, sizes)
            batch = []
    count += _add_sizes(redis, batch, sizes)
    return count, dict(sizes)


def _add_sizes(redis: Redis, batch: list[bytes], sizes: Counter[str]) -> int:
    """Add MEMORY USAGE of a batch of keys to their families; returns the batch's size."""
    pipe = redis.pipeline(transaction=False)
    for key in batch:
        pipe.memory_usage(key, samples=0)
    for key, size in zip(batch, pipe.execute(), strict=True):
        sizes[BUCKET_SUFFIX.sub(":*", key.decode())] += int(size or 0)
    return len(batch)


def drop_transient(redis: Redis) -> None:
    """Delete what does not outlive the pipeline: queued confirmations, kick flags, RQ jobs."""
    redis.delete(keys.OUTBOX_STREAM, keys.KICK_TALLY, keys.KICK_SEND)
    for key in list(redis.scan_iter(match="rq:*", count=SCAN_BATCH)):
        redis.delete(key)


def measure(votes: int, directory: Path, processes: int = 2, say: bool = True) -> MemoryResult:
    """Load votes into a fresh redis-server through the service's code and measure its memory."""
    with RedisServer(directory, appendonly=False) as server:
        config = Config(
            viber_auth_token="bench-bot-token-0123456789abcdef",
            redis=RedisSettings(server.url),
            voter_id_secret="bench-voter-secret-0123456789abcdef",
            operator_token="bench-operator-token-0123456789",
            poll_file=DEFAULT_POLL_FILE,
        )
        rt = Runtime.build(config)
        scripts = rt.ballot_box.scripts
        for item in dataclasses.fields(scripts):
            rt.redis.script_load(
                getattr(scripts, item.name).script
            )  # scripts are not part of the per-vote cost
        ensure_group(rt.redis, keys.VOTES_STREAM, keys.TALLY_GROUP)
        before = used_memory(rt.redis)
        started = time.monotonic()
        accepted = cast_all(config, votes, processes)
        loaded = time.monotonic()
        if say:
            print(f"cast {accepted} of {votes} votes in {loaded - started:.1f} s", flush=True)
        counted = drain(rt, "bench-memory", budget_s=float("inf"))
        tallied = time.monotonic()
        if say:
            print(f"tallied {counted} in {tallied - loaded:.1f} s", flush=True)
        drop_transient(rt.redis)
        after = used_memory(rt.redis)
        count, families = family_sizes(rt.redis)
        rt.redis.close()
    return MemoryResult(
        votes, accepted, counted, before, after, count, families, loaded - started, tallied - loaded
    )


def render(result: MemoryResult, argv: list[str], code: str) -> str:
    """The memory section of BENCHMARKS.md."""
    info = machine()
    verdict = "PASS" if result.bytes_per_vote <= TARGET_BYTES_PER_VOTE else "FAIL"
    rows = [
        [family, f"{size:,}", f"{size / result.votes:.1f}"]
        for family, size in sorted(result.by_family.items(), key=lambda kv: -kv[1])
    ]
    return "\n".join(
        [
            f"Command: `{shlex.join(['python', '-m', 'bench.memory', *argv])}`",
            f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            f"Code: {code}",
            "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
            "",
            f"{result.votes:,} votes cast with BallotBox.cast and tallied with workers.tally "
            f"({result.counted:,} counted), outbox and RQ jobs deleted: used_memory grew by "
            f"{result.used_after - result.used_before:,} bytes, **{result.bytes_per_vote:.1f} bytes per "
            f"vote** (target ≤ {TARGET_BYTES_PER_VOTE}: {verdict}). {result.keys:,} keys remain.",
            "",
            "MEMORY USAGE per key family (bytes, per vote); the allocator's own overhead makes "
            "used_memory differ slightly:",
            "",
            table(rows, ["key family", "bytes", "per vote"]),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Measure, print and record bytes per vote."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n")[0])
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--processes", type=int, default=2, help="processes casting votes")
    parser.add_argument("--output", type=Path, default=REPORT, help="report file ('-' for none)")
    args = parser.parse_args(argv)
    code_before = code_state()
    directory = Path(tempfile.mkdtemp(prefix="viber-vote-memory-"))
    try:
        result = measure(args.votes, directory, args.processes)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    text = render(result, argv, describe_code(code_before, code_state()))
    print(text)
    if str(args.output) != "-":
        write_section(args.output, "Memory", text)
        print(f"\nwrote {args.output}")
    ok = result.accepted == result.counted == args.votes
    return 0 if ok and result.bytes_per_vote <= TARGET_BYTES_PER_VOTE else 1


if __name__ == "__main__":
    sys.exit(main())
