"""Load generator: signed Viber `message` callbacks from many voters, over several processes.

A plan is N distinct voters, each voting once for an option of the default poll, plus a share
of duplicates (the same voter again with a new message token, choosing the other option) and
of retries (Viber resending the same message token). Every process rebuilds the same plan from
its seed, pre-builds and pre-signs its share of the bodies, then all start together and send
at a fixed offered rate or as fast as they can, timing every request.
"""

from __future__ import annotations

import http.client
import json
import math
import multiprocessing as mp
import queue
import random
import resource
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit

from webhook.channels.viber import signature

DEFAULT_OPTIONS = ("yes", "no")
"""Option ids of the default poll (webhook/polls/default.toml)."""
TOKEN_BASE = 5_200_000_000_000_000_000
EXTRA_SPREAD = 400
"""A duplicate or retry is sent up to this many positions after the voter's first vote."""
START_DELAY_S = 0.3
"""Time between every process being ready and the first request (seconds)."""
REQUEST_TIMEOUT_S = 30.0
READY_TIMEOUT_S = 120.0


class Kind(IntEnum):
    """What a callback is, relative to the voter's first vote."""

    FIRST = 0
    DUPLICATE = 1
    RETRY = 2


@dataclass(frozen=True)
class Plan:
    """Who sends what, in which order; the same seed gives the same plan in every process."""

    voters: int
    duplicate_share: float = 0.0
    retry_share: float = 0.0
    seed: int = 1
    options: tuple[str, ...] = DEFAULT_OPTIONS
    id_prefix: str = "bench-voter-"

    def receiver(self, voter: int) -> str:
        """The Viber user id of a voter."""
        return f"{self.id_prefix}{voter:08d}"

    def items(self) -> list[tuple[int, int, int, Kind]]:
        """(voter, option index, message token, kind) of every callback, in sending order."""
        rng = random.Random(self.seed)
        keyed: list[tuple[float, int, int, int, Kind]] = []
        for voter in range(self.voters):
            option = rng.randrange(len(self.options))
            token = TOKEN_BASE + 2 * voter
            keyed.append((voter, voter, option, token, Kind.FIRST))
            if rng.random() < self.duplicate_share:
                # The other option and the next token: its tag (token mod 4096) differs too.
                other = (option + 1) % len(self.options)
                later = voter + rng.randint(1, EXTRA_SPREAD) + 0.5
                keyed.append((later, voter, other, token + 1, Kind.DUPLICATE))
            if rng.random() < self.retry_share:
                later = voter + rng.randint(1, EXTRA_SPREAD) + 0.25
                keyed.append((later, voter, option, token, Kind.RETRY))
        keyed.sort(key=lambda item: item[0])
        return [(voter, option, token, kind) for _, voter, option, token, kind in keyed]

    def body(self, voter: int, option: int, token: int, timestamp_ms: int) -> bytes:
        """The JSON of one `message` callback, as Viber sends it."""
        event = {
            "event": "message",
            "timestamp": timestamp_ms,
            "chat_hostname": "SN-CHAT-BENCH",
            "message_token": token,
            "sender": {
                "id": self.receiver(voter),
                "name": "Voter",
                "language": "en",
                "country": "BY",
                "api_version": 10,
            },
            "message": {"type": "text", "text": self.options[option]},
            "silent": False,
        }
        return json.dumps(event, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Target:
    """Where and how to send: the webhook URL, the bot token, the sending shape."""

    url: str
    auth_token: str
    processes: int = 2
    connections: int = 4
    rate: float | None = None
    """Offered callbacks per second in total; None sends as fast as possible."""


@dataclass
class LoadResult:
    """Every request's index in the plan, wall-clock send time, latency and HTTP status (0: failed)."""

    index: array = field(default_factory=lambda: array("q"))
    sent_at: array = field(default_factory=lambda: array("d"))
    latency_s: array = field(default_factory=lambda: array("d"))
    status: array = field(default_factory=lambda: array("h"))
    cpu_s: float = 0.0
    """CPU seconds the generator processes used while sending."""
    setup_cpu_s: float = 0.0
    """CPU seconds they used before: starting, building and signing the bodies."""
    late: int = 0
    """Requests sent more than 10 ms after their scheduled time (fixed-rate runs)."""
    max_lag_s: float = 0.0
    """The most a request was sent after its scheduled time (fixed-rate runs)."""

    def extend(self, other: LoadResult) -> None:
        """Add another process's records."""
        self.index.extend(other.index)
        self.sent_at.extend(other.sent_at)
        self.latency_s.extend(other.latency_s)
        self.status.extend(other.status)
        self.cpu_s += other.cpu_s
        self.setup_cpu_s += other.setup_cpu_s
        self.late += other.late
        self.max_lag_s = max(self.max_lag_s, other.max_lag_s)

    @property
    def count(self) -> int:
        """Requests made."""
        return len(self.index)

    @property
    def started_at(self) -> float:
        """Wall-clock time the first request was sent."""
        return min(self.sent_at)

    @property
    def finished_at(self) -> float:
        """Wall-clock time the last answer arrived."""
        return max(s + lat for s, lat in zip(self.sent_at, self.latency_s, strict=True))

    @property
    def duration_s(self) -> float:
        """From the first request to the last answer."""
        return self.finished_at - self.started_at

    @property
    def rate(self) -> float:
        """Answered requests per second."""
        return self.count / self.duration_s if self.duration_s > 0 else 0.0

    def statuses(self) -> Counter[int]:
        """How many requests ended with each HTTP status."""
        return Counter(self.status)

    def latency_percentile(self, pct: float) -> float:
        """A latency percentile (nearest rank), in seconds."""
        return percentile(self.latency_s, pct)


def percentile(values: array | list[float], pct: float) -> float:
    """The nearest-rank percentile of values (0 when there are none)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = min(len(ordered), max(1, math.ceil(pct / 100 * len(ordered))))
    return ordered[rank - 1]


def run(plan: Plan, target: Target, on_start: Callable[[], object] | None = None) -> LoadResult:
    """Send the whole plan to the target; return every request's record.

    on_start is called once every process is ready, just before the timed phase begins.
    """
    ctx = mp.get_context("spawn")  # the parent may run threads (the fake Viber): never fork it
    ready = ctx.Queue()
    go = ctx.Event()
    start_at = ctx.Value("d", 0.0)
    pipes: list[Connection] = []
    workers = []
    for index in range(target.processes):
        receive, send = ctx.Pipe(duplex=False)
        worker = ctx.Process(
            target=_process_main,
            args=(plan, target, index, ready, go, start_at, send),
            name=f"loadgen-{index}",
            daemon=True,
        )
        worker.start()
        send.close()
        pipes.append(receive)
        workers.append(worker)
    try:
        _wait_ready(ready, workers)
        if on_start is not None:
            on_start()
        start_at.value = time.time() + START_DELAY_S
        go.set()
        result = LoadResult()
        for receive, worker in zip(pipes, workers, strict=True):
            try:
                result.extend(receive.recv())
            except EOFError:
                raise RuntimeError(f"{worker.name} died (exit code {worker.exitcode})") from None
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()
                worker.join()
    return result


def _wait_ready(ready: Any, workers: list[Any]) -> None:
    """Wait until every process has built and signed its bodies; fail if one dies first."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    waiting = len(workers)
    while waiting:
        try:
            ready.get(timeout=0.2)
            waiting -= 1
        except queue.Empty:
            dead = [w for w in workers if w.exitcode is not None]
            if dead:
                raise RuntimeError(f"{dead[0].name} died (exit code {dead[0].exitcode})") from None
            if time.monotonic() > deadline:
                raise RuntimeError("load generator processes were not ready in time") from None


def _process_main(
    plan: Plan, target: Target, index: int, ready: Any, go: Any, start_at: Any, out: Connection
) -> None:
    """One generator process: build its share of signed bodies, then drive its connections."""
    items = plan.items()
    total = target.processes * target.connections
    stamp = int(time.time() * 1000)
    shares: list[list[tuple[int, bytes, dict[str, str]]]] = []
    for conn_index in range(target.connections):
        lane = index * target.connections + conn_index
        share = []
        for position in range(lane, len(items), total):
            voter, option, token, _ = items[position]
            body = plan.body(voter, option, token, stamp)
            headers = {
                signature.HEADER: signature.sign(target.auth_token, body),
                "Content-Type": "application/json",
            }
            share.append((position, body, headers))
        shares.append(share)
    ready.put(index)
    go.wait()
    t0: float = start_at.value
    cpu_before = _cpu_s()
    results = [LoadResult() for _ in shares]
    threads = [
        threading.Thread(target=_drive, args=(target, share, t0, lane_result), daemon=True)
        for share, lane_result in zip(shares, results, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    merged = LoadResult()
    for lane_result in results:
        merged.extend(lane_result)
    merged.cpu_s = _cpu_s() - cpu_before
    merged.setup_cpu_s = cpu_before
    out.send(merged)
    out.close()


def _drive(
    target: Target, share: list[tuple[int, bytes, dict[str, str]]], t0: float, out: LoadResult
) -> None:
    """Send one connection's requests in order, paced when a rate is set, timing each."""
    parts = urlsplit(target.url)
    path = parts.path or "/"
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=REQUEST_TIMEOUT_S)
    rate = target.rate
    delay = t0 - time.time()
    if delay > 0:
        time.sleep(delay)
    for position, body, headers in share:
        if rate:
            due = t0 + position / rate
            wait = due - time.time()
            if wait > 0:
                time.sleep(wait)
            elif wait < -0.010:
                out.late += 1
                out.max_lag_s = max(out.max_lag_s, -wait)
        sent_at = time.time()
        began = time.perf_counter()
        try:
            conn.request("POST", path, body, headers)
            response = conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            conn.close()  # reconnects on the next request
            status = 0
        out.latency_s.append(time.perf_counter() - began)
        out.index.append(position)
        out.sent_at.append(sent_at)
        out.status.append(status)
    conn.close()


def _cpu_s() -> float:
    """CPU seconds (user + system) this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
