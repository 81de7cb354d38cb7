"""`python -m bench.run` (make bench): throughput and latency of the vote pipeline and its baselines.

Phases, each on fresh processes and a fresh redis-server: (1) the minimal vote path
(bench.baselines:create_minimal_app, the same transaction done by hand); (2) the full pipeline, as
fast as possible, N voters plus duplicates and retries, until every vote is counted and confirmed;
(1') the minimal path again, so a machine that sped up or slowed down during the run shows, and
the ratios use the faster; (1'') the minimal path stripped further (no stream write, no Redis) and
the framework floor (bench.baselines:floor_app), to locate the unavoidable cost; (3) the pipeline
again at a steady offered rate, for latencies; (4) the naive design (one forking RQ job per vote);
(5) the sample-bot style (reply inside the request). The minimal path runs the pipeline's own plan
(the same voters, duplicates and retries, signed the same way) through the same load generator.
Correctness checks are printed PASS/FAIL, figures against their targets, and BENCHMARKS.md is
written with the machine's description.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import resource
import runpy
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from redis import Redis

from bench import loadgen
from bench.baselines import NAIVE_QUEUE
from bench.loadgen import Kind, LoadResult, Plan, Target, percentile
from tests.support.fake_viber import FakeViber
from tests.support.redis_server import RedisServer, find_redis_server, free_port
from tests.support.stack import ROOT, Stack
from webhook.config import DEFAULT_POLL_FILE
from webhook.core.ledger import recount
from webhook.core.polls import Poll, load_polls
from webhook.store import keys

BOT_TOKEN = "bench-bot-token-0123456789abcdef"
VOTER_ID_SECRET = "bench-voter-secret-0123456789abcdef"
OPERATOR_TOKEN = "bench-operator-token-0123456789"
REPORT = ROOT / "BENCHMARKS.md"
WORKDIR = ROOT / "var" / "bench"
WEBHOOK_PATH = "/viber/webhook"
UNUSED_REDIS_URL = "redis://127.0.0.1:1/0"
"""For apps that never touch Redis but whose config requires a URL."""
POLL_INTERVAL_S = 0.1
STALL_TIMEOUT_S = 60.0
"""Give up waiting for the pipeline to drain after this long without progress (seconds)."""
SETTLE_S = 0.5
"""Wait after draining for late extra messages before checking (seconds)."""
MACHINE = "machine"
OTHERS = "other processes on the machine"
SETUP = "loadgen start-up"
CONFIRM_TEXT = re.compile(r"your vote \((.*)\) is counted")
ALREADY_TEXT = "already voted"

TARGET_INTAKE_VS_MINIMAL = 0.8
TARGET_E2E_VS_MINIMAL = 0.6
TARGET_CPU_VS_MINIMAL = 1.3
SERVICE_PROCESSES = ("web", "tally", "send", "clock", "redis")
"""The processes whose CPU a vote costs the service (the load generator and fake Viber are not)."""
TARGET_E2E_VS_NAIVE = 10.0
TARGET_INTAKE_VS_SYNC = 20.0
TARGET_WEBHOOK_P99_S = 0.050
TARGET_CONFIRM_P99_S = 2.0
TARGET_DRAIN_S = 5.0


@dataclass(frozen=True)
class Settings:
    """How every phase runs: where, with which Redis durability, how the load is shaped."""

    workdir: Path = WORKDIR
    aof: bool = True
    processes: int = 2
    connections: int = 4
    viber_latency_s: float = 0.1
    web_concurrency: int = 4
    duplicate_share: float = 0.05
    retry_share: float = 0.05
    scale: Mapping[str, int] = field(default_factory=dict)
    """Copies of each Procfile process (default one each, as the Procfile runs)."""
    verbose: bool = True

    def say(self, text: str) -> None:
        """Print progress unless quiet."""
        if self.verbose:
            print(text, flush=True)


@dataclass(frozen=True)
class Check:
    """One correctness check of a run."""

    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        """PASS/FAIL, the check and what was seen."""
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name}: {self.detail}"


@dataclass
class Observed:
    """What the pipeline did with a plan: counters, ballots, replies, queues."""

    counts: dict[str, int]
    ballots: dict[str, int]
    recount_matches: bool
    confirmed: dict[str, list[str]]
    """Receiver -> option ids of the confirmations they received."""
    already: Counter[str]
    """Receiver -> "already voted" replies received."""
    queues: dict[str, int]


@dataclass
class PipelineRun:
    """One run of the full pipeline: the load, when it was counted and drained, the checks."""

    name: str
    plan: Plan
    load: LoadResult
    counted_at: float | None
    drained_at: float | None
    last_reply_at: float | None
    confirm_latency_s: list[float]
    checks: list[Check]
    intake_cpu_s: dict[str, float]
    """CPU seconds per kind of process while the callbacks were being sent."""
    cpu_s: dict[str, float]
    """CPU seconds per kind of process from the first callback until drained."""

    @property
    def passed(self) -> bool:
        """Whether every check passed."""
        return all(check.passed for check in self.checks)

    @property
    def end_to_end_rate(self) -> float | None:
        """Votes counted and confirmed per second, from the first callback to the last confirmation."""
        if self.drained_at is None or self.last_reply_at is None:
            return None
        return self.plan.voters / (self.last_reply_at - self.load.started_at)

    @property
    def tally_rate(self) -> float | None:
        """Votes counted per second, from the first callback to the counters reaching N."""
        if self.counted_at is None:
            return None
        return self.plan.voters / (self.counted_at - self.load.started_at)

    @property
    def drain_s(self) -> float | None:
        """From the last callback's answer to the pipeline being empty and every voter confirmed."""
        if self.drained_at is None:
            return None
        return max(0.0, self.drained_at - self.load.finished_at)


