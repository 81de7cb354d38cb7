"""Tests of the throwaway redis-server launcher in tests.support.redis_server."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.redis_server import RedisServer, find_redis_server, free_port


def test_find_and_free_port() -> None:
    """A binary is found and free_port gives a non-default port."""
    assert Path(find_redis_server()).name.startswith("redis-server")
    assert free_port() not in (0, 6379)


def test_start_ping_stop(tmp_path: Path) -> None:
    """The server answers PING on its URL and is gone after stop()."""
    with RedisServer(tmp_path) as server:
        assert server.pid is not None
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        assert client.config_get("save") == {"save": ""}
    assert server.pid is None
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis.from_url(server.url, socket_connect_timeout=0.5).ping()


def test_appendonly_survives_kill(tmp_path: Path) -> None:
    """A key written before SIGKILL is reloaded from the AOF on restart."""
    server = RedisServer(tmp_path, appendonly=True, appendfsync="always")
    server.start()
    try:
        port, first_pid = server.port, server.pid
        redis.Redis.from_url(server.url).set("vote", "42")
        server.kill()
        assert server.pid is None
        server.restart()
        assert server.port == port and server.pid != first_pid
        assert redis.Redis.from_url(server.url).get("vote") == b"42"
    finally:
        server.stop()


def test_start_failure_reports_log(tmp_path: Path) -> None:
    """A server that cannot start raises RuntimeError with its log tail."""
    with RedisServer(tmp_path / "a") as first:
        second = RedisServer(tmp_path / "b", port=first.port)
        with pytest.raises(RuntimeError, match="Address already in use"):
            second.start(timeout_s=5)
        assert first.client().ping()


def test_password_protects_server(tmp_path: Path) -> None:
    """With a password the server requires AUTH; client() and url carry the password."""
    with RedisServer(tmp_path, password="s3cret pw") as server:
        assert server.client().ping()
        assert redis.Redis.from_url(server.url).ping()
        assert server.url.startswith("redis://:s3cret%20pw@127.0.0.1:")
        # No retries: redis-py 8 retries AuthenticationError (a ConnectionError) 10 times by default.
        anonymous = redis.Redis(host="127.0.0.1", port=server.port, retry=Retry(NoBackoff(), 0))
        with pytest.raises(redis.exceptions.AuthenticationError):
            anonymous.set("vote", "1")
