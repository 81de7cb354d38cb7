"""What `make run` chooses and keeps: web port, local secrets, settings file; and the processes' output."""

from __future__ import annotations

import secrets
import signal
import socket
import subprocess
import sys
import threading
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType

from dotenv import dotenv_values

from tests.support.redis_server import free_port

DEFAULT_PORT = 8000
"""gunicorn.conf.py's default port, which make run tries first."""
NEARBY_PORTS = 100
"""When the default port is taken, the next ones are tried before any free port."""
DEMO_VIBER_TOKEN = "local-demo-bot-token"
DEMO_TELEGRAM_TOKEN = "123456789:local-demo-telegram-bot-token"
KEPT_SECRETS = ("VOTER_ID_SECRET", "OPERATOR_TOKEN", "TELEGRAM_WEBHOOK_SECRET")
ENV_FILE_MARKER = "# Written by make run"
"""The first line of a settings file make run wrote (and may rewrite and remove); any other is the user's."""
STOP_TIMEOUT_S = 15.0


class PortTaken(Exception):
    """The port asked for (PORT) is in use."""


def port_is_free(host: str, port: int) -> bool:
    """Whether the web process could listen on host:port now (bound as gunicorn binds, SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def choose_port(requested: str | None, host: str, default: int = DEFAULT_PORT) -> tuple[int, str | None]:
    """The web process's port and a line saying why it is not the default; PortTaken for a taken PORT."""
    if requested:
        try:
            port = int(requested)
        except ValueError:
            raise PortTaken(f"PORT={requested!r} is not a port number") from None
        if not port_is_free(host, port):
            raise PortTaken(
                f"port {port} on {host} is taken (another make run, or another server): "
                f"pick another, e.g. PORT={_nearby_free(host, port)} make run"
            )
        return port, None
    if port_is_free(host, default):
        return default, None
    port = _nearby_free(host, default)
    return port, f"port {default} is taken: the web process listens on {port} (PORT=... make run picks one)"


def _nearby_free(host: str, port: int) -> int:
    """The first free port after this one, else any free port."""
    nearby = (p for p in range(port + 1, port + NEARBY_PORTS) if p < 65536 and port_is_free(host, p))
    return next(nearby, None) or free_port()


def local_secrets(path: Path) -> dict[str, str]:
    """Secrets for local runs, generated once and kept in var/local.env (the votes stay, so must they)."""
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            values[key] = value
    for key in KEPT_SECRETS:
        values.setdefault(key, secrets.token_urlsafe(24))
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)
    return values


def users_settings(env_file: Path) -> dict[str, str]:
    """The settings of a .env make run did not write, read as Flask's CLI and honcho read it."""
    if not env_file.exists() or _written_by_make_run(env_file):
        return {}
    return {key: value for key, value in dotenv_values(env_file).items() if value is not None}


def _written_by_make_run(path: Path) -> bool:
    """Whether a settings file is one make run wrote (and may rewrite and remove)."""
    return path.read_text().startswith(ENV_FILE_MARKER)


def write_settings(stack: ExitStack, env_file: Path, var: Path, chosen: dict[str, str]) -> str:
    """Write what make run chose where Flask's CLI reads it (removed on exit); say how to use it."""
    target, note = (
        env_file,
        f"settings:       {env_file} (Flask's CLI reads it): try .venv/bin/flask --app wsgi results",
    )
    if env_file.exists() and not _written_by_make_run(env_file):
        target = var / "make-run.env"
        note = (
            f"settings:       {target} ({env_file} is not make run's, so it is left alone): "
            f"try .venv/bin/flask --env-file {target} --app wsgi results"
        )
    text = (
        f"{ENV_FILE_MARKER} (bench/localstack.py): the local stack's settings, for Flask's CLI\n"
        "# (.venv/bin/flask --app wsgi ...). Removed when make run stops; yours go in the environment.\n"
        + "".join(f"{key}='{value}'\n" for key, value in sorted(chosen.items()))
    )
    target.write_text(text)
    target.chmod(0o600)
    stack.callback(_remove_if_unchanged, target, text)
    return note


def _remove_if_unchanged(path: Path, text: str) -> None:
    """Remove a settings file make run wrote, unless something rewrote it since (another make run)."""
    try:
        if path.read_text() == text:
            path.unlink()
    except FileNotFoundError:
        pass


class ProcessOutput:
    """The process manager's output, shown line by line, or held back while make run tells its story."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        """Show this process's output (its stdout, with stderr merged into it)."""
        self.process = process
        self._held: list[str] | None = None
        self._lock = threading.Lock()
        self._pump = threading.Thread(target=self._copy, name="process-output", daemon=True)

    def hold(self) -> None:
        """Keep lines back until release()."""
        with self._lock:
            self._held = self._held if self._held is not None else []

    def release(self) -> None:
        """Show the lines held back, then every line as it comes."""
        with self._lock:
            held, self._held = self._held or [], None
            sys.stdout.writelines(held)
            sys.stdout.flush()

    def _copy(self) -> None:
        """Copy the process's lines to stdout (or to the held lines) until it closes its output."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._lock:
                if self._held is not None:
                    self._held.append(line)
                else:
                    sys.stdout.write(line)
                    sys.stdout.flush()

    def __enter__(self) -> ProcessOutput:
        """Start copying."""
        self._pump.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the process (SIGINT, as Ctrl-C would; killed after STOP_TIMEOUT_S) and show what is left."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._pump.join(timeout=STOP_TIMEOUT_S)
        self.release()
