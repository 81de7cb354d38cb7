"""Real-process tests of tests.support.redis_ha: a primary, two replicas and three Sentinels on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from redis.sentinel import Sentinel

from tests.support.redis_ha import LOOPBACK, RedisHA

# With down_after_ms=1000 a SIGKILLed primary is replaced in ~2.3 s; 10 s leaves room for a busy box.
FAILOVER_BOUND_S = 10.0
# Sentinel demotes a node ~8 s after it reports the wrong role, on its next INFO (every 10 s): ~10-11 s.
REJOIN_BOUND_S = 30.0
CLIENT_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def steady_ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisHA]:
    """One set shared by the tests that leave its primary alone."""
    with RedisHA(tmp_path_factory.mktemp("ha")) as ha:
        yield ha


@pytest.fixture
def ha(tmp_path: Path) -> Iterator[RedisHA]:
    """A fresh set for a test that kills or freezes its primary; stopped even when the test fails."""
    with RedisHA(tmp_path) as ha:
        yield ha


@contextmanager
def master_client(ha: RedisHA) -> Iterator[redis.Redis]:
    """Yield redis-py's Sentinel-managed client of the primary, as the app would build it."""
    sentinel = Sentinel(ha.sentinel_addresses, socket_timeout=CLIENT_TIMEOUT_S)
    try:
        with sentinel.master_for(ha.master_name, socket_timeout=CLIENT_TIMEOUT_S) as master:
            yield master
    finally:
        for conn in sentinel.sentinels:
            conn.close()


def _role(node_client: redis.Redis) -> list:
    """Return the first three fields of a node's ROLE reply, e.g. [b"slave", b"127.0.0.1", 6380]."""
    return node_client.execute_command("ROLE")[:3]


def test_starts_and_replicates(steady_ha: RedisHA) -> None:
    """node0 is the primary; a write acknowledged by WAIT 2 is readable on both replicas."""
    primary = steady_ha.primary()
    assert primary is steady_ha.nodes[0]
    assert len(steady_ha.replicas()) == 2 and len(steady_ha.sentinel_addresses) == 3
    assert steady_ha.sentinels_env == ",".join(f"{LOOPBACK}:{s.port}" for s in steady_ha.sentinels)
    with primary.client() as client:
        client.set("poll:1:votes", "42")
        assert client.execute_command("WAIT", 2, 5000) == 2
    for replica in steady_ha.replicas():
        with replica.client() as client:
            assert client.get("poll:1:votes") == b"42"
            assert _role(client) == [b"slave", LOOPBACK.encode(), primary.port]


def test_sentinel_client_finds_primary(steady_ha: RedisHA) -> None:
    """redis-py's Sentinel client discovers the primary and writes to it."""
    primary = steady_ha.primary()
    with master_client(steady_ha) as master:
        master.set("via-sentinel", "yes")
        assert master.connection_pool.get_master_address() == (LOOPBACK, primary.port)
    with primary.client() as client:
        assert client.get("via-sentinel") == b"yes"


@pytest.mark.slow
def test_killed_primary_fails_over_and_rejoins_as_replica(ha: RedisHA) -> None:
    """After SIGKILL a replica takes over within bounds; restarted, the old primary follows it."""
    with master_client(ha) as master:
        master.set("before", "1")
        assert master.execute_command("WAIT", 2, 5000) == 2

        old = ha.kill_primary()
        failover_s = ha.wait_for_failover(old.port, timeout_s=30)
        print(f"failover after SIGKILL: {failover_s:.2f}s")
        assert failover_s < FAILOVER_BOUND_S
        new = ha.primary()
        assert new is not old
        # The pool notices its connection to the dead primary is closed and asks Sentinel again.
        master.set("after", "1")
    with new.client() as client:
        assert client.mget("before", "after") == [b"1", b"1"]

    ha.restart(old)
    rejoin_s = ha.wait_for_replicas(REJOIN_BOUND_S)
    print(f"old primary a linked replica {rejoin_s:.2f}s after its restart")
    with old.client() as client:
        assert _role(client) == [b"slave", LOOPBACK.encode(), new.port]
        assert client.get("after") == b"1"


@pytest.mark.slow
def test_frozen_primary_is_demoted_after_thaw(ha: RedisHA) -> None:
    """A primary stalled past a failover comes back as a replica; a write sent to it meanwhile is lost."""
    old = ha.primary()
    outcome: list[object] = []
    with old.client(socket_timeout=30) as stale:
        stale.ping()  # a client that holds a connection to the primary before it stalls
        ha.freeze_primary()

        def write_in_flight() -> None:
            """Send a write that sits in the frozen primary's socket until it is thawed."""
            try:
                outcome.append(stale.set("in-flight", "lost"))
            except redis.exceptions.RedisError as exc:
                outcome.append(exc)

        writer = threading.Thread(target=write_in_flight, daemon=True)
        writer.start()
        try:
            failover_s = ha.wait_for_failover(old.port, timeout_s=30)
            print(f"failover after SIGSTOP: {failover_s:.2f}s")
            assert failover_s < FAILOVER_BOUND_S
            new = ha.primary()
        finally:
            ha.thaw(old)
        writer.join(timeout=30)
    assert outcome, "the in-flight write never returned"
    rejoin_s = ha.wait_for_replicas(REJOIN_BOUND_S)
    # The thawed primary may well answer OK to the queued write: the acknowledgement is worthless.
    print(f"thawed old primary a linked replica after {rejoin_s:.2f}s; in-flight write got {outcome[0]!r}")
    with old.client() as client:
        assert _role(client) == [b"slave", LOOPBACK.encode(), new.port]
        assert client.get("in-flight") is None
    with new.client() as client:
        assert client.get("in-flight") is None
