"""A Redis primary, its replicas and Sentinels on loopback, for failover tests and `make run-ha`.

Measured with the defaults (down_after_ms=1000, failover_timeout_ms=4000), redis 7.0.15, busy 2 cores:
- SIGKILL of the primary: every Sentinel names a promoted replica ~2.3 s later (SDOWN after ~1.1 s,
  ODOWN and election within ms, the promotion seen on the next INFO, sent every 1 s in a failover).
- A killed primary restarted, or a frozen one thawed, is a writable primary again for ~10-11 s:
  Sentinel demotes a node reporting the wrong role only once that role is 8 s old (4 hello periods)
  and on its next INFO of the node, sent every 10 s. Neither delay is configurable.
- Data nodes run without a config file, so the CONFIG REWRITE Sentinel sends with REPLICAOF fails
  (ignored): a restarted node takes its first role again. A former replica then follows the first
  primary until Sentinel's +fix-slave-config, ~failover_timeout_ms (4.6 s measured) after its restart.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import redis

from tests.support.redis_server import RedisServer, _tail, find_redis_server

LOOPBACK = "127.0.0.1"
SENTINEL_QUORUM = 2
# 1 s of silence before SDOWN: fast failovers, yet above the stalls of a busy box with fsync always.
DOWN_AFTER_MS = 1000
# Bounds a promotion and the replicas' reconfiguration; a failed election is retried after twice this.
FAILOVER_TIMEOUT_MS = 4000
START_TIMEOUT_S = 30.0
_POLL_INTERVAL_S = 0.05
_PROBE_TIMEOUT_S = 0.5
_LOG_TAIL_LINES = 12


def _conf_quote(value: str) -> str:
    """Quote a value for a redis config file, so spaces and quotes in a password survive."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class SentinelProcess(RedisServer):
    """A `redis-server sentinel.conf --sentinel` child; Sentinel rewrites that file as it learns."""

    @property
    def conf_path(self) -> Path:
        """Path of the Sentinel's own config file (it must be writable)."""
        return self.directory / "sentinel.conf"

    def argv(self) -> list[str]:
        """Return the command line: config file, --sentinel, then per-launch overrides."""
        # The port stays on the command line, not in the file, so RedisServer's retry on
        # "Address already in use" with a fresh port still works.
        return [
            self.executable or find_redis_server(),
            str(self.conf_path),
            "--sentinel",
            *("--port", str(self.port), "--bind", LOOPBACK, "--dir", str(self.directory)),
            *("--logfile", str(self.log_path), "--daemonize", "no"),
        ]


