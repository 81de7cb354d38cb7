"""Fixtures: a real redis-server on a free port, a fake Viber API, the app and its client."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from tests.support.fake_telegram import FakeTelegram
from tests.support.fake_viber import FakeViber
from tests.support.redis_server import RedisServer, free_port
from tests.support.stack import Stack

# Re-exported (`name as name`): the tests import the callback builders from here.
from tests.support.viber_callbacks import conversation_started as conversation_started
from tests.support.viber_callbacks import message_event as message_event
from tests.support.viber_callbacks import next_token as next_token
from webhook import create_app
from webhook.channels.base import ChannelSender
from webhook.channels.telegram import TELEGRAM
from webhook.channels.viber import ViberSender
from webhook.channels.viber.client import AsyncViberClient
from webhook.channels.viber.signature import HEADER, sign
from webhook.config import Config
from webhook.core.sealing import SEAL_PREFIX, ReceiverSeal
from webhook.operator import accounts
from webhook.runtime import Runtime
from webhook.store import keys

BOT_TOKEN = "test-bot-token-0123456789abcdef"
OPERATOR_TOKEN = "test-operator-token-0123456789"
VOTER_ID_SECRET = "test-voter-secret-0123456789"
TELEGRAM_TOKEN = "123456789:test-telegram-token-0123456789abcdef"
TELEGRAM_SECRET = "test-telegram-webhook-secret-0123456789"
FAST_TELEGRAM = {"TELEGRAM_MESSAGES_PER_S": "1000"}
"""The Procfile stacks' Telegram send rate (the fake enforces no limit): a paid-broadcast rate."""
SEND_AT_FULL_PRIORITY = {"SEND_NICE": "0"}
"""The tests' stacks share 2 cores with the test process (and with each other under
`TEST_PROCESSES=2`): a niced send worker (SEND_NICE's default, there so intake wins a burst on one
host) could wait seconds for a core, longer than a test waits for a reply. tests/test_smoke.py
checks the default on its own."""
SLOW_FIRST = (
    *("test_localstack.py", "test_end_to_end.py", "test_redis_failover.py", "test_hostile_input.py"),
    *("test_worker_kill.py", "test_redis_faults.py", "test_viber_api_failures.py", "test_telegram.py"),
    *("test_browser.py", "test_smoke.py", "test_redis_ha.py", "test_slow_clients.py"),
    *("test_one_person_one_vote.py", "test_viber_retries.py", "test_voter_flows.py"),
    *("test_limits_and_privacy.py", "test_dependencies.py", "test_bench_smoke.py"),
)
"""The test modules that take longest (wall seconds, longest first), started first and in this order
so that test processes (`TEST_PROCESSES=2`) finish together; the rest take seconds each."""
POLL_FILE = Path(__file__).parent / "polls.toml"
_operator_tokens: dict[str, str] = {}