@dataclass
class NaiveRun:
    """The naive design's run: its load and when its counters reached N."""

    load: LoadResult
    votes: int
    counted_at: float | None
    counted: int

    @property
    def end_to_end_rate(self) -> float | None:
        """Votes counted per second, from the first callback to the last count."""
        if self.counted_at is None:
            return None
        return self.votes / (self.counted_at - self.load.started_at)


@dataclass(frozen=True)
class Figure:
    """One benchmark figure against its target."""

    name: str
    value: str
    target: str = ""
    ratio: float | None = None
    passed: bool | None = None

    def cells(self) -> list[str]:
        """Table cells: figure, value, target, ratio, result."""
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}"
        result = {True: "PASS", False: "FAIL", None: "" if not self.target else "n/a"}[self.passed]
        return [self.name, self.value, self.target, ratio, result]


# Processes


def deployment_env(settings: Settings, redis_url: str, viber_url: str) -> dict[str, str]:
    """The environment of the web and worker processes."""
    return {
        "VIBER_AUTH_TOKEN": BOT_TOKEN,
        "VIBER_API_URL": viber_url,
        "REDIS_URL": redis_url,
        "VOTER_ID_SECRET": VOTER_ID_SECRET,
        "OPERATOR_TOKEN": OPERATOR_TOKEN,
        "POLL_FILE": DEFAULT_POLL_FILE,
        "WEB_CONCURRENCY": str(settings.web_concurrency),
    }


@contextmanager
def running_stack(
    environ: Mapping[str, str],
    log_dir: Path,
    commands: Mapping[str, str] | None = None,
    counts: Mapping[str, int] | None = None,
) -> Iterator[Stack]:
    """A Stack from the Procfile, or from other commands run the same way."""
    stack = Stack(environ, log_dir, port=free_port(), counts=counts)
    if commands is not None:
        stack.commands = dict(commands)
        stack.counts = {name: 1 for name in commands} | dict(counts or {})
    try:
        stack.start(timeout_s=30.0)
        yield stack
    finally:
        stack.stop()


def phase_dir(settings: Settings, name: str) -> Path:
    """A phase's empty working directory (a previous run's AOF would be loaded again)."""
    directory = settings.workdir / name
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


@contextmanager
def redis_for(settings: Settings, directory: Path) -> Iterator[RedisServer]:
    """A fresh redis-server, with the append-only file fsynced on every write unless --no-aof."""
    with RedisServer(directory, appendonly=settings.aof, appendfsync="always") as server:
        yield server


@contextmanager
def fake_viber(settings: Settings) -> Iterator[FakeViber]:
    """The fake Viber API, answering each send_message after the configured latency."""
    with FakeViber(latency_s=settings.viber_latency_s, auth_token=BOT_TOKEN) as fake:
        yield fake