class RedisHA:
    """A primary, `replicas` replicas and `sentinels` Sentinels monitoring them, all on 127.0.0.1.

    password protects the data nodes (requirepass, masterauth, Sentinel's auth-pass), not the
    Sentinels. Keep it free of spaces, quotes and backslashes: Sentinel 7.0 rewrites auth-pass
    unquoted into sentinel.conf, which it then cannot parse on a restart.
    """

    def __init__(
        self,
        directory: Path,
        *,
        replicas: int = 2,
        sentinels: int = 3,
        master_name: str = "viber-vote",
        appendonly: bool = True,
        appendfsync: str = "always",
        password: str | None = None,
        down_after_ms: int = DOWN_AFTER_MS,
        failover_timeout_ms: int = FAILOVER_TIMEOUT_MS,
        extra: dict[str, str] | None = None,
    ) -> None:
        """Configure (not start) the set; every process gets its own subdirectory and free port."""
        self.directory = Path(directory).resolve()
        self.replica_count = replicas
        self.sentinel_count = sentinels
        self.master_name = master_name
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.password = password
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.extra: dict[str, str] = dict(extra or {})
        self.nodes: list[RedisServer] = []
        self.sentinels: list[SentinelProcess] = []
        self._frozen: list[RedisServer] = []

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """(host, port) of every Sentinel, as redis.sentinel.Sentinel takes them."""
        return [(LOOPBACK, s.port) for s in self.sentinels]

    @property
    def sentinels_env(self) -> str:
        """The REDIS_SENTINELS setting: "127.0.0.1:p1,127.0.0.1:p2,..."."""
        return ",".join(f"{host}:{port}" for host, port in self.sentinel_addresses)

    def _node(self, name: str, primary_port: int | None) -> RedisServer:
        """Configure one data node, a replica of primary_port when it is given."""
        # No delay before a diskless full sync: Redis 7 waits 5 s by default for more replicas,
        # which would slow every rejoin of a demoted primary.
        extra = {"repl-diskless-sync-delay": "0"}
        if self.password is not None:
            extra["masterauth"] = self.password  # any node may have to replicate from another
        if primary_port is not None:
            extra["replicaof"] = f"{LOOPBACK} {primary_port}"
        extra.update(self.extra)
        return RedisServer(
            self.directory / name,
            appendonly=self.appendonly,
            appendfsync=self.appendfsync,
            extra=extra,
            password=self.password,
        )

    def _sentinel_conf(self, primary_port: int) -> str:
        """Return the initial sentinel.conf text."""
        name = self.master_name
        lines = [
            "sentinel resolve-hostnames no",
            "sentinel announce-hostnames no",
            f"sentinel monitor {name} {LOOPBACK} {primary_port} {min(SENTINEL_QUORUM, self.sentinel_count)}",
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
        ]
        if self.password is not None:
            lines.append(f"sentinel auth-pass {name} {_conf_quote(self.password)}")
        return "\n".join(lines) + "\n"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start every process; return once replication is up and every Sentinel sees the whole set."""
        if self.nodes:
            raise RuntimeError("RedisHA already started")
        try:
            primary = self._node("node0", None)
            self.nodes.append(primary)
            primary.start()
            for index in range(1, self.replica_count + 1):
                self.nodes.append(self._node(f"node{index}", primary.port))
                self.nodes[-1].start()
            # Sentinels start after the replicas are linked so that their first INFO of the
            # primary lists them; otherwise discovery waits for the next INFO, 10 s later.
            self._wait_until(lambda: self._replicas_linked(primary), timeout_s, "replication up")
            for index in range(self.sentinel_count):
                sentinel = SentinelProcess(self.directory / f"sentinel{index}")
                sentinel.directory.mkdir(parents=True, exist_ok=True)
                sentinel.conf_path.write_text(self._sentinel_conf(primary.port), encoding="utf-8")
                self.sentinels.append(sentinel)
                sentinel.start()
            self._wait_until(lambda: self._sentinels_agree(primary), timeout_s, "Sentinels see the set")
        except BaseException:
            self.stop()
            raise

    def _client(self, port: int, password: str | None = None) -> redis.Redis:
        """Return a short-timeout client for a probe, so a frozen process cannot stall it."""
        timeouts = {"socket_timeout": _PROBE_TIMEOUT_S, "socket_connect_timeout": _PROBE_TIMEOUT_S}
        return redis.Redis(host=LOOPBACK, port=port, password=password, decode_responses=True, **timeouts)

    def _ask(self, sentinel: SentinelProcess, subcommand: str) -> list:
        """Run `SENTINEL subcommand master_name` on one Sentinel and return its raw reply."""
        with self._client(sentinel.port) as conn:
            return conn.execute_command("SENTINEL", subcommand, self.master_name)

    def _named_port(self, sentinel: SentinelProcess) -> int:
        """Return the port of the primary that this Sentinel currently names."""
        return int(self._ask(sentinel, "GET-MASTER-ADDR-BY-NAME")[1])

    def _replicas_linked(self, primary: RedisServer) -> bool:
        """Tell whether every live, unfrozen node but primary has an up link to it."""
        for node in self.nodes:
            if node is primary or not node.running or node in self._frozen:
                continue
            with self._client(node.port, self.password) as conn:
                info = conn.info("replication")
            linked = (info.get("role"), info.get("master_port"), info.get("master_link_status"))
            if linked != ("slave", primary.port, "up"):
                return False
        return True

    def _sentinels_agree(self, primary: RedisServer) -> bool:
        """Tell whether every Sentinel names primary and knows all replicas and its peers."""
        return all(
            self._named_port(sentinel) == primary.port
            and len(self._ask(sentinel, "REPLICAS")) == len(self.nodes) - 1
            and len(self._ask(sentinel, "SENTINELS")) == len(self.sentinels) - 1
            for sentinel in self.sentinels
        )

    def _wait_until(self, condition: Callable[[], bool], timeout_s: float, what: str) -> float:
        """Poll condition until it holds; return the seconds taken or raise with every log's tail."""
        started = time.monotonic()
        while True:
            try:
                if condition():
                    return time.monotonic() - started
            except (redis.exceptions.RedisError, OSError, IndexError, ValueError):
                pass  # a process mid-start, mid-failover or frozen: ask again
            if time.monotonic() - started >= timeout_s:
                raise RuntimeError(f"{what}: not reached within {timeout_s:.1f}s\n{self.log_tails()}")
            time.sleep(_POLL_INTERVAL_S)

    def log_tails(self) -> str:
        """Return the last lines of every process's log, for error messages."""
        return "\n".join(
            f"--- :{proc.port} pid={proc.pid} {proc.log_path} ---\n{_tail(proc.log_path, _LOG_TAIL_LINES)}"
            for proc in [*self.nodes, *self.sentinels]
        )

    def primary(self) -> RedisServer:
        """Return the node most Sentinels currently name as primary."""
        votes: Counter[int] = Counter()
        for sentinel in self.sentinels:
            try:
                votes[self._named_port(sentinel)] += 1
            except (redis.exceptions.RedisError, IndexError, TypeError):
                continue
        if not votes:
            raise RuntimeError(f"no Sentinel names a primary for {self.master_name}")
        return self._node_at(votes.most_common(1)[0][0])

    def _node_at(self, port: int) -> RedisServer:
        """Return the data node listening on port."""
        for node in self.nodes:
            if node.port == port:
                return node
        raise LookupError(f"no node of this set on port {port}")

    def replicas(self) -> list[RedisServer]:
        """Return every node but the current primary (whether running or not)."""
        primary = self.primary()
        return [node for node in self.nodes if node is not primary]

    def kill_primary(self) -> RedisServer:
        """SIGKILL the current primary, like a crash, and return its node."""
        node = self.primary()
        node.kill()
        return node

    def freeze_primary(self) -> RedisServer:
        """SIGSTOP the current primary (a stalled network: clients hang) and return its node."""
        node = self.primary()
        if node.pid is None:
            raise RuntimeError(f"{node!r} is not running")
        os.kill(node.pid, signal.SIGSTOP)
        self._frozen.append(node)
        return node

    def thaw(self, node: RedisServer) -> None:
        """SIGCONT a frozen node: it resumes, still believing it is the primary, until demoted."""
        if node in self._frozen:
            self._frozen.remove(node)
        if node.pid is not None:
            os.kill(node.pid, signal.SIGCONT)

    def wait_for_failover(self, old_primary_port: int, timeout_s: float = 30.0) -> float:
        """Return the seconds until every Sentinel names another primary that says ROLE master."""

        def done() -> bool:
            """Tell whether all Sentinels agree on a new, live primary."""
            ports = {self._named_port(s) for s in self.sentinels}
            if len(ports) != 1 or old_primary_port in ports:
                return False
            with self._client(ports.pop(), self.password) as conn:
                return conn.execute_command("ROLE")[0] == "master"

        return self._wait_until(done, timeout_s, f"failover away from :{old_primary_port}")

    def restart(self, node: RedisServer, timeout_s: float = 10.0) -> None:
        """Start a killed node again with its first config; Sentinel later makes it a replica."""
        if node.running:
            raise RuntimeError(f"{node!r} is still running")
        node.start(timeout_s)

    def wait_for_replicas(self, timeout_s: float = 30.0) -> float:
        """Return the seconds until every live, unfrozen node replicates from the named primary."""
        return self._wait_until(
            lambda: self._replicas_linked(self.primary()), timeout_s, "every node a replica"
        )

    def stop(self) -> None:
        """Stop every process, thawing frozen ones first; already-dead ones are fine."""
        for node in list(self._frozen):
            try:
                self.thaw(node)
            except ProcessLookupError:  # died while frozen
                self._frozen.remove(node)
        for proc in [*self.sentinels, *self.nodes]:
            try:
                proc.stop()
            except (OSError, subprocess.SubprocessError):
                proc.kill()

    def __enter__(self) -> RedisHA:
        """Start the set and return it."""
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop every process, whatever happened in the block."""
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Run a primary, replicas and Sentinels in the foreground until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.redis_ha", description=__doc__)
    parser.add_argument("--dir", type=Path, required=True, help="data dir, one subdir a process")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--sentinels", type=int, default=3)
    parser.add_argument("--master-name", default="viber-vote")
    parser.add_argument("--password", default=None, help="requirepass of the data nodes")
    args = parser.parse_args(argv)

    ha = RedisHA(
        args.dir,
        replicas=args.replicas,
        sentinels=args.sentinels,
        master_name=args.master_name,
        password=args.password,
    )
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    code = 0
    try:
        ha.start()
        print(f"REDIS_SENTINELS={ha.sentinels_env}", flush=True)
        print(f"REDIS_SENTINEL_MASTER={ha.master_name}", flush=True)
        nodes = ", ".join(f":{n.port}" for n in ha.nodes)
        print(f"# nodes {nodes} (primary :{ha.primary().port}), dir {ha.directory}", file=sys.stderr)
        # Data nodes may be killed by hand to try a failover; a dead Sentinel ends the run.
        while not stopping.wait(0.5):
            if not all(sentinel.running for sentinel in ha.sentinels):
                print(f"a Sentinel exited unexpectedly:\n{ha.log_tails()}", file=sys.stderr)
                code = 1
                break
    except (RuntimeError, FileNotFoundError) as exc:
        print(str(exc), file=sys.stderr)
        code = 1
    finally:
        ha.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
