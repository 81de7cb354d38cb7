"""Fault-injection fixtures: a stack on its own append-only Redis, vote streams, ledger checks."""

from __future__ import annotations

import http.client
import json
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis import Redis
from redis.exceptions import ResponseError

from tests.conftest import FAST_TELEGRAM, TELEGRAM_SECRET, VOTER_ID_SECRET, message_event, signed
from tests.support.fake_telegram import FakeTelegram
from tests.support.fake_viber import FakeViber
from tests.support.redis_server import RedisServer, free_port
from tests.support.stack import Stack
from tests.support.telegram_chat import SECRET_HEADER, tap_update
from webhook.core.identity import IdentityKind, voter_key
from webhook.core.ledger import Recount, recount
from webhook.core.polls import Poll, load_polls
from webhook.store import keys

POLL_ID = "main"
OPTIONS = ("yes", "no", "abstain")
TELEGRAM_USER_PREFIX = "tg-"
TELEGRAM_USER_IDS = 500_000_000


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone, with appendonly yes and appendfsync always.

    Strings are written uncompressed, so a search of its files (the privacy test) finds them.
    """
    extra = {"rdbcompression": "no"}
    with RedisServer(tmp_path / "redis-aof", appendonly=True, appendfsync="always", extra=extra) as server:
        yield server


@pytest.fixture
def aof_client(aof_redis: RedisServer) -> Iterator[Redis]:
    """A client of the append-only Redis (short timeouts, so a test never hangs on it)."""
    client = aof_redis.client(socket_timeout=5, socket_connect_timeout=2)
    yield client
    client.close()


@pytest.fixture
def aof_stack(environ: dict[str, str], aof_redis: RedisServer, tmp_path: Path) -> Iterator[Stack]:
    """The whole Procfile stack on the append-only Redis."""
    env = {**environ, **FAST_TELEGRAM, "REDIS_URL": aof_redis.url}
    with Stack(env, tmp_path / "logs", port=free_port(), counts={"web": 1}) as running:
        yield running


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.02) -> float:
    """Poll a condition until it holds; returns the seconds waited, fails naming it after timeout_s."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)
    return time.monotonic() - start


def pipeline_idle(redis: Redis) -> bool:
    """No vote waiting for a tally, no reply waiting to be sent or retried (one atomic look)."""
    pipe = redis.pipeline(transaction=True)
    pipe.xlen(keys.VOTES_STREAM).xlen(keys.OUTBOX_STREAM).zcard(keys.OUTBOX_RETRY)
    return not any(pipe.execute())


def votes_idle(redis: Redis) -> bool:
    """Every accepted vote has been tallied."""
    return redis.xlen(keys.VOTES_STREAM) == 0


def main_poll(stack: Stack) -> Poll:
    """The test poll, from the stack's poll file."""
    return load_polls(stack.env["POLL_FILE"]).get(POLL_ID)


def claimed(redis: Redis, users: list[str]) -> int:
    """How many of these voters (Viber ids, or Telegram ones as Vote.user names them) hold a claim."""
    pipe = redis.pipeline(transaction=False)
    for user in users:
        if user.startswith(TELEGRAM_USER_PREFIX):
            voter = voter_key(VOTER_ID_SECRET, IdentityKind.TELEGRAM, user[len(TELEGRAM_USER_PREFIX) :])
        else:
            voter = voter_key(VOTER_ID_SECRET, IdentityKind.VIBER, user)
        pipe.hexists(keys.voters(POLL_ID, voter), keys.field(voter))
    return sum(pipe.execute())


def pending_of(redis: Redis) -> int:
    """Votes read by a tally consumer and not yet acknowledged (the stack runs one tally worker)."""
    try:
        return int(redis.xpending(keys.VOTES_STREAM, keys.TALLY_GROUP)["pending"])
    except ResponseError:  # no consumer group yet
        return 0


class PollingThread:
    """A background thread that calls poll() every interval_s, from __enter__ to __exit__."""

    def __init__(self, interval_s: float) -> None:
        """Prepare, without starting."""
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):  # type: ignore[no-untyped-def]
        """Start polling."""
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop polling."""
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        """Poll until stopped."""
        while not self._stop.wait(self.interval_s):
            self.poll()

    def poll(self) -> None:
        """One look; subclasses say at what."""
        raise NotImplementedError


class Supervisor(PollingThread):
    """Restarts any stack process that exits, as a PaaS or systemd would; records which."""

    def __init__(self, stack: Stack, interval_s: float = 0.2) -> None:
        """Watch a running stack (from __enter__ to __exit__)."""
        super().__init__(interval_s)
        self.stack = stack
        self.restarted: list[str] = []

    def poll(self) -> None:
        """Restart exited processes."""
        for name, processes in list(self.stack.processes.items()):
            for index, process in enumerate(list(processes)):
                if process.poll() is not None:
                    self.stack.restart(name, index)
                    self.restarted.append(name)


def assert_ledger_consistent(redis: Redis, poll: Poll, acknowledged: dict[str, str]) -> Recount:
    """Counters == recount of the ballots == the votes that got HTTP 200, option by option."""
    result = recount(redis, poll)
    expected = Counter(acknowledged.values())
    assert result.votes_pending == 0
    assert result.recounted == result.counters
    assert result.matches
    assert result.counters == {option.id: expected.get(option.id, 0) for option in poll.options}
    assert sum(result.counters.values()) == len(acknowledged)
    return result


@dataclass
class Vote:
    """One voter's vote as its messenger would (re)deliver it: the same body every time."""

    user: str
    """Unique across channels: a Viber id, or TELEGRAM_USER_PREFIX + a Telegram user id."""
    option: str
    body: bytes
    headers: dict[str, str]
    path: str = "/viber/webhook"

    @classmethod
    def build(cls, user: str, option: str, **extra: Any) -> Vote:
        """A signed Viber `message` callback voting for option."""
        body, headers = signed(message_event(user, option, tracking_data=POLL_ID, **extra))
        return cls(user, option, body, headers)

    @classmethod
    def telegram(cls, user_id: int, option: str) -> Vote:
        """A Telegram update tapping option's button, with the webhook secret."""
        update = tap_update(user_id, f"{POLL_ID}:{OPTIONS.index(option)}")
        headers = {SECRET_HEADER: TELEGRAM_SECRET, "Content-Type": "application/json"}
        return cls(
            f"{TELEGRAM_USER_PREFIX}{user_id}",
            option,
            json.dumps(update).encode(),
            headers,
            "/telegram/webhook",
        )


