"""`flask --app wsgi`: the commands are listed with nothing set, each needs only its own settings, and
a missing one is a line, not a traceback; the service itself stays strict; no stray .env reaches a test.

The commands run through Flask's own CLI group (FlaskGroup, what the `flask` script runs), which
imports wsgi.py as `flask --app wsgi` does; tests/test_localstack.py runs the README's lines as
processes against `make run`.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from flask.cli import FlaskGroup

from tests.support.redis_server import RedisServer, free_port
from tests.support.stack import ROOT, SERVICE_SETTINGS

COMMANDS = (
    "results",
    "recount",
    "open-poll",
    "close-poll",
    "follow-schedule",
    "replay-dead",
    "export",
    "audit",
    "audit-verify",
    "set-webhook",
    "set-telegram-webhook",
)


@pytest.fixture(autouse=True)
def forget_wsgi() -> Iterator[None]:
    """No later test finds the wsgi module (and its app) a command line here imported."""
    yield
    sys.modules.pop("wsgi", None)


def flask(*args: str, **settings: str | None) -> Result:
    """`flask --app wsgi ARGS` with only these settings in the environment (restored afterwards).

    wsgi.py is imported anew each time, as by each `flask` process.
    """
    sys.modules.pop("wsgi", None)
    env: dict[str, str | None] = dict.fromkeys(SERVICE_SETTINGS) | {"FLASK_RUN_FROM_CLI": None} | settings
    return CliRunner().invoke(FlaskGroup(), ["--app", str(ROOT / "wsgi.py"), *args], env=env)


def test_help_lists_every_command_with_nothing_set() -> None:
    """--help imports wsgi with no setting at all: every command is listed, and no traceback."""
    result = flask("--help")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "Error" not in result.output
    listed = result.stdout.split("Commands:")[1]
    for command in COMMANDS:
        assert f"  {command} " in listed


def test_a_missing_setting_is_one_line_naming_it() -> None:
    """With nothing set, a command ends with one line naming REDIS_URL (click's error, exit 1)."""
    result = flask("results")
    assert result.exit_code == 1 and result.exception is not None and isinstance(result.exception, SystemExit)
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("Error: Config 'REDIS_URL' is missing") and ".env" in result.stderr


def test_redis_only_commands_need_only_redis(redis_server: RedisServer, tmp_path: Path) -> None:
    """REDIS_URL alone: results, recount and export run; set-webhook names what it lacks in a line."""
    url = redis_server.url
    results = flask("results", "--json", REDIS_URL=url)
    assert results.exit_code == 0, results.output
    assert '"poll": "negotiations-2021"' in results.stdout
    assert flask("recount", REDIS_URL=url).exit_code == 0
    out = tmp_path / "results.csv"
    assert flask("export", "results", "--output", str(out), REDIS_URL=url).exit_code == 0
    assert out.read_text().startswith("poll,option,label,votes,share")
    webhook = flask("set-webhook", "https://example.org/viber/webhook", REDIS_URL=url)
    assert webhook.exit_code == 1 and isinstance(webhook.exception, SystemExit)
    assert webhook.stderr.startswith("Error: Config 'VIBER_AUTH_TOKEN' is missing")
    assert len(webhook.stderr.strip().splitlines()) == 1


def test_an_unreachable_redis_is_one_line() -> None:
    """A REDIS_URL nobody answers (a stopped make run) is one line, not a ConnectionError traceback."""
    result = flask("results", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.stderr.startswith("Error: Redis is unreachable at REDIS_URL")


def test_the_service_still_refuses_to_start_without_every_setting(redis_server: RedisServer) -> None:
    """gunicorn's import of wsgi (no Flask CLI around it) fails loudly, naming the missing setting."""
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": redis_server.url}
    done = subprocess.run(
        [sys.executable, "-c", "import wsgi"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "ConfigError: Config 'VIBER_AUTH_TOKEN' is missing" in done.stderr


def test_a_stray_env_file_cannot_change_a_test(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """conftest.py turns Flask's .env loading off for the whole suite; without that, a .env would count."""
    (tmp_path / ".env").write_text("POLL_FILE=/nonexistent/polls.toml\n")
    monkeypatch.chdir(tmp_path)
    assert flask("results", REDIS_URL=redis_server.url).exit_code == 0
    loaded = flask("results", REDIS_URL=redis_server.url, FLASK_SKIP_DOTENV=None)
    assert loaded.exit_code == 1 and "/nonexistent/polls.toml" in loaded.stderr
