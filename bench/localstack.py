"""`make run`: the whole service on this machine, with a Redis and fake messengers if none are given.

- PORT unset: the web process listens on 8000, or on a free port when 8000 is taken (it says
  which); a PORT that is taken stops make run at once, naming it.
- REDIS_URL unset: starts a redis-server (append-only, fsync always) with its data in var/redis,
  kept across runs.
- Neither VIBER_AUTH_TOKEN nor TELEGRAM_BOT_TOKEN: local fakes of both messengers' APIs, the
  polls of var/demo-polls.toml (the default question and a phone poll), and a demo (bench/demo.py).
- VOTER_ID_SECRET, OPERATOR_TOKEN, TELEGRAM_WEBHOOK_SECRET unset: random ones, kept in var/local.env.
- What it chose is written to .env, where Flask's CLI finds it (`.venv/bin/flask --app wsgi
  results` just works), and removed when it stops. A .env it did not write is read (the
  environment wins, as in Flask's CLI) and left alone; its settings then go to var/make-run.env.
Then runs the Procfile with honcho until Ctrl-C, showing the processes' output, which at the
default LOG_LEVEL is their errors and one progress line a minute.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from bench.demo import PHONE_POLL_TOML, Demo
from bench.local_settings import (
    DEMO_TELEGRAM_TOKEN,
    DEMO_VIBER_TOKEN,
    PortTaken,
    ProcessOutput,
    choose_port,
    local_secrets,
    users_settings,
    write_settings,
)
from tests.support.fake_telegram import FakeTelegram
from tests.support.fake_viber import FakeViber
from tests.support.redis_server import RedisServer, free_port
from tests.support.stack import ROOT
from webhook.config import DEFAULT_POLL_FILE
from webhook.core.polls import load_polls

READY_TIMEOUT_S = 60.0
MESSENGERS = (
    ("Viber", "VIBER_AUTH_TOKEN", "VIBER_CHAT_URI"),
    ("Telegram", "TELEGRAM_BOT_TOKEN", "TELEGRAM_BOT_USERNAME"),
)
"""Each bot: its name, the setting that runs it, the setting the public page's button needs."""


def arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line (make run gives none; the tests give a scratch directory)."""
    parser = argparse.ArgumentParser(prog="python -m bench.localstack", description=__doc__.splitlines()[0])
    parser.add_argument("--var", type=Path, default=ROOT / "var", help="data directory (default: var/)")
    parser.add_argument("--env-file", type=Path, default=ROOT / ".env", help="where the settings go")
    parser.add_argument(
        "--demo-then-exit", action="store_true", help="stop after the demo (status 1 if it failed)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Start what is missing, run the Procfile, play the demo without messenger tokens, wait for Ctrl-C."""
    signal.signal(signal.SIGTERM, _interrupt)
    args = arguments(argv)
    env = users_settings(args.env_file) | dict(os.environ)  # the environment wins, as in Flask's CLI
    try:
        port, note = choose_port(env.get("PORT"), env.get("HOST") or "127.0.0.1")
    except PortTaken as taken:
        print(f"make run: {taken}", file=sys.stderr)
        return 2
    if note:
        print(f"make run: {note}")
    args.var.mkdir(parents=True, exist_ok=True)
    chosen = {key: value for key, value in local_secrets(args.var / "local.env").items() if not env.get(key)}
    chosen |= {"PORT": str(port), "DASHBOARD_INSECURE_COOKIE": "1"}  # the local run serves plain http
    with ExitStack() as stack:
        if env.get("REDIS_SENTINELS"):  # make run-ha: the CLI's .env points at the Sentinels too
            chosen |= {k: env[k] for k in ("REDIS_SENTINELS", "REDIS_SENTINEL_MASTER") if env.get(k)}
        elif not env.get("REDIS_URL"):
            redis = stack.enter_context(RedisServer(args.var / "redis", port=free_port(), appendonly=True))
            chosen["REDIS_URL"] = redis.url
            print(f"make run: redis-server at {redis.url} (append-only, fsync on), data in {redis.directory}")
        fakes = None
        if not env.get("VIBER_AUTH_TOKEN") and not env.get("TELEGRAM_BOT_TOKEN"):
            fakes = _fake_messengers(stack, chosen)
            if not env.get("POLL_FILE"):
                chosen["POLL_FILE"] = _demo_polls(args.var)
        env |= chosen
        settings_note = write_settings(stack, args.env_file, args.var, chosen)
        base_url = f"http://127.0.0.1:{port}"
        output = stack.enter_context(ProcessOutput(_honcho(env)))
        try:
            _wait_ready(base_url, output.process)
        except KeyboardInterrupt:
            return 130
        output.hold()  # the summary and the story print whole, not cut by the processes' lines
        token_source = f"kept in {args.var / 'local.env'}" if "OPERATOR_TOKEN" in chosen else "yours"
        _summary(base_url, env, settings_note, token_source)
        passed = fakes is None or _demo(base_url, env, *fakes).play()
        if args.demo_then_exit:
            return 0 if passed else 1
        output.release()  # what the processes said meanwhile (gunicorn's workers booting), then quiet
        print("running: the processes' errors, and a progress line a minute, follow; Ctrl-C stops everything")
        try:
            output.process.wait()
        except KeyboardInterrupt:
            pass
    return 0


