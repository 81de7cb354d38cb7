"""`make run` for a newcomer: a demo that runs again and again, the README's CLI lines working against it
with nothing set by hand, quiet logs when idle, and a taken port named with a way out.

`make run` is `python -m bench.localstack`; here it gets a scratch data directory and settings
file (never the checkout's var/ or .env) and a free port (never 8000).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.local_settings import ENV_FILE_MARKER, choose_port, port_is_free, users_settings, write_settings
from tests.support.redis_server import free_port
from tests.support.stack import ROOT, SERVICE_SETTINGS

IDLE_S = 60.0
IDLE_MAX_LINES = 4
"""What an idle minute of `make run` may print: one progress line, and a little room."""
PROGRESS_GRACE_S = 5.0
"""A minute's progress line due at the very end of the idle minute may come this much later."""
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
DEMO_POINTS = "8 of 8 points shown"
CLI_PREFIX = ".venv/bin/flask "


def readme_cli_lines() -> list[str]:
    """The operator command lines of README.md's shell blocks, as written there."""
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.startswith(CLI_PREFIX)]


def inherited_environment() -> dict[str, str]:
    """This process's environment without any service setting: nothing is set by hand."""
    return {k: v for k, v in os.environ.items() if k not in SERVICE_SETTINGS}


class LocalRun:
    """One `make run` (python -m bench.localstack) and every line it printed, with the time it came."""

    def __init__(self, var: Path, env_file: Path, *options: str) -> None:
        """Start it on a free port, its output read in the background."""
        self.lines: list[tuple[float, str]] = []
        self._closed = False
        self._cond = threading.Condition()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.localstack",
                "--var",
                str(var),
                "--env-file",
                str(env_file),
                *options,
            ],
            cwd=ROOT,
            env=inherited_environment() | {"PORT": str(free_port())},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        """Collect lines until the process closes its output."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._cond:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self._cond.notify_all()
        self.process.stdout.close()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait_for(self, text: str, timeout_s: float = START_TIMEOUT_S) -> float:
        """The time the first line containing text came (fails with the output so far)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                found = next((at for at, line in self.lines if text in line), None)
                if found is not None:
                    return found
                if self._closed or time.monotonic() > deadline:
                    pytest.fail(f"no line with {text!r} from make run:\n{self.output}")
                self._cond.wait(0.5)

    def seen_after(self, text: str, start: float, until: float) -> bool:
        """Whether a line containing text came after start, waiting for one until the time until."""
        while not any(text in line for line in self.lines_between(start, time.monotonic())):
            if time.monotonic() > until:
                return False
            time.sleep(0.2)
        return True

    def lines_between(self, start: float, end: float) -> list[str]:
        """The lines that came after start, up to end."""
        with self._cond:
            return [line for at, line in self.lines if start < at <= end]

    @property
    def output(self) -> str:
        """Everything printed so far."""
        with self._cond:
            return "\n".join(line for _, line in self.lines)

    def stop(self) -> int:
        """Ctrl-C, as at a terminal; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()


@dataclass
class FirstHour:
    """What a newcomer's first hour showed: two runs of make run, the CLI lines, an idle minute."""

    first: LocalRun
    cli: list[tuple[str, subprocess.CompletedProcess[str]]]
    idle: list[str]
    progress_seen: bool
    env_file_written: str
    env_file_left: bool
    second: LocalRun
    second_status: int


@pytest.fixture(scope="module")
def first_hour(tmp_path_factory: pytest.TempPathFactory) -> FirstHour:
    """make run; the README's CLI lines from a checkout (its .env as make run wrote it); an idle minute;
    Ctrl-C; make run again on the same data (playing the demo, then stopping)."""
    if not (ROOT / ".venv" / "bin" / "flask").exists():
        pytest.skip("no .venv/bin/flask: `make test` creates .venv")
    base = tmp_path_factory.mktemp("first-hour")
    checkout, var = base / "checkout", base / "var"
    checkout.mkdir()
    for name in (".venv", "wsgi.py", "webhook"):  # what the README's lines use of a checkout
        (checkout / name).symlink_to(ROOT / name)
    env_file = checkout / ".env"
    first = LocalRun(var, env_file)
    try:
        running_at = first.wait_for("running:")
        written = env_file.read_text()
        cli_env = {k: v for k, v in inherited_environment().items() if k != "FLASK_SKIP_DOTENV"}
        cli = [(line, run_line(line, checkout, cli_env)) for line in readme_cli_lines()]
        time.sleep(max(0.0, running_at + IDLE_S - time.monotonic()))
        idle = first.lines_between(running_at, running_at + IDLE_S)
        progress_seen = first.seen_after(
            "progress:", running_at, until=running_at + IDLE_S + PROGRESS_GRACE_S
        )
    finally:
        first.stop()
    second = LocalRun(var, env_file, "--demo-then-exit")
    try:
        second_status = second.process.wait(timeout=START_TIMEOUT_S)
    finally:
        second.stop()
    second.wait_for("=== the demo:", timeout_s=5)
    return FirstHour(first, cli, idle, progress_seen, written, env_file.exists(), second, second_status)


