"""`make run`: the whole service on this machine, with a Redis and a fake Viber if none is given.

- REDIS_URL unset: starts a redis-server (append-only, fsync always) with its data in var/redis.
- VIBER_AUTH_TOKEN unset: starts a local fake Viber API and plays a short simulated vote, so a
  newcomer sees votes, a duplicate, a retry and the results happen.
- VOTER_ID_SECRET / OPERATOR_TOKEN unset: random ones, kept in var/local.env across runs.
Then runs the Procfile with honcho until Ctrl-C.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from tests.support.fake_viber import FakeViber
from tests.support.redis_server import RedisServer, free_port
from tests.support.stack import ROOT
from webhook.channels.viber.signature import HEADER, sign

VAR = ROOT / "var"
DEMO_TOKEN = "local-demo-bot-token"
DEMO_NAMES = ("anna", "boris", "chrystsina", "dzmitry", "hanna")


def local_secrets(path: Path) -> dict[str, str]:
    """Secrets for a local run, generated once and kept in var/local.env."""
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            values[key] = value
    for key in ("VOTER_ID_SECRET", "OPERATOR_TOKEN"):
        values.setdefault(key, secrets.token_urlsafe(24))
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)
    return values


def callback(base_url: str, token: str, payload: dict) -> tuple[int, dict]:
    """POST a signed callback like Viber does."""
    body = json.dumps(payload).encode()
    request = urllib.request.Request(
        f"{base_url}/viber/webhook", data=body, headers={HEADER: sign(token, body)}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def simulate_vote(base_url: str, token: str, fake: FakeViber, operator_token: str) -> None:
    """Play a short vote: welcomes, votes, a second tap, a Viber retry, a stray text; show results."""
    now_ms = int(time.time() * 1000)
    run = secrets.token_hex(2)
    voters = [f"demo-{name}-{run}" for name in DEMO_NAMES]
    user = {"name": "Demo", "language": "en", "country": "BY", "api_version": 10}
    welcome = callback(
        base_url,
        token,
        {
            "event": "conversation_started",
            "timestamp": now_ms,
            "message_token": 1,
            "user": {"id": voters[0], **user},
        },
    )[1]
    print(f"\n--- a voter opens the bot; the welcome says:\n{welcome.get('text')}")
    print(f"    buttons: {[b['ActionBody'] for b in welcome.get('keyboard', {}).get('Buttons', [])]}")
    for i, voter in enumerate(voters):
        choice = "yes" if i % 3 else "no"
        message = {"type": "text", "text": choice, "tracking_data": "negotiations-2021"}
        payload = {
            "event": "message",
            "timestamp": now_ms,
            "message_token": 100 + i,
            "sender": {"id": voter, **user},
            "message": message,
        }
        status, _ = callback(base_url, token, payload)
        print(f"--- {voter} taps {choice!r}: HTTP {status}")
        if i == 0:
            status, _ = callback(base_url, token, payload)
            print(f"--- Viber retries {voter}'s callback (same token): HTTP {status}")
            payload = {**payload, "message_token": 200}
            print(f"--- {voter} taps again: HTTP {callback(base_url, token, payload)[0]}")
    stray = {"type": "text", "text": "hello?"}
    callback(
        base_url,
        token,
        {
            "event": "message",
            "timestamp": now_ms,
            "message_token": 300,
            "sender": {"id": voters[1], **user},
            "message": stray,
        },
    )
    print(f"--- {voters[1]} writes 'hello?'")
    try:
        replies = fake.wait_for_messages(len(voters) + 2, timeout_s=15)
    except AssertionError as exc:
        print(f"!!! {exc}")
        replies = fake.sent_messages()
    print("\n--- what the bot sent through Viber's API:")
    for reply in replies:
        print(f"    to {reply['receiver']}: {reply['text'].splitlines()[0]}")
    request = urllib.request.Request(
        f"{base_url}/api/results", headers={"Authorization": f"Bearer {operator_token}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        print(f"\n--- GET /api/results:\n{json.dumps(json.loads(response.read()), indent=2)}\n")


def wait_ready(base_url: str, process: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    """Wait for /healthz, or fail if the process manager exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the Procfile's processes exited ({process.returncode})")
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=1):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise SystemExit("web did not become ready")


def main() -> int:
    """Start what is missing, run the Procfile, demo if there is no Viber token, wait for Ctrl-C."""
    signal.signal(signal.SIGTERM, _interrupt)
    VAR.mkdir(exist_ok=True)
    env = dict(os.environ)
    for key, value in local_secrets(VAR / "local.env").items():
        env.setdefault(key, value)
    env.setdefault("PORT", "8000")
    env.setdefault("DASHBOARD_INSECURE_COOKIE", "1")  # the local run serves plain http
    base_url = f"http://127.0.0.1:{env['PORT']}"
    with ExitStack() as stack:
        if not env.get("REDIS_URL") and not env.get("REDIS_SENTINELS"):
            redis = stack.enter_context(RedisServer(VAR / "redis", port=free_port(), appendonly=True))
            env["REDIS_URL"] = redis.url
            print(f"started redis-server (append-only, fsync always) at {redis.url}, data in var/redis")
        fake = None
        if not env.get("VIBER_AUTH_TOKEN"):
            fake = stack.enter_context(FakeViber(auth_token=DEMO_TOKEN))
            env.update(VIBER_AUTH_TOKEN=DEMO_TOKEN, VIBER_API_URL=fake.url)
            print(f"no VIBER_AUTH_TOKEN: using a local fake Viber API at {fake.url}")
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        honcho = subprocess.Popen(
            [sys.executable, "-m", "honcho", "start", "-f", str(ROOT / "Procfile")], cwd=ROOT, env=env
        )
        stack.callback(_stop, honcho)
        try:
            wait_ready(base_url, honcho)
        except KeyboardInterrupt:
            return 130
        print(f"\nwebhook: {base_url}/viber/webhook   results: {base_url}/api/results")
        print(f"dashboard: {base_url}/dashboard   public page: {base_url}/")
        print(f"operator token (var/local.env): {env['OPERATOR_TOKEN']}")
        if fake is not None:
            simulate_vote(base_url, DEMO_TOKEN, fake, env["OPERATOR_TOKEN"])
        print("running; Ctrl-C stops everything")
        try:
            honcho.wait()
        except KeyboardInterrupt:
            pass
    return 0


def _interrupt(signum: int, frame: object) -> None:
    """Treat SIGTERM like Ctrl-C, so everything started is stopped."""
    raise KeyboardInterrupt


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop honcho and the processes it runs."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


if __name__ == "__main__":
    sys.exit(main())
