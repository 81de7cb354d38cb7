"""The service on a Sentinel-managed Redis: it finds the primary; a vote is acknowledged once replicated.

One primary, two replicas and three Sentinels on loopback (tests/support/redis_ha.py), password
protected, shared by the module; a test that freezes the replicas (SIGSTOP) resumes them after.
Failovers under load are in tests/faults/test_redis_failover.py.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from click.testing import Result
from redis import ConnectionPool, Redis
from redis.connection import Connection

from tests.conftest import BOT_TOKEN, OPERATOR_TOKEN, POLL_FILE, VOTER_ID_SECRET, message_event, post_callback
from tests.support.redis_ha import RedisHA
from tests.support.redis_server import free_port
from webhook import create_app
from webhook.config import Config
from webhook.core.ballot_box import BallotBox, Binding, BindOutcome, CastOutcome, Proof
from webhook.core.identity import IdentityKind, voter_key
from webhook.core.polls import PollStatus
from webhook.runtime import EXTENSION, Runtime
from webhook.store import keys
from webhook.store.connection import ReplicaWait
from webhook.store.durable import NotReplicated
from webhook.store.streams import VoteEntry
from workers.tally import drain

PASSWORD = "data-node-password-0123"
WAIT_TIMEOUT_MS = 100
"""Short, so that the tests which freeze the replicas stay quick."""
POLL = "main"


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisHA]:
    """A password-protected primary, two replicas and three Sentinels for the module."""
    with RedisHA(tmp_path_factory.mktemp("ha"), password=PASSWORD, appendonly=False) as running:
        yield running


@pytest.fixture
def env(ha: RedisHA) -> dict[str, str]:
    """A deployment's environment naming the Sentinels (and a REDIS_URL they win over)."""
    with ha.primary().client() as primary:
        primary.flushall()
    return {
        "VIBER_AUTH_TOKEN": BOT_TOKEN,
        "VIBER_API_URL": f"http://127.0.0.1:{free_port()}/pa",
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "REDIS_SENTINELS": ha.sentinels_env,
        "REDIS_SENTINEL_MASTER": ha.master_name,
        "REDIS_PASSWORD": PASSWORD,
        "REDIS_WAIT_TIMEOUT_MS": str(WAIT_TIMEOUT_MS),
        "VOTER_ID_SECRET": VOTER_ID_SECRET,
        "OPERATOR_TOKEN": OPERATOR_TOKEN,
        "POLL_FILE": str(POLL_FILE),
    }


def runtime_of(env: dict[str, str]) -> Runtime:
    """What one process builds: its own connection pool, so two runtimes are two web processes."""
    return Runtime.build(Config.from_environ(env))


@contextmanager
def replicas_frozen(ha: RedisHA) -> Iterator[None]:
    """Stop every replica (SIGSTOP): the primary still answers, no replica confirms anything."""
    replicas = ha.replicas()
    for replica in replicas:
        os.kill(replica.pid or 0, signal.SIGSTOP)
    try:
        yield
    finally:
        for replica in replicas:
            os.kill(replica.pid or 0, signal.SIGCONT)
        ha.wait_for_replicas(timeout_s=15)


def vote(user: str, option: int = 0, poll: str = POLL) -> VoteEntry:
    """A vote of this Viber user (in the test poll by default)."""
    voter = voter_key(VOTER_ID_SECRET, IdentityKind.VIBER, user)
    return VoteEntry(
        poll=poll,
        voter=voter,
        option=option,
        receiver=b"sealed",
        language="en",
        accepted_at=int(time.time()),
        channel="viber",
    )


def cast(rt: Runtime, entry: VoteEntry, token: int = 7) -> CastOutcome:
    """Cast a vote through the runtime's ballot box."""
    return rt.ballot_box.cast(rt.polls.get(POLL), entry, message_token=token)


def test_sentinels_win_over_the_url_and_reach_the_primary(ha: RedisHA, env: dict[str, str]) -> None:
    """REDIS_SENTINELS names the deployment (REDIS_URL is ignored): writes land on the primary, replicated."""
    rt = runtime_of(env)
    assert rt.config.redis.wait.replicas == 1
    assert cast(rt, vote("sentinel-user")) is CastOutcome.ACCEPTED
    primary = ha.primary()
    with primary.client() as direct:
        assert direct.xlen(keys.VOTES_STREAM) == 1
    replicated = []
    for replica in ha.replicas():
        with replica.client() as direct:
            replicated.append(direct.xlen(keys.VOTES_STREAM))
    assert 1 in replicated, "acknowledged only once a replica had it"
    assert rt.redis.connection_pool.get_master_address() == ("127.0.0.1", primary.port)