def _fake_messengers(stack: ExitStack, chosen: dict[str, str]) -> tuple[FakeViber, FakeTelegram]:
    """Local fakes of Viber's API and Telegram's Bot API, and the settings that point the service at them."""
    viber = stack.enter_context(FakeViber(auth_token=DEMO_VIBER_TOKEN))
    telegram = stack.enter_context(FakeTelegram(token=DEMO_TELEGRAM_TOKEN))
    chosen |= {
        "VIBER_AUTH_TOKEN": DEMO_VIBER_TOKEN,
        "VIBER_API_URL": viber.url,
        "TELEGRAM_BOT_TOKEN": DEMO_TELEGRAM_TOKEN,
        "TELEGRAM_API_URL": telegram.url,
    }
    print("make run: no VIBER_AUTH_TOKEN or TELEGRAM_BOT_TOKEN: local fakes of both APIs, and a demo")
    return viber, telegram


def _demo_polls(var: Path) -> str:
    """The demo's poll file: the default one, and a phone poll."""
    polls = var / "demo-polls.toml"
    polls.write_text(Path(DEFAULT_POLL_FILE).read_text() + PHONE_POLL_TOML)
    print(f"make run: polls from {polls}: the default question, and a phone poll for the demo")
    return str(polls)


def _demo(base_url: str, env: dict[str, str], viber: FakeViber, telegram: FakeTelegram) -> Demo:
    """The demo against this stack."""
    return Demo(
        base_url,
        viber,
        telegram,
        viber_token=env["VIBER_AUTH_TOKEN"],
        telegram_secret=env["TELEGRAM_WEBHOOK_SECRET"],
        operator_token=env["OPERATOR_TOKEN"],
        polls=load_polls(env.get("POLL_FILE") or DEFAULT_POLL_FILE),
    )


def _honcho(env: dict[str, str]) -> subprocess.Popen[str]:
    """honcho running the Procfile with exactly this environment (its own .env reading turned off)."""
    env = {**env, "PYTHONUNBUFFERED": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"}
    return subprocess.Popen(
        [sys.executable, "-m", "honcho", "start", "--env", os.devnull, "--procfile", str(ROOT / "Procfile")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )


def _summary(base_url: str, env: dict[str, str], settings_note: str, token_source: str) -> None:
    """Where everything is: the URLs, the operator token, the settings file and a first command."""
    bots = [(name, key) for name, token, key in MESSENGERS if env.get(token)]
    placeholders = " and ".join(name for name, key in bots if not env.get(key))
    print(f"\npublic page:    {base_url}/", end="")
    print(f"  (its {placeholders} buttons are placeholders, and it says so)" if placeholders else "")
    print(f"dashboard:      {base_url}/dashboard   metrics: {base_url}/metrics")
    print(f"results:        {base_url}/api/results (with the operator token as Bearer token)")
    print("webhooks:       " + "   ".join(f"{base_url}/{name.lower()}/webhook" for name, _ in bots))
    print(f"operator token: {env['OPERATOR_TOKEN']}  ({token_source})")
    print("  log in as 'bootstrap' with it, until `.venv/bin/flask --app wsgi operator add NAME`")
    print(settings_note, flush=True)


def _wait_ready(base_url: str, process: subprocess.Popen[str]) -> None:
    """Wait for /healthz, or fail if the process manager exits."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"make run: the Procfile's processes exited ({process.returncode})")
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=1):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise SystemExit("make run: the web process did not become ready")


def _interrupt(signum: int, frame: object) -> None:
    """Treat SIGTERM like Ctrl-C, so everything started is stopped."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C before the processes ran, or during the demo: all is stopped
        sys.exit(130)
