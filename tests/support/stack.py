"""Run the service's processes exactly as the Procfile declares them, for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent.parent
PROCFILE = ROOT / "Procfile"
STOP_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 60.0
"""How long the web process may take to answer /healthz (a busy 2-core machine can take 20 s)."""
SERVICE_SETTINGS = (
    *("REDIS_URL", "VOTER_ID_SECRET", "OPERATOR_TOKEN", "AUDIT_SECRET", "POLL_FILE", "BOT_NAME"),
    *("VIBER_AUTH_TOKEN", "VIBER_API_URL", "VIBER_CHAT_URI"),
    *("TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET", "TELEGRAM_API_URL", "TELEGRAM_BOT_USERNAME"),
    *("TELEGRAM_MESSAGES_PER_S", "MAX_BODY_BYTES", "MAX_CALLBACK_AGE_S", "REPLY_RATE_LIMIT"),
    *("REPLY_RATE_WINDOW_S", "DASHBOARD_INSECURE_COOKIE", "PORT", "HOST", "LOG_LEVEL", "SEND_NICE"),
)
"""Every setting the service's processes read (README, "Configuration"): what a test that must run
with none set by hand takes out of the environment it inherits."""


def read_procfile(path: Path = PROCFILE) -> dict[str, str]:
    """Process name -> command line, from a Procfile."""
    commands: dict[str, str] = {}
    for line in path.read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not name.startswith("#"):
            commands[name.strip()] = command.strip()
    return commands


class Stack:
    """The web, worker and clock processes of one deployment, started from the Procfile."""

    def __init__(
        self,
        environ: Mapping[str, str],
        log_dir: Path,
        *,
        port: int,
        counts: Mapping[str, int] | None = None,
    ) -> None:
        """Prepare a stack; counts says how many of each Procfile process to run (default 1)."""
        self.log_dir = log_dir
        self.port = port
        self.commands = read_procfile()
        self.counts = {name: 1 for name in self.commands} | dict(counts or {})
        bin_dir = str(Path(sys.executable).parent)
        self.env = {
            **os.environ,
            **environ,
            "PORT": str(port),
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
        }
        self.processes: dict[str, list[subprocess.Popen[bytes]]] = {}

    @property
    def base_url(self) -> str:
        """Where the web process listens."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Start every process and wait until the web process answers /healthz."""
        log_dir = self.log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        for name, count in self.counts.items():
            for _ in range(count):
                self.start_process(name)
        self.wait_ready(timeout_s)

    def start_process(self, name: str) -> subprocess.Popen[bytes]:
        """Start one more copy of a Procfile process."""
        index = len(self.processes.get(name, []))
        with (self.log_dir / f"{name}.{index}.log").open("ab") as log:
            process = subprocess.Popen(
                ["bash", "-c", f"exec {self.commands[name]}"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.setdefault(name, []).append(process)
        return process

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait until /healthz answers 200."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            for name, processes in self.processes.items():
                for process in processes:
                    if process.poll() is not None:
                        raise RuntimeError(f"{name} exited ({process.returncode}): {self.log_tail(name)}")
            time.sleep(0.1)
        raise RuntimeError(f"web did not become ready: {self.log_tail('web')}")

    def send_signal(self, name: str, sig: int, index: int = 0) -> None:
        """Send a signal to one process's whole group (e.g. SIGSTOP to freeze it)."""
        try:
            os.killpg(self.processes[name][index].pid, sig)
        except ProcessLookupError:
            pass

    def kill(self, name: str, index: int = 0, sig: int = signal.SIGKILL) -> None:
        """Send a signal to one process's whole group and wait for it to end."""
        self.send_signal(name, sig, index)
        self.processes[name][index].wait(timeout=STOP_TIMEOUT_S)

    def restart(self, name: str, index: int = 0) -> None:
        """Start a process again in the place of a stopped one."""
        processes = self.processes[name]
        dead = processes.pop(index)
        if dead.poll() is None:
            raise RuntimeError(f"{name}[{index}] is still running")
        processes.insert(index, self.start_process(name))
        processes.pop()

    def stop(self) -> None:
        """SIGTERM every process (warm shutdown), SIGKILL what is left after a grace period."""
        everything = [p for processes in self.processes.values() for p in processes]
        for process in everything:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in everything:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()

    def log_tail(self, name: str, lines: int = 30) -> str:
        """The end of a process's log, for error messages."""
        text = ""
        for path in sorted(self.log_dir.glob(f"{name}.*.log")):
            text += path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Stack:
        """Start on entering a with block (stopping whatever started if the start fails)."""
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop on leaving it."""
        self.stop()
