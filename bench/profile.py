"""`python -m bench.profile` (make bench-profile): one vote's CPU in the web process, by function.

The service's Viber webhook and the minimal vote path (bench.baselines.create_minimal_app) are
called in this process as WSGI apps, with the load generator's signed bodies (distinct voters), on
a fresh redis-server with the benchmark's fsync policy. Printed: CPU µs per vote of this process
(the web side, without gunicorn's socket handling) and of Redis, then cProfile's functions by their
own time, so each microsecond the service spends beyond the minimal path has a name.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bench.baselines import create_minimal_app
from bench.loadgen import Plan
from tests.support.redis_server import RedisServer
from webhook.channels.viber import signature
from webhook.config import DEFAULT_POLL_FILE

BOT_TOKEN = "bench-bot-token-0123456789abcdef"
VOTER_ID_SECRET = "bench-voter-secret-0123456789abcdef"
OPERATOR_TOKEN = "bench-operator-token-0123456789"

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def environs(plan: Plan) -> list[dict[str, Any]]:
    """One WSGI environ per callback of the plan (a fresh body stream each)."""
    now_ms = int(time.time() * 1000)
    made = []
    for voter, option, token, _kind in plan.items():
        body = plan.body(voter, option, token, now_ms)
        made.append(
            {
                "REQUEST_METHOD": "POST",
                "PATH_INFO": "/viber/webhook",
                "SERVER_NAME": "127.0.0.1",
                "SERVER_PORT": "8000",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "wsgi.url_scheme": "http",
                "wsgi.input": io.BytesIO(body),
                "wsgi.errors": sys.stderr,
                "wsgi.multithread": True,
                "wsgi.multiprocess": True,
                "wsgi.run_once": False,
                "CONTENT_TYPE": "application/json",
                "CONTENT_LENGTH": str(len(body)),
                "HTTP_X_VIBER_CONTENT_SIGNATURE": signature.sign(BOT_TOKEN, body),
            }
        )
    return made


def call_all(app: Wsgi, calls: list[dict[str, Any]]) -> None:
    """Call the app once per environ, reading each answer as a server would."""
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        statuses.append(status)

    for environ in calls:
        for _chunk in app(environ, start_response):
            pass
    bad = [s for s in statuses if not s.startswith("200")]
    if bad:
        raise SystemExit(f"{len(bad)} callbacks not answered 200, e.g. {bad[0]}")


def redis_cpu_s(pid: int | None) -> float:
    """CPU seconds the redis-server process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(name: str, app: Wsgi, votes: int, server: RedisServer, top: int, prefix: str) -> float:
    """Warm the app up, time N votes, then profile N more; print and return µs per vote (web)."""
    call_all(app, environs(Plan(200, id_prefix=f"{prefix}-warm-")))
    calls = environs(Plan(votes, id_prefix=f"{prefix}-timed-"))
    redis_before, cpu_before = redis_cpu_s(server.pid), time.process_time()
    call_all(app, calls)
    web_us = (time.process_time() - cpu_before) * 1e6 / votes
    redis_us = (redis_cpu_s(server.pid) - redis_before) * 1e6 / votes
    print(f"\n## {name}: {web_us:,.0f} µs of web CPU and {redis_us:,.0f} µs of Redis CPU per vote\n")
    profiler = cProfile.Profile(time.process_time)  # CPU time: waits on Redis count nothing
    calls = environs(Plan(votes, id_prefix=f"{prefix}-profiled-"))
    profiler.runcall(call_all, app, calls)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats(os.environ.get("PROFILE_SORT", "tottime")).print_stats(top)
    print("```\n" + out.getvalue().split("\n", 5)[-1].rstrip() + "\n```")
    return web_us


def main(argv: list[str] | None = None) -> int:
    """Profile the service's webhook and the minimal vote path."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n")[0])
    parser.add_argument("--votes", type=int, default=5_000)
    parser.add_argument("--top", type=int, default=30, help="functions listed per profile")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        with RedisServer(Path(tmp), appendonly=True, appendfsync="always") as server:
            os.environ.update(
                VIBER_AUTH_TOKEN=BOT_TOKEN,
                VOTER_ID_SECRET=VOTER_ID_SECRET,
                OPERATOR_TOKEN=OPERATOR_TOKEN,
                REDIS_URL=server.url,
                POLL_FILE=DEFAULT_POLL_FILE,
                VIBER_API_URL="http://127.0.0.1:1",
                PROMETHEUS_MULTIPROC_DIR=tempfile.mkdtemp(dir=tmp),
            )
            from webhook import create_app  # after PROMETHEUS_MULTIPROC_DIR, as under gunicorn

            minimal = measure(
                "minimal vote path", create_minimal_app("full"), args.votes, server, args.top, "m"
            )
            service = measure("service", create_app(), args.votes, server, args.top, "s")
    print(f"\nservice ÷ minimal, web CPU per vote: {service / minimal:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