def test_unconfirmed_vote_is_refused_then_counted_once_when_retried(ha: RedisHA, env: dict[str, str]) -> None:
    """No replica confirms: NotReplicated (503), the claim stays; retries (another process too) count once.

    The retry finds the claim and writes only a stats counter; its WAIT covers the claim too, as the
    replication stream is one ordered log (test_every_outcome_of_an_acknowledged_step_writes).
    """
    first, second = runtime_of(env), runtime_of(env)
    entry = vote("unconfirmed")
    with replicas_frozen(ha):
        with pytest.raises(NotReplicated):
            cast(first, entry)
        with pytest.raises(NotReplicated):
            cast(second, entry)  # the messenger's retry, served by another web process
    assert cast(second, entry) is CastOutcome.RETRY
    assert drain(second, "test-consumer") == 1
    assert first.ballot_box.counts(first.polls.get(POLL)) == {"yes": 1, "no": 0, "abstain": 0}


def test_unconfirmed_binding_is_refused_until_a_replica_has_it(ha: RedisHA, env: dict[str, str]) -> None:
    """A phone binding is for good, so it too waits for a replica, and so does every retry of it."""
    first, second = runtime_of(env), runtime_of(env)
    account = voter_key(VOTER_ID_SECRET, IdentityKind.VIBER, "binder")
    phone = Binding(voter_key(VOTER_ID_SECRET, IdentityKind.PHONE, "+375291234567"), "BY", Proof.COUNTRY)
    with replicas_frozen(ha):
        with pytest.raises(NotReplicated):
            first.ballot_box.bind_phone("viber", account, phone)
        with pytest.raises(NotReplicated):
            second.ballot_box.bind_phone("viber", account, phone)
    assert second.ballot_box.bind_phone("viber", account, phone) is BindOutcome.SAME
    with ha.replicas()[0].client() as replica:
        assert replica.hget(keys.account_binding("viber", account), keys.field(account)) == phone.stored()


def test_closing_a_poll_waits_for_a_replica(ha: RedisHA, env: dict[str, str]) -> None:
    """close-poll says so when no replica confirmed it (a failover could reopen the poll); then succeeds."""
    app = create_app(env)

    def close_poll() -> Result:
        """Run `flask --app wsgi close-poll main`."""
        with app.app_context():
            return app.test_cli_runner().invoke(args=["close-poll", POLL])

    with replicas_frozen(ha):
        refused = close_poll()
    assert refused.exit_code == 1
    assert "run the command again" in refused.output and "Traceback" not in refused.output
    closed = close_poll()
    assert closed.exit_code == 0, closed.output
    rt: Runtime = app.extensions[EXTENSION]
    assert rt.ballot_box.status(rt.polls.get(POLL)) is PollStatus.CLOSED


def test_webhook_answers_503_until_a_replica_confirms_then_200_once(ha: RedisHA, env: dict[str, str]) -> None:
    """The web turns NotReplicated into 503 (never 500); Viber's redelivery then gets 200 and counts once."""
    app = create_app(env)
    client = app.test_client()
    event = message_event("web-voter", "yes", tracking_data=POLL)
    with replicas_frozen(ha):
        refused = post_callback(client, event)
    accepted = post_callback(client, event)
    assert (refused.status_code, accepted.status_code) == (503, 200)
    rt: Runtime = app.extensions[EXTENSION]
    assert drain(rt, "test-consumer") == 1
    assert sum(rt.ballot_box.counts(rt.polls.get(POLL)).values()) == 1


class OldestFirstPool(ConnectionPool):
    """Hands out the connection idle longest (redis-py's own pool: the one released last)."""

    def release(self, connection: Connection) -> None:
        """Put a released connection at the back of the line."""
        super().release(connection)
        with self._lock:
            idle = self._available_connections
            if idle and idle[-1] is connection:
                idle.insert(0, idle.pop())


def test_wait_goes_out_on_the_connection_of_the_vote(ha: RedisHA, env: dict[str, str]) -> None:
    """WAIT covers the writes of its own connection: sent on the next one the pool hands out, it would not.

    Here the pool hands out another connection for each command, one whose last write is
    replicated already: a WAIT sent on it would return at once and acknowledge a vote no replica has.
    """
    pool = OldestFirstPool(port=ha.primary().port, password=PASSWORD, socket_timeout=5)
    client = Redis(connection_pool=pool)
    connections = [pool.get_connection(), pool.get_connection()]
    for connection in connections:
        pool.release(connection)
    for n in range(len(connections)):
        client.set(f"warm-{n}", n)  # each connection has written, and the replicas have it
    assert client.wait(2, 1000) == 2
    rt = runtime_of(env)
    box = BallotBox(connection=client, wait=ReplicaWait(1, WAIT_TIMEOUT_MS))
    with replicas_frozen(ha), pytest.raises(NotReplicated):
        box.cast(rt.polls.get(POLL), vote("own-connection"), message_token=1)
    client.close()