@dataclass
class VoteStream:
    """Threads posting votes to the web process over keep-alive connections, each resent until 200."""

    base_url: str
    votes: list[Vote]
    threads: int = 6
    retry_pause_s: float = 0.05
    give_up_after_s: float = 90.0
    acknowledged: dict[str, str] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    slowest_answer_s: float = 0.0
    answers: list[tuple[float, float, str]] = field(default_factory=list)
    """(sent at, answered at, status) of every attempt, monotonic seconds."""

    def __post_init__(self) -> None:
        """Queue the votes; nothing is sent before start()."""
        self._todo: queue.Queue[Vote] = queue.Queue()
        for vote in self.votes:
            self._todo.put(vote)
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        self._started_at = 0.0

    @property
    def sent(self) -> int:
        """Votes posted at least once."""
        return len(self.votes) - self._todo.qsize()

    def acknowledged_so_far(self) -> list[str]:
        """The voters answered 200 until now."""
        with self._lock:
            return list(self.acknowledged)

    @property
    def acked(self) -> int:
        """Votes answered 200 so far."""
        with self._lock:
            return len(self.acknowledged)

    def start(self) -> VoteStream:
        """Start the sending threads."""
        self._started_at = time.monotonic()
        for worker in self._workers:
            worker.start()
        return self

    def join(self, timeout_s: float = 120.0) -> None:
        """Wait for every vote to be acknowledged (or given up on)."""
        deadline = time.monotonic() + timeout_s
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        assert not any(w.is_alive() for w in self._workers), "vote senders still running"

    def _run(self) -> None:
        """Send queued votes one after the other on one connection."""
        url = urlsplit(self.base_url)
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
        try:
            while True:
                try:
                    vote = self._todo.get_nowait()
                except queue.Empty:
                    return
                self._deliver(conn, vote)
        finally:
            conn.close()

    def _deliver(self, conn: http.client.HTTPConnection, vote: Vote) -> None:
        """POST one vote until it is answered 200, like Viber's retries."""
        give_up_at = time.monotonic() + self.give_up_after_s
        while time.monotonic() < give_up_at:
            began = time.monotonic()
            try:
                conn.request("POST", vote.path, body=vote.body, headers=vote.headers)
                response = conn.getresponse()
                response.read()
                status = str(response.status)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                status = type(exc).__name__
            with self._lock:
                self.statuses[status] += 1
                self.answers.append((began, time.monotonic(), status))
                self.slowest_answer_s = max(self.slowest_answer_s, time.monotonic() - began)
                if status == "200":
                    self.acknowledged[vote.user] = vote.option
                    return
            time.sleep(self.retry_pause_s)


def votes_for(prefix: str, n: int, telegram_every: int = 0) -> list[Vote]:
    """n votes of distinct voters, options in turn; every telegram_every-th one comes from Telegram."""
    base = TELEGRAM_USER_IDS + 10_000 * (sum(map(ord, prefix)) % 1000)
    return [
        Vote.telegram(base + i, OPTIONS[i % len(OPTIONS)])
        if telegram_every and i % telegram_every == telegram_every - 1
        else Vote.build(f"{prefix}-{i}", OPTIONS[i % len(OPTIONS)])
        for i in range(n)
    ]


def confirmed_voters(fake_viber: FakeViber, fake_telegram: FakeTelegram) -> list[str]:
    """Who got a confirmation, in either messenger (Telegram chats named like Vote.user)."""
    viber = [m["receiver"] for m in fake_viber.sent_messages() if "is counted" in m["text"]]
    telegram = [
        f"{TELEGRAM_USER_PREFIX}{m['chat_id']}"
        for m in fake_telegram.sent_messages()
        if "is counted" in m["text"]
    ]
    return viber + telegram


def report(name: str, **numbers: Any) -> None:
    """Print one result line (run with -s to see it) for RELIABILITY.md."""
    print(f"\n[reliability] {name}: " + " ".join(f"{k}={v}" for k, v in numbers.items()), flush=True)