def run_line(line: str, checkout: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A README line, run by bash in the checkout as an operator would type it."""
    return subprocess.run(
        ["bash", "-c", line], cwd=checkout, env=env, capture_output=True, text=True, timeout=120
    )


def demo_story(run: LocalRun) -> str:
    """The demo's part of a run's output."""
    output = run.output
    return output[output.index("=== the demo (run") : output.index("=== the demo:") + 80]


@pytest.mark.slow
def test_the_demo_runs_twice_against_the_same_store(first_hour: FirstHour) -> None:
    """Both runs show every point; the second says what it kept and adds exactly its own votes."""
    first, second = demo_story(first_hour.first), demo_story(first_hour.second)
    for story in (first, second):
        assert DEMO_POINTS in story and "FAILED" not in story, story
        assert "(Viber delivers the same tap again, same message_token: HTTP 200)" in story
    assert "votes kept from earlier runs: 0 in negotiations-2021, 0 in phone-demo" in first, first
    assert "votes kept from earlier runs: 3 in negotiations-2021, 1 in phone-demo" in second, second
    assert "negotiations-2021: Yes 4 (+2), No 2 (+1)" in second and "phone-demo: Yes 2 (+1)" in second
    assert first_hour.second_status == 0, first_hour.second.output


@pytest.mark.slow
def test_the_readme_cli_lines_work_against_make_run_as_written(first_hour: FirstHour) -> None:
    """Every `.venv/bin/flask` line of the README runs, with the settings make run wrote to .env."""
    assert first_hour.env_file_written.startswith("# Written by make run")
    assert "REDIS_URL=" in first_hour.env_file_written
    ran = dict(first_hour.cli)
    assert len(ran) >= 10, list(ran)
    for line, done in ran.items():
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr, f"{line}\n{done.stderr}"
    outputs = {line.split()[3]: done.stdout for line, done in ran.items()}
    assert "set-telegram-webhook" in outputs["--help"] and "results" in outputs["--help"]
    assert "negotiations-2021 (open)" in outputs["results"]
    assert "signature valid" in outputs["audit-verify"]
    assert not first_hour.env_file_left, "make run removes the .env it wrote when it stops"


@pytest.mark.slow
def test_an_idle_minute_of_make_run_prints_a_progress_line_and_little_else(first_hour: FirstHour) -> None:
    """After the story, routine jobs (a sweep every 2 s) print nothing; a progress line comes each minute."""
    assert len(first_hour.idle) <= IDLE_MAX_LINES, "\n".join(first_hour.idle)
    assert first_hour.progress_seen, first_hour.first.output[-3000:]


def test_a_taken_port_is_named_with_a_way_out(tmp_path: Path) -> None:
    """PORT taken: make run stops at once, before starting anything, naming the port and PORT=..."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.localstack",
                "--var",
                str(tmp_path / "var"),
                "--env-file",
                str(tmp_path / ".env"),
            ],
            cwd=ROOT,
            env=inherited_environment() | {"PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"make run: port {port} on 127.0.0.1 is taken" in done.stderr
    assert re.search(r"pick another, e\.g\. PORT=\d+ make run", done.stderr), done.stderr
    assert not (tmp_path / "var").exists() and not (tmp_path / ".env").exists()


def test_a_taken_default_port_is_replaced_by_a_free_one_it_names() -> None:
    """With PORT unset and the default taken, make run picks a free port and says which."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        default = taken.getsockname()[1]
        port, note = choose_port(None, "127.0.0.1", default=default)
        assert port != default and port_is_free("127.0.0.1", port)
    assert note == f"port {default} is taken: the web process listens on {port} (PORT=... make run picks one)"


def test_the_settings_go_to_env_unless_it_is_the_users(tmp_path: Path) -> None:
    """make run writes .env and removes it when it stops; a .env it did not write is read, never touched."""
    env_file, var, chosen = tmp_path / ".env", tmp_path / "var", {"REDIS_URL": "redis://127.0.0.1:1/0"}
    var.mkdir()
    with ExitStack() as stack:
        note = write_settings(stack, env_file, var, chosen)
        assert env_file.read_text().startswith(ENV_FILE_MARKER)
        assert "REDIS_URL='redis://127.0.0.1:1/0'" in env_file.read_text()
        assert users_settings(env_file) == {} and "try .venv/bin/flask --app wsgi results" in note
    assert not env_file.exists()
    env_file.write_text("BOT_NAME=Mine\n")
    with ExitStack() as stack:
        note = write_settings(stack, env_file, var, chosen)
        assert users_settings(env_file) == {"BOT_NAME": "Mine"}
        assert "REDIS_URL=" in (var / "make-run.env").read_text()
        assert f"--env-file {var / 'make-run.env'} --app wsgi results" in note
    assert env_file.read_text() == "BOT_NAME=Mine\n" and not (var / "make-run.env").exists()