def proc_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its reaped children, from /proc (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def descendants(roots: list[int]) -> list[int]:
    """The processes and all their live descendants."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def machine_busy_s() -> float:
    """CPU seconds every process on the machine has used since boot, from /proc/stat."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait


def cpu_snapshot(stack: Stack, redis_server: RedisServer | None) -> dict[str, float]:
    """CPU seconds used so far by the machine, each kind of process, this process (fake Viber)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    snapshot = {MACHINE: machine_busy_s(), "bench (fake Viber, monitor)": usage.ru_utime + usage.ru_stime}
    for name, processes in stack.processes.items():
        pids = descendants([p.pid for p in processes])
        snapshot[name] = sum(proc_cpu_s(pid) for pid in pids)
    if redis_server is not None and redis_server.pid is not None:
        snapshot["redis"] = proc_cpu_s(redis_server.pid)
    return snapshot


def cpu_used(before: Mapping[str, float], after: Mapping[str, float], load: LoadResult) -> dict[str, float]:
    """CPU seconds per kind of process between two snapshots, and what the rest of the machine used."""
    used = {k: after[k] - before.get(k, 0.0) for k in after if k != MACHINE}
    used |= {"loadgen": load.cpu_s, SETUP: load.setup_cpu_s}
    used[OTHERS] = max(0.0, after[MACHINE] - before[MACHINE] - sum(used.values()))
    return used


# The pipeline


class Monitor(threading.Thread):
    """Follows the pipeline while the load runs: counters, queues and the replies Viber got."""

    def __init__(self, redis: Redis, fake: FakeViber, plan: Plan, poll: Poll, settings: Settings) -> None:
        """Watch one run of a plan."""
        super().__init__(name="bench-monitor", daemon=True)
        self.redis, self.fake, self.plan, self.poll, self.settings = redis, fake, plan, poll, settings
        self.option_by_label = {option.label: option.id for option in poll.options}
        self.expected_already = len({v for v, _, _, kind in plan.items() if kind is Kind.DUPLICATE})
        self.load_done = threading.Event()
        self.stopping = threading.Event()
        self.confirmed: dict[str, list[str]] = {}
        self.confirmed_at: dict[str, float] = {}
        self.already: Counter[str] = Counter()
        self.other_messages = 0
        self.replies = 0
        self.last_reply_at: float | None = None
        self.counted_at: float | None = None
        self.drained_at: float | None = None

    def run(self) -> None:
        """Poll until drained, stalled or stopped."""
        progress, progress_at, said_at = None, time.monotonic(), time.monotonic()
        while not self.stopping.is_set():
            self._collect_replies()
            pipe = self.redis.pipeline(transaction=False)
            pipe.xlen(keys.VOTES_STREAM).xlen(keys.OUTBOX_STREAM).hvals(keys.counts(self.poll.id))
            votes_queued, outbox_queued, values = pipe.execute()
            counted = sum(int(v) for v in values)
            now = time.time()
            if self.counted_at is None and counted >= self.plan.voters:
                self.counted_at = now
            state = (counted, votes_queued, outbox_queued, self.replies)
            if state != progress:
                progress, progress_at = state, time.monotonic()
            if time.monotonic() - said_at >= 5:
                said_at = time.monotonic()
                self.settings.say(
                    f"  counted {counted}, confirmed {len(self.confirmed_at)}, queued votes "
                    f"{votes_queued}, queued replies {outbox_queued}"
                )
            if self.load_done.is_set():
                if (
                    votes_queued == 0
                    and outbox_queued == 0
                    and len(self.confirmed_at) >= self.plan.voters
                    and sum(self.already.values()) >= self.expected_already
                ):
                    self.drained_at = now
                    break
                if time.monotonic() - progress_at > STALL_TIMEOUT_S:
                    self.settings.say("  no progress for a minute: giving up waiting")
                    break
            time.sleep(POLL_INTERVAL_S)
        time.sleep(SETTLE_S)
        self._collect_replies()

    def _collect_replies(self) -> None:
        """Move the fake's recorded requests into compact per-receiver records."""
        recorded = self.fake.requests
        batch = recorded[: len(recorded)]
        del recorded[: len(batch)]  # only appended to meanwhile, so the first len(batch) are these
        for request in batch:
            body = request.body or {}
            if request.path != "/send_message" or request.headers.get("X-Viber-Auth-Token") != BOT_TOKEN:
                continue
            receiver, text = str(body.get("receiver")), str(body.get("text", ""))
            self.replies += 1
            self.last_reply_at = max(self.last_reply_at or 0.0, request.received_at)
            match = CONFIRM_TEXT.search(text)
            if match:
                option = self.option_by_label.get(match.group(1), match.group(1))
                self.confirmed.setdefault(receiver, []).append(option)
                self.confirmed_at.setdefault(receiver, request.received_at)
            elif ALREADY_TEXT in text:
                self.already[receiver] += 1
            else:
                self.other_messages += 1


Watch = Callable[[Stack, RedisServer, Redis], AbstractContextManager[object]]
"""Something that watches a pipeline run from the first callback until drained (bench.sustained)."""


def measure_pipeline(
    settings: Settings, name: str, voters: int, rate: float | None = None, watch: Watch | None = None
) -> PipelineRun:
    """Run the Procfile stack against a plan of N voters; wait until drained; check the outcome."""
    plan = Plan(voters, settings.duplicate_share, settings.retry_share, seed=voters)
    poll = load_polls(DEFAULT_POLL_FILE).polls[0]
    directory = phase_dir(settings, name)
    with redis_for(settings, directory / "redis") as server, fake_viber(settings) as fake:
        environ = deployment_env(settings, server.url, fake.url)
        with (
            running_stack(environ, directory / "logs", counts=settings.scale) as stack,
            server.client() as redis,
        ):
            monitor = Monitor(redis, fake, plan, poll, settings)
            pace = f"at {rate:g}/s" if rate else "as fast as possible"
            settings.say(f"{name}: {voters} voters ({len(plan.items())} callbacks) {pace}")
            target = Target(
                stack.base_url + WEBHOOK_PATH, BOT_TOKEN, settings.processes, settings.connections, rate
            )
            before: dict[str, float] = {}
            monitor.start()
            try:
                with watch(stack, server, redis) if watch else nullcontext():
                    load = loadgen.run(plan, target, lambda: before.update(cpu_snapshot(stack, server)))
                    monitor.load_done.set()
                    mid = cpu_snapshot(stack, server)
                    monitor.join()
            finally:
                monitor.stopping.set()
            after = cpu_snapshot(stack, server)
            observed = observe(redis, poll, monitor)
    checks = verify(plan, load.statuses(), observed)
    if monitor.other_messages:
        checks.append(Check("no unexpected replies", False, f"{monitor.other_messages} other message(s)"))
    for check in checks:
        settings.say("  " + check.line())
    return PipelineRun(
        name=name,
        plan=plan,
        load=load,
        counted_at=monitor.counted_at,
        drained_at=monitor.drained_at,
        last_reply_at=monitor.last_reply_at,
        confirm_latency_s=confirm_latencies(plan, load, monitor.confirmed_at),
        checks=checks,
        intake_cpu_s=cpu_used(before, mid, load),
        cpu_s=cpu_used(before, after, load),
    )


def confirm_latencies(plan: Plan, load: LoadResult, confirmed_at: Mapping[str, float]) -> list[float]:
    """Per confirmed voter: from sending their first callback to Viber receiving the confirmation."""
    items = plan.items()
    first_sent: dict[str, float] = {}
    for position, sent_at in zip(load.index, load.sent_at, strict=True):
        who = plan.receiver(items[position][0])
        first_sent[who] = min(sent_at, first_sent.get(who, sent_at))
    return [confirmed_at[who] - sent for who, sent in first_sent.items() if who in confirmed_at]


def observe(redis: Redis, poll: Poll, monitor: Monitor) -> Observed:
    """Read what the pipeline left in Redis and what Viber received."""
    tally = recount(redis, poll)
    pipe = redis.pipeline(transaction=False)
    for key in (keys.VOTES_STREAM, keys.OUTBOX_STREAM):
        pipe.xlen(key)
    pipe.zcard(keys.OUTBOX_RETRY).llen(keys.OUTBOX_DEAD)
    votes, outbox, retry, dead = pipe.execute()
    return Observed(
        counts=tally.counters,
        ballots=tally.recounted,
        recount_matches=tally.matches,
        confirmed=monitor.confirmed,
        already=monitor.already,
        queues={"votes": votes, "outbox": outbox, "retry": retry, "dead": dead},
    )


def verify(plan: Plan, statuses: Mapping[int, int], seen: Observed) -> list[Check]:
    """The run's correctness checks: every vote counted once and confirmed once, nothing left."""
    sent: dict[str, set[str]] = {}
    duplicates: set[str] = set()
    for voter, option, _, kind in plan.items():
        sent.setdefault(plan.receiver(voter), set()).add(plan.options[option])
        if kind is Kind.DUPLICATE:
            duplicates.add(plan.receiver(voter))
    answered = statuses.get(200, 0)
    total = sum(statuses.values())
    counted = sum(seen.counts.values())
    confirmations = Counter({r: len(options) for r, options in seen.confirmed.items()})
    wrong_count = [r for r in sent if confirmations.get(r, 0) != 1]
    strangers = [r for r in seen.confirmed if r not in sent]
    chosen = Counter(options[0] for options in seen.confirmed.values() if len(options) == 1)
    foreign_choice = [r for r, options in seen.confirmed.items() if r in sent and not set(options) <= sent[r]]
    stored = sum(seen.ballots.values())
    already_wrong = [r for r in set(seen.already) | duplicates if seen.already.get(r, 0) != (r in duplicates)]
    leftovers = {k: v for k, v in seen.queues.items() if v}
    return [
        Check("every callback answered 200", answered == total, f"{answered} of {total}; {dict(statuses)}"),
        Check(
            "counters total == distinct voters sent", counted == plan.voters, f"{counted} == {plan.voters}"
        ),
        Check(
            "every voter received exactly one confirmation",
            not wrong_count and not strangers and len(seen.confirmed) == plan.voters,
            f"{len(seen.confirmed)} voters confirmed, {len(wrong_count)} without exactly one, "
            f"{len(strangers)} unknown receivers",
        ),
        Check(
            "no duplicates counted",
            stored == plan.voters
            and seen.recount_matches
            and chosen == Counter({k: v for k, v in seen.counts.items() if v})
            and not foreign_choice,
            f"{stored} ballots stored for {plan.voters} voters; recount matches counters: "
            f"{seen.recount_matches}; counters {seen.counts} vs confirmed {dict(chosen)}; "
            f"{len(foreign_choice)} confirmed an option they did not send",
        ),
        Check(
            "one 'already voted' reply per duplicate, none for retries",
            not already_wrong,
            f"{sum(seen.already.values())} replies for {len(duplicates)} duplicates, "
            f"{len(already_wrong)} voters with the wrong number",
        ),
        Check(
            "queues empty", not leftovers, f"left: {leftovers}" if leftovers else "votes, outbox, retry, dead"
        ),
    ]


# Baselines


def measure_floor(settings: Settings, requests: int, phase: str) -> tuple[LoadResult, dict[str, float]]:
    """Requests per second of a Flask endpoint that only answers 200, under the same gunicorn."""
    environ = {"WEB_CONCURRENCY": str(settings.web_concurrency)}
    commands = {"web": "gunicorn bench.baselines:floor_app"}
    with running_stack(environ, phase_dir(settings, f"floor-{phase}") / "logs", commands) as stack:
        settings.say(f"floor ({phase} the pipeline): {requests} requests as fast as possible")
        target = Target(stack.base_url + WEBHOOK_PATH, BOT_TOKEN, settings.processes, settings.connections)
        before: dict[str, float] = {}
        load = loadgen.run(
            Plan(requests, seed=requests), target, lambda: before.update(cpu_snapshot(stack, None))
        )
        after = cpu_snapshot(stack, None)
    settings.say(f"  {load.rate:,.0f} requests/s")
    return load, cpu_used(before, after, load)


@dataclass
class MinimalRun:
    """One run of the minimal vote path (or a variant stripped further): its load and CPU."""

    variant: str
    plan: Plan
    load: LoadResult
    cpu_s: dict[str, float]

    @property
    def cpu_us_per_vote(self) -> float:
        """Web and Redis CPU per distinct voter (the pipeline's denominator: one confirmed vote each)."""
        return 1e6 * (self.cpu_s.get("web", 0.0) + self.cpu_s.get("redis", 0.0)) / self.plan.voters


def measure_minimal(settings: Settings, voters: int, variant: str, phase: str) -> MinimalRun:
    """The minimal vote path under the same gunicorn line, Redis fsync policy, plan and load generator."""
    plan = Plan(voters, settings.duplicate_share, settings.retry_share, seed=voters)
    directory = phase_dir(settings, f"minimal-{variant}-{phase}")
    commands = {"web": f"gunicorn 'bench.baselines:create_minimal_app(\"{variant}\")'"}
    with redis_for(settings, directory / "redis") as server:
        environ = deployment_env(settings, server.url, "http://127.0.0.1:1")
        with running_stack(environ, directory / "logs", commands) as stack:
            settings.say(f"minimal vote path, {variant} ({phase}): {len(plan.items())} callbacks")
            target = Target(
                stack.base_url + WEBHOOK_PATH, BOT_TOKEN, settings.processes, settings.connections
            )
            before: dict[str, float] = {}
            load = loadgen.run(plan, target, lambda: before.update(cpu_snapshot(stack, server)))
            after = cpu_snapshot(stack, server)
    run = MinimalRun(variant, plan, load, cpu_used(before, after, load))
    settings.say(f"  {load.rate:,.0f} callbacks/s, {run.cpu_us_per_vote:,.0f} µs web + Redis CPU per vote")
    return run


STRIPPED = {"no-stream": "no stream write (HSETNX only)", "no-redis": "no Redis call"}
"""The minimal path's variants stripped further, and how the report names them."""


def service_cpu_us_per_vote(run: PipelineRun) -> float:
    """The service's CPU (web, workers, clock, Redis) from the first callback until drained, per vote."""
    return 1e6 * sum(run.cpu_s.get(name, 0.0) for name in SERVICE_PROCESSES) / run.plan.voters


def measure_naive(settings: Settings, votes: int, workers: int) -> NaiveRun:
    """Votes per second the naive design counts: one job per vote, RQ's forking worker."""
    directory = phase_dir(settings, "naive")
    poll = load_polls(DEFAULT_POLL_FILE).polls[0]
    with redis_for(settings, directory / "redis") as server:
        environ = deployment_env(settings, server.url, "http://127.0.0.1:1/pa")
        commands = {
            "web": "gunicorn 'bench.baselines:create_naive_app()'",
            "naive": f"rq worker {NAIVE_QUEUE} --url $REDIS_URL -c bench.baselines",
        }
        counts = {"web": 1, "naive": workers}
        with running_stack(environ, directory / "logs", commands, counts) as stack:
            settings.say(f"naive: {votes} votes as fast as possible, {workers} forking RQ worker(s)")
            target = Target(
                stack.base_url + WEBHOOK_PATH, BOT_TOKEN, settings.processes, settings.connections
            )
            load = loadgen.run(Plan(votes, seed=votes), target)
            with server.client() as redis:
                counted, counted_at = wait_counted(redis, keys.counts(poll.id), votes)
    return NaiveRun(load, votes, counted_at, counted)


def wait_counted(redis: Redis, counters: str, votes: int) -> tuple[int, float | None]:
    """Wait until counters add up to votes (or stop growing); returns the count and when."""
    counted, last, progress_at = 0, -1, time.monotonic()
    while time.monotonic() - progress_at < STALL_TIMEOUT_S:
        counted = sum(int(v) for v in redis.hvals(counters))
        if counted >= votes:
            return counted, time.time()
        if counted != last:
            progress_at, last = time.monotonic(), counted
        time.sleep(POLL_INTERVAL_S)
    return counted, None


def measure_sync(settings: Settings, requests: int) -> tuple[LoadResult, int]:
    """Callbacks per second when each reply is sent to Viber inside the webhook request."""
    directory = phase_dir(settings, "sync")
    with fake_viber(settings) as fake:
        environ = deployment_env(settings, UNUSED_REDIS_URL, fake.url)
        commands = {"web": "gunicorn 'bench.baselines:create_sync_reply_app()'"}
        with running_stack(environ, directory / "logs", commands) as stack:
            settings.say(f"sync reply: {requests} callbacks as fast as possible")
            target = Target(
                stack.base_url + WEBHOOK_PATH, BOT_TOKEN, settings.processes, settings.connections
            )
            load = loadgen.run(Plan(requests, seed=requests), target)
        return load, len(fake.sent_messages())


# Figures and the report


def _rate(value: float | None, unit: str) -> str:
    """A rate for the table."""
    return "n/a" if value is None else f"{value:,.0f} {unit}"


def _vs(name: str, value: float | None, reference: float | None, minimum: float, what: str) -> Figure:
    """A ratio figure: value ÷ reference against a minimum."""
    if value is None or not reference:
        return Figure(name, "n/a", f"≥ {minimum:g} × {what}")
    ratio = value / reference
    return Figure(
        name, f"{value:,.0f}/s vs {reference:,.0f}/s", f"≥ {minimum:g} × {what}", ratio, ratio >= minimum
    )


def _at_most(name: str, value: float | None, limit: float, unit: str = "s", scale: float = 1.0) -> Figure:
    """A figure that must stay at or below a limit."""
    shown = f"≤ {limit * scale:g} {unit}"
    if value is None:
        return Figure(name, "n/a (did not drain)", shown, None, False)
    return Figure(name, f"{value * scale:,.1f} {unit}", shown, value / limit, value <= limit)


def figures(
    main: PipelineRun,
    paced: PipelineRun | None,
    minimal: MinimalRun | None,
    stripped: list[MinimalRun],
    floor: tuple[LoadResult, dict[str, float]] | None,
    naive: NaiveRun | None,
    sync: LoadResult | None,
    rate: float,
) -> list[Figure]:
    """Every figure of the run, with targets and ratios where the issue sets them."""
    minimal_rate = minimal.load.rate if minimal else None
    naive_rate = naive.end_to_end_rate if naive else None
    sync_rate = sync.rate if sync else None
    service_us = service_cpu_us_per_vote(main)
    rows = [
        Figure(
            "minimal vote path (HMAC, json, keyed hash, HSETNX + XADD), callbacks/s",
            _rate(minimal_rate, "/s"),
        )
    ]
    for run in stripped:
        rows.append(Figure(f"minimal path, {STRIPPED[run.variant]}, callbacks/s", _rate(run.load.rate, "/s")))
    if floor is not None:
        rows.append(
            Figure("framework floor (Flask 200, reads nothing), requests/s", _rate(floor[0].rate, "/s"))
        )
    rows += [
        Figure("naive design (RQ job per vote), votes counted/s", _rate(naive_rate, "/s")),
        Figure("sample-bot style (reply in request), callbacks/s", _rate(sync_rate, "/s")),
        Figure("intake, callbacks/s", _rate(main.load.rate, "/s")),
        Figure("tally (counted), votes/s", _rate(main.tally_rate, "/s")),
        Figure(
            f"end-to-end, {main.plan.voters:,} votes counted + confirmed/s", _rate(main.end_to_end_rate, "/s")
        ),
        _vs("intake vs minimal vote path", main.load.rate, minimal_rate, TARGET_INTAKE_VS_MINIMAL, "minimal"),
        _vs(
            "end-to-end vs minimal vote path",
            main.end_to_end_rate,
            minimal_rate,
            TARGET_E2E_VS_MINIMAL,
            "minimal",
        ),
    ]
    for run in [*([minimal] if minimal else []), *stripped]:
        name = "minimal path" if run is minimal else f"minimal path, {STRIPPED[run.variant]}"
        rows.append(Figure(f"CPU per vote, {name} (web + Redis)", f"{run.cpu_us_per_vote:,.0f} µs"))
    rows.append(
        Figure(
            "CPU per confirmed vote, service (web + tally + send + clock + Redis)", f"{service_us:,.0f} µs"
        )
    )
    for process in SERVICE_PROCESSES:
        us = 1e6 * main.cpu_s.get(process, 0.0) / main.plan.voters
        rows.append(Figure(f"  of which {process}", f"{us:,.0f} µs"))
    if minimal is not None:
        web_us = 1e6 * minimal.cpu_s.get("web", 0.0) / minimal.plan.voters
        rows.append(Figure("  the minimal path's web alone, for comparison", f"{web_us:,.0f} µs"))
    if minimal is not None:
        ratio = service_us / minimal.cpu_us_per_vote
        target = f"≤ {TARGET_CPU_VS_MINIMAL:g} × minimal"
        rows.append(
            Figure(
                "service CPU vs minimal path CPU, per vote",
                f"{ratio:.2f} ×",
                target,
                ratio,
                ratio <= TARGET_CPU_VS_MINIMAL,
            )
        )
    rows += [
        _vs("end-to-end vs naive", main.end_to_end_rate, naive_rate, TARGET_E2E_VS_NAIVE, "naive"),
        _vs("intake vs sample-bot style", main.load.rate, sync_rate, TARGET_INTAKE_VS_SYNC, "sample bot"),
    ]
    if paced is not None:
        offered = f"at {rate:,.0f}/s offered"
        confirm_p99 = percentile(paced.confirm_latency_s, 99) if paced.confirm_latency_s else None
        rows += [
            Figure(f"achieved rate {offered}", _rate(paced.load.rate, "/s")),
            Figure(
                f"callbacks sent > 10 ms behind schedule {offered}",
                f"{paced.load.late:,} (at most {paced.load.max_lag_s * 1000:,.0f} ms)",
            ),
            Figure(f"webhook p50 {offered}", f"{paced.load.latency_percentile(50) * 1000:.1f} ms"),
            _at_most(
                f"webhook p99 {offered}", paced.load.latency_percentile(99), TARGET_WEBHOOK_P99_S, "ms", 1000
            ),
            Figure(f"vote-to-confirmation p50 {offered}", f"{percentile(paced.confirm_latency_s, 50):.2f} s"),
            _at_most(f"vote-to-confirmation p99 {offered}", confirm_p99, TARGET_CONFIRM_P99_S),
            _at_most(f"drained after the last callback {offered}", paced.drain_s, TARGET_DRAIN_S),
            Figure(f"CPU per confirmed vote {offered}", f"{service_cpu_us_per_vote(paced):,.0f} µs"),
        ]
    return rows


def baseline_checks(
    minimals: Mapping[str, MinimalRun],
    floor: tuple[LoadResult, dict[str, float]] | None,
    naive: NaiveRun | None,
    sync: tuple[LoadResult, int] | None,
) -> list[Check]:
    """The baselines did what they are meant to, so their figures mean something."""
    checks = []
    for phase, run in minimals.items():
        statuses = run.load.statuses()
        name = f"minimal path, {run.variant} ({phase}): every callback answered 200"
        checks.append(Check(name, set(statuses) == {200}, str(dict(statuses))))
    if floor is not None:
        statuses = floor[0].statuses()
        checks.append(Check("floor: every request answered 200", set(statuses) == {200}, str(dict(statuses))))
    if naive is not None:
        statuses = naive.load.statuses()
        checks.append(
            Check(
                "naive: every callback answered 200 and every vote counted",
                set(statuses) == {200} and naive.counted == naive.votes,
                f"{dict(statuses)}; counted {naive.counted} of {naive.votes}",
            )
        )
    if sync is not None:
        load, delivered = sync
        statuses = load.statuses()
        checks.append(
            Check(
                "sample-bot style: every callback answered 200 after its reply was delivered",
                set(statuses) == {200} and delivered == load.count,
                f"{dict(statuses)}; {delivered} replies for {load.count} callbacks",
            )
        )
    return checks


def table(rows: list[list[str]], header: list[str]) -> str:
    """A Markdown table, also readable as plain text."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def cpu_table(run: PipelineRun) -> str:
    """Where the CPU went during a run, per kind of process: while sending, and until drained."""
    intake_wall = run.load.duration_s
    wall = (run.drained_at or run.load.finished_at) - run.load.started_at
    apart = (OTHERS, SETUP)
    names = sorted((k for k in run.cpu_s if k not in apart), key=lambda k: -run.intake_cpu_s.get(k, 0.0))
    rows = []
    for name in [*names, "total (this benchmark)", OTHERS]:
        if name == "total (this benchmark)":
            intake = sum(v for k, v in run.intake_cpu_s.items() if k not in apart)
            whole = sum(v for k, v in run.cpu_s.items() if k not in apart)
        else:
            intake, whole = run.intake_cpu_s.get(name, 0.0), run.cpu_s.get(name, 0.0)
        rows.append(
            [name, f"{intake:.1f}", f"{intake / intake_wall:.2f}", f"{whole:.1f}", f"{whole / wall:.2f}"]
        )
    header = ["process", "CPU s, intake", "cores, intake", "CPU s, until drained", "cores, until drained"]
    return table(rows, header) + (
        f"\n\nIntake (callbacks being sent): {intake_wall:.1f} s; until drained: {wall:.1f} s "
        f"(wall time, {os.cpu_count()} cores). Before either, the load generator spent "
        f"{run.cpu_s.get(SETUP, 0.0):.1f} CPU s starting and building and signing its bodies "
        "(counted in neither)."
    )


def machine() -> dict[str, str]:
    """nproc, CPU model, RAM, Python and redis-server versions."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    redis_version = subprocess.run(
        [find_redis_server(), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "nproc": str(os.cpu_count()),
        "CPU": model,
        "RAM": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "Python": platform.python_version(),
        "redis-server": redis_version.split(" sha=")[0].removeprefix("Redis server v="),
        "OS": f"{platform.system()} {platform.release()}",
    }


@dataclass(frozen=True)
class CodeState:
    """Which code of the service is measured: the commit and any uncommitted change to it."""

    head: str
    fingerprint: str
    """Hash of the service's files as committed plus their uncommitted changes."""
    changed: tuple[str, ...]

    def describe(self) -> str:
        """The commit, and the service files that differ from it."""
        extra = f" with uncommitted changes to {', '.join(self.changed)}" if self.changed else ""
        return self.head + extra


SERVICE_PATHS = ("webhook", "workers", "wsgi.py", "gunicorn.conf.py", "Procfile")


def code_state() -> CodeState | None:
    """The service code in the working tree, from read-only git calls (None outside a checkout)."""

    def git(*args: str) -> str:
        """Output of one read-only git command."""
        command = ["git", "--no-optional-locks", "-C", str(ROOT), *args]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout

    try:
        head = git("rev-parse", "--short", "HEAD").strip()
        trees = git("rev-parse", *(f"HEAD:{path}" for path in SERVICE_PATHS))
        diff = git("diff", "HEAD", "--", *SERVICE_PATHS)
        added = git("ls-files", "--others", "--exclude-standard", "--", *SERVICE_PATHS).split()
    except (OSError, subprocess.CalledProcessError):
        return None
    digest = hashlib.sha256((trees + diff).encode())
    for name in added:
        digest.update(name.encode() + (ROOT / name).read_bytes())
    changed = sorted(set(git("diff", "--name-only", "HEAD", "--", *SERVICE_PATHS).split()) | set(added))
    return CodeState(head, digest.hexdigest(), tuple(changed))


def describe_code(before: CodeState | None, after: CodeState | None) -> str:
    """The code measured, and whether it changed while the benchmark ran."""
    if before is None or after is None:
        return "unknown (not a git checkout)"
    if before.fingerprint != after.fingerprint:
        return f"{before.describe()} at the start, {after.describe()} at the end (the service changed)"
    if before.head != after.head:
        moved = f"HEAD moved to {after.head} meanwhile; the service's files did not change"
        return f"{before.describe()} ({moved})"
    return before.describe()


def write_section(path: Path, heading: str, text: str) -> None:
    """Replace (or append) one `## heading` section of a Markdown file, keeping the others."""
    title = (
        "# Benchmarks\n\nWritten by `make bench` (bench/run.py) and `make bench-memory` (bench/memory.py).\n"
    )
    content = path.read_text() if path.exists() else title
    marker = f"## {heading}"
    section = f"{marker}\n\n{text.strip()}\n"
    pattern = re.compile(rf"^{re.escape(marker)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(content):
        content = pattern.sub(lambda _: section + "\n", content, count=1)
    else:
        content = content.rstrip() + "\n\n" + section
    path.write_text(content.rstrip() + "\n")


def gunicorn_setup(workers: int) -> str:
    """How gunicorn runs the web processes: gunicorn.conf.py, and GUNICORN_CMD_ARGS if set."""
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    text = f"gunicorn {workers} {conf['worker_class']} workers"
    if conf["worker_class"] == "gthread":
        text += f" × {conf['threads']} threads"
    text += " (gunicorn.conf.py)"
    if os.environ.get("GUNICORN_CMD_ARGS"):
        text += f", GUNICORN_CMD_ARGS={os.environ['GUNICORN_CMD_ARGS']!r}"
    return text


def report(
    settings: Settings,
    argv: list[str],
    rows: list[Figure],
    runs: list[PipelineRun],
    extra: list[Check],
    load_before: float,
    code_before: CodeState | None,
) -> str:
    """The throughput section of BENCHMARKS.md."""
    info = machine() | {"load average (1 min) before/after": f"{load_before:.2f}/{os.getloadavg()[0]:.2f}"}
    code = describe_code(code_before, code_state())
    scale = {"web": 1, "tally": 1, "send": 1, "clock": 1} | dict(settings.scale)
    lines = [
        f"Command: `{shlex.join(['python', '-m', 'bench.run', *argv])}`",
        f"Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"Code: {code}",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        f"Setup: Redis appendonly {'yes, appendfsync always' if settings.aof else 'no'}; "
        f"{gunicorn_setup(settings.web_concurrency)}; Procfile processes {scale}; "
        f"fake Viber latency {settings.viber_latency_s * 1000:.0f} ms; load generator "
        f"{settings.processes} processes × {settings.connections} connections on the same machine; "
        f"{settings.duplicate_share:.0%} of voters vote twice, "
        f"{settings.retry_share:.0%} of votes are resent.",
        "",
        table([f.cells() for f in rows], ["figure", "value", "target", "ratio", "result"]),
        "",
        "Ratios are value ÷ reference (for limits: value ÷ limit, so ≤ 1 passes). End-to-end runs "
        "from the first callback to the last confirmation the fake Viber received.",
    ]
    for run in runs:
        lines += ["", f"### Checks: {run.name} ({run.plan.voters:,} voters)", ""]
        lines += [f"- {check.line()}" for check in run.checks]
    if extra:
        lines += ["", "### Checks: baselines", ""] + [f"- {check.line()}" for check in extra]
    for run in runs:
        lines += ["", f"### CPU during {run.name}", "", cpu_table(run)]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--votes", type=int, default=100_000, help="distinct voters in the full run")
    parser.add_argument("--rate", type=float, default=500.0, help="offered callbacks/s of the steady run")
    parser.add_argument("--rate-seconds", type=float, default=20.0, help="length of the steady run")
    parser.add_argument("--floor-requests", type=int, default=20_000)
    parser.add_argument("--naive-votes", type=int, default=2_000)
    parser.add_argument("--naive-workers", type=int, default=2, help="forking RQ workers (ours: tally+send)")
    parser.add_argument("--sync-requests", type=int, default=400)
    parser.add_argument("--duplicates", type=float, default=0.05, help="share of voters who vote again")
    parser.add_argument("--retries", type=float, default=0.05, help="share of callbacks Viber resends")
    parser.add_argument("--no-aof", action="store_true", help="Redis without the append-only file")
    parser.add_argument(
        "--no-baselines", action="store_true", help="skip minimal, floor, naive, sample-bot runs"
    )
    parser.add_argument("--no-rate", action="store_true", help="skip the fixed-rate latency run")
    parser.add_argument("--processes", type=int, default=2, help="load generator processes")
    parser.add_argument("--connections", type=int, default=4, help="connections per generator process")
    parser.add_argument("--viber-latency-ms", type=float, default=100.0)
    parser.add_argument("--web-concurrency", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "4")))
    parser.add_argument("--scale", action="append", default=[], metavar="NAME=N", help="e.g. send=2")
    parser.add_argument("--workdir", type=Path, default=WORKDIR)
    parser.add_argument("--output", type=Path, default=REPORT, help="report file ('-' for none)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed too")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run every phase, print checks and figures, write the report."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    load_before = os.getloadavg()[0]
    code_before = code_state()
    settings = Settings(
        workdir=args.workdir,
        aof=not args.no_aof,
        processes=args.processes,
        connections=args.connections,
        viber_latency_s=args.viber_latency_ms / 1000,
        web_concurrency=args.web_concurrency,
        duplicate_share=args.duplicates,
        retry_share=args.retries,
        scale={name: int(n) for name, n in (item.split("=", 1) for item in args.scale)},
    )
    minimals: dict[str, MinimalRun] = {}
    floor = naive = sync = None
    if not args.no_baselines:
        minimals["before"] = measure_minimal(settings, args.votes, "full", "before")
    main_run = measure_pipeline(settings, "pipeline", args.votes)
    if not args.no_baselines:
        minimals["after"] = measure_minimal(settings, args.votes, "full", "after")
        for variant in STRIPPED:
            minimals[variant] = measure_minimal(settings, args.votes, variant, "stripped")
        floor = measure_floor(settings, args.floor_requests, "stripped")
    fastest = [minimals[phase] for phase in ("before", "after") if phase in minimals]
    minimal = max(fastest, key=lambda run: run.load.rate) if fastest else None
    stripped = [minimals[variant] for variant in STRIPPED if variant in minimals]
    runs = [main_run]
    paced = None
    if not args.no_rate:
        paced = measure_pipeline(settings, "paced", int(args.rate * args.rate_seconds), rate=args.rate)
        runs.append(paced)
    if not args.no_baselines:
        naive = measure_naive(settings, args.naive_votes, args.naive_workers)
        settings.say(f"  {naive.counted} counted, {_rate(naive.end_to_end_rate, 'votes/s')}")
        sync = measure_sync(settings, args.sync_requests)
        settings.say(f"  {sync[0].rate:,.0f} callbacks/s, {sync[1]} replies delivered")
    extra = baseline_checks(minimals, floor, naive, sync)
    for check in extra:
        settings.say("  " + check.line())
    rows = figures(main_run, paced, minimal, stripped, floor, naive, sync[0] if sync else None, args.rate)
    if len(fastest) == 2:
        both = " / ".join(f"{run.load.rate:,.0f}" for run in fastest)
        rows.insert(1, Figure("minimal path before / after the pipeline (the faster is used)", f"{both} /s"))
    print()
    print(table([f.cells() for f in rows], ["figure", "value", "target", "ratio", "result"]))
    for run in runs:
        print(f"\nCPU during {run.name}:\n{cpu_table(run)}")
    if str(args.output) != "-":
        text = report(settings, argv, rows, runs, extra, load_before, code_before)
        write_section(args.output, "Throughput", text)
        print(f"\nwrote {args.output}")
    checks_ok = all(run.passed for run in runs) and all(check.passed for check in extra)
    missed = sum(f.passed is False for f in rows)
    unmeasured = sum(bool(f.target) and f.passed is None for f in rows)
    verdict = f"{missed} missed" if missed else "all measured ones met"
    print(f"checks {'PASS' if checks_ok else 'FAIL'}; targets {verdict}, {unmeasured} not measured")
    return 0 if checks_ok and (not missed or not args.strict) else 1


if __name__ == "__main__":
    sys.exit(main())