# Flask's CLI (the `flask --app wsgi ...` processes some tests start, with this environment) would
# load a .env or .flaskenv found from its working directory up: a developer's, or the one `make run`
# writes. Tests give every setting explicitly; no file on the machine may add to them.
os.environ["FLASK_SKIP_DOTENV"] = "1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest modules first (pytest-xdist hands out whole files, in this order)."""
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FIRST)))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One throwaway redis-server for the session (never the machine's own on 6379)."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis(redis_server: RedisServer) -> Iterator[Redis]:
    """A client of the test server, emptied before each test."""
    client = Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def fake_viber() -> Iterator[FakeViber]:
    """A local fake of Viber's REST API that records what it is sent."""
    with FakeViber(auth_token=BOT_TOKEN) as fake:
        yield fake


@pytest.fixture
def fake_telegram() -> Iterator[FakeTelegram]:
    """A local fake of the Telegram Bot API that records what it is sent."""
    with FakeTelegram(token=TELEGRAM_TOKEN) as fake:
        yield fake


@pytest.fixture
def environ(redis_server: RedisServer, fake_viber: FakeViber, fake_telegram: FakeTelegram) -> dict[str, str]:
    """The settings a deployment would put in the environment (both channels)."""
    return {
        "VIBER_AUTH_TOKEN": BOT_TOKEN,
        "VIBER_API_URL": fake_viber.url,
        "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN,
        "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET,
        "TELEGRAM_API_URL": fake_telegram.url,
        "REDIS_URL": redis_server.url,
        "VOTER_ID_SECRET": VOTER_ID_SECRET,
        "OPERATOR_TOKEN": OPERATOR_TOKEN,
        "POLL_FILE": str(POLL_FILE),
        **SEND_AT_FULL_PRIORITY,
    }


@pytest.fixture
def config(environ: dict[str, str]) -> Config:
    """The typed configuration of the test deployment."""
    return Config.from_environ(environ)


@pytest.fixture
def app(config: Config, redis: Redis):  # type: ignore[no-untyped-def]
    """The Flask app against the test Redis and the fake Viber API."""
    app = create_app(config)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    """A test client of the app."""
    return app.test_client()


@pytest.fixture
def viber(config: Config) -> Iterator[AsyncViberClient]:
    """The send worker's Viber client, against the fake; closed after the test."""
    with AsyncViberClient(config.viber_api_url, config.viber_auth_token) as client:
        yield client


@pytest.fixture
def senders(viber: AsyncViberClient, config: Config, rt: Runtime) -> Iterator[dict[str, ChannelSender]]:
    """The send worker's channel senders, against the fakes (what sender.drain takes)."""
    telegram = TELEGRAM.sender(config, concurrency=8)
    yield {"viber": ViberSender(viber, config.bot_name), "telegram": telegram}
    telegram.close()


@pytest.fixture
def chat(client, rt, fake_viber, senders):  # type: ignore[no-untyped-def]
    """Start in-process chats with the app: chat(user_id, language=..., api_version=..., country=...)."""
    from tests.support.viber_chat import Chat  # it builds on this module's callback helpers

    return lambda user_id, **kw: Chat(client, rt, fake_viber, senders, user_id, **kw)


@pytest.fixture
def rt(config: Config, redis: Redis) -> Runtime:
    """A runtime like a worker process builds."""
    return Runtime.build(config)


def opened(stored: str | bytes) -> str:
    """The Viber id behind a stored (sealed) receiver; fails if it was stored in clear."""
    text = stored.decode() if isinstance(stored, bytes) else stored
    assert text.startswith(SEAL_PREFIX), f"receiver stored in clear: {text!r}"
    return ReceiverSeal(VOTER_ID_SECRET).open(text)


def operator_token(redis: Redis, name: str) -> str:
    """Operator `name`'s token, creating the account on first use (what `flask operator add` does)."""
    if name == accounts.BOOTSTRAP:
        return OPERATOR_TOKEN
    if name not in _operator_tokens or not redis.hexists(keys.OPERATORS, name):
        _operator_tokens[name] = accounts.add(redis, name)  # Redis is emptied before each test
    return _operator_tokens[name]


def signed(payload: dict[str, Any] | bytes, token: str = BOT_TOKEN) -> tuple[bytes, dict[str, str]]:
    """A body and the headers Viber would send with it."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return body, {HEADER: sign(token, body), "Content-Type": "application/json"}


def post_callback(client, payload: dict[str, Any] | bytes):  # type: ignore[no-untyped-def]
    """POST a signed callback through the test client."""
    body, headers = signed(payload)
    return client.post("/viber/webhook", data=body, headers=headers)


TELEGRAM_SETTINGS = ("TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET", "TELEGRAM_API_URL")


@pytest.fixture
def stack(
    environ: dict[str, str], redis: Redis, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    """The whole service as the Procfile runs it (gunicorn, tally and send workers, clock): Viber
    only, unless the test uses the fake Telegram API or is marked `telegram` (then both channels;
    `aof_stack` of the fault suites always runs both)."""
    env = {**environ, **FAST_TELEGRAM}
    telegram = "fake_telegram" in request.fixturenames or request.node.get_closest_marker("telegram")
    if not telegram:
        env = {k: v for k, v in env.items() if k not in TELEGRAM_SETTINGS}
    with Stack(env, tmp_path / "logs", port=free_port(), counts={"web": 1}) as running:
        yield running


def post_live(stack: Stack, payload: dict[str, Any] | bytes, timeout_s: float = 10.0) -> tuple[int, bytes]:
    """POST a signed callback to the running web process; returns (status, body)."""
    body, headers = signed(payload)
    request = urllib.request.Request(f"{stack.base_url}/viber/webhook", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