def test_scripts_are_loaded_again_on_a_primary_that_lacks_them(ha: RedisHA, env: dict[str, str]) -> None:
    """A promoted replica has no scripts (their cache is not replicated): each script path reloads them."""
    rt = runtime_of(env)
    app = create_app(env)
    client = app.test_client()
    account = voter_key(VOTER_ID_SECRET, IdentityKind.VIBER, "noscript")
    phone = Binding(voter_key(VOTER_ID_SECRET, IdentityKind.PHONE, "+375291234500"), "BY", Proof.COUNTRY)
    steps: dict[str, Any] = {
        "cast (with WAIT)": lambda: cast(rt, vote("noscript-1")),
        "reply (web)": lambda: post_callback(client, message_event("noscript-2", "hello")).status_code,
        "tally": lambda: drain(rt, "test-consumer"),
        "retry_due": lambda: rt.outbox.move_due_retries(),
        "replay_dead": lambda: rt.outbox.replay_dead(),
        "bind_phone (with WAIT)": lambda: rt.ballot_box.bind_phone("viber", account, phone),
    }
    done = {}
    for name, step in steps.items():
        with ha.primary().client() as primary:
            primary.script_flush()
        done[name] = step()
    assert done == {
        "cast (with WAIT)": CastOutcome.ACCEPTED,
        "reply (web)": 200,
        "tally": 1,
        "retry_due": 0,
        "replay_dead": 0,
        "bind_phone (with WAIT)": BindOutcome.BOUND,
    }


def test_plain_url_keeps_working_without_wait(env: dict[str, str], redis_server: Any, redis: Redis) -> None:
    """With REDIS_URL alone nothing waits for a replica (there is none) and votes are accepted as before."""
    plain = {k: v for k, v in env.items() if not k.startswith("REDIS_")} | {"REDIS_URL": redis_server.url}
    rt = runtime_of(plain)
    assert rt.config.redis.wait.replicas == 0
    assert cast(rt, vote("plain")) is CastOutcome.ACCEPTED
    assert redis.xlen(keys.VOTES_STREAM) == 1


def test_every_outcome_of_an_acknowledged_step_writes(rt: Runtime, redis: Redis) -> None:
    """Each outcome of the cast and bind scripts writes something (a stats counter at least).

    WAIT covers the connection's last write; since Redis 7.2 a command that writes nothing leaves
    that offset where it was (7.0 moves it on every command). A retry that only read the claim of
    an unconfirmed first attempt would then be acknowledged without that claim being replicated.
    """

    def writes(step: Any) -> tuple[Any, int]:
        """The step's result, and how many writes the server counted during it."""
        before = int(redis.info("persistence")["rdb_changes_since_last_save"])
        result = step()
        return result, int(redis.info("persistence")["rdb_changes_since_last_save"]) - before

    box, main, future, past = (rt.ballot_box, *(rt.polls.get(p) for p in (POLL, "future", "past")))
    account, third, legacy = (
        voter_key(VOTER_ID_SECRET, IdentityKind.VIBER, user) for user in ("w-account", "w-third", "w-legacy")
    )
    phone, phone2 = (
        Binding(voter_key(VOTER_ID_SECRET, IdentityKind.PHONE, n), "BY", Proof.COUNTRY)
        for n in ("+375291110000", "+375291110001")
    )
    redis.set(keys.legacy_phone_link(legacy), phone2.phone)

    def adopted() -> str:
        """Take an older version's phone link as the account's binding (the script's "adopt")."""
        return "same" if box.phone_of("viber", legacy) == Binding(phone2.phone) else "not adopted"

    steps = {
        "accepted": lambda: box.cast(main, vote("w-1"), message_token=1),
        "retry": lambda: box.cast(main, vote("w-1"), message_token=1),
        "duplicate": lambda: box.cast(main, vote("w-1"), message_token=2),
        "not_open": lambda: box.cast(future, vote("w-2"), message_token=3),
        "bound": lambda: box.bind_phone("viber", account, phone),
        "same": lambda: box.bind_phone("viber", account, phone),
        "other_number": lambda: box.bind_phone("viber", account, phone2),
        "bound_elsewhere": lambda: box.bind_phone("viber", third, phone),
        "adopted": adopted,
        "closed": lambda: box.cast(past, vote("w-3", poll="past"), message_token=4),
    }
    outcomes = {name: writes(step) for name, step in steps.items()}
    assert {name: str(result) for name, (result, _) in outcomes.items()} == {name: name for name in steps} | {
        "adopted": "same"
    }
    assert all(count > 0 for _, count in outcomes.values()), outcomes
