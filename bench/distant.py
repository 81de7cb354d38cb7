"""`python -m bench.distant` (make bench-distant): the web process when Viber is a round trip away.

gunicorn's sync worker closes the connection after every response and then waits for the
client's FIN before it takes the next request (gunicorn 27, util.close_graceful). On the same
host that costs nothing; with Viber (or a CDN) a round trip away it costs each callback a round
trip of a worker's time. Here every client waits one simulated round trip before its FIN, or
before its next request on a kept-alive connection. The web process runs as the Procfile says
(gthread workers, gunicorn.conf.py) and, as the baseline, with sync workers (GUNICORN_CMD_ARGS).
"""

from __future__ import annotations

import argparse
import re
import shlex
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.loadgen import Plan
from bench.run import (
    BOT_TOKEN,
    REPORT,
    WEBHOOK_PATH,
    Settings,
    code_state,
    deployment_env,
    descendants,
    describe_code,
    machine,
    proc_cpu_s,
    running_stack,
    table,
    write_section,
)
from tests.support.redis_server import RedisServer
from webhook.channels.viber import signature

SYNC_ARGS = "--worker-class sync --threads 1"
"""The baseline: gunicorn's one-connection-at-a-time worker, via GUNICORN_CMD_ARGS (with more than
one thread, gunicorn silently runs gthread instead of sync)."""
TOKEN_BASE = 5_400_000_000_000_000_000
READ_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Case:
    """One measurement: how the web process runs and how far away its clients are."""

    workers: str
    gunicorn_args: str
    rtt_s: float
    keepalive: bool
    baseline: bool = False


@dataclass(frozen=True)
class Result:
    """Callbacks answered 200 per second, and the web process's CPU per callback."""

    case: Case
    rate: float
    cpu_ms: float
    errors: int
    worker_class: str
    """What gunicorn's log says it ran, so a setting it overrode does not go unnoticed."""


def request_bytes(body: bytes, keepalive: bool) -> bytes:
    """A signed webhook request, as raw HTTP/1.1."""
    head = (
        f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"{signature.HEADER}: {signature.sign(BOT_TOKEN, body)}\r\nContent-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keepalive else 'close'}\r\n\r\n"
    )
    return head.encode() + body


def read_response(sock: socket.socket) -> tuple[int, bool]:
    """The status of one response, and whether the server closes the connection after it."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response")
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {
        k.strip().lower(): v.strip().lower() for k, _, v in (line.partition(b":") for line in lines[1:])
    }
    length = int(headers.get(b"content-length", b"0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(lines[0].split()[1]), headers.get(b"connection") == b"close"


def client(index: int, clients: int, port: int, case: Case, stop: threading.Event, done: list[int]) -> None:
    """Send callbacks from distinct voters until stopped, waiting a round trip where a far client would."""
    plan, voter, sock, now_ms = Plan(voters=10**8), index, None, int(time.time() * 1000)
    while not stop.is_set():
        try:
            if sock is None:
                sock = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT_S)
            sock.sendall(
                request_bytes(plan.body(voter, voter % 2, TOKEN_BASE + voter, now_ms), case.keepalive)
            )
            status, closing = read_response(sock)
        except OSError:
            done[index * 2 + 1] += 1
            if sock is not None:
                sock.close()
            sock = None
            time.sleep(case.rtt_s or 0.01)
            continue
        done[index * 2] += status == 200
        voter += clients
        time.sleep(case.rtt_s)  # our FIN, or the next callback on this connection, arrives a round trip later
        if closing:
            sock.close()
            sock = None
    if sock is not None:
        sock.close()


def measure(case: Case, *, clients: int, seconds: float, workdir: Path) -> Result:
    """Run the web process alone (AOF always) under `clients` distant clients for `seconds`."""
    with (
        tempfile.TemporaryDirectory(dir=workdir) as scratch,
        RedisServer(Path(scratch) / "redis", appendonly=True, appendfsync="always") as redis_server,
    ):
        env = deployment_env(Settings(workdir=workdir), redis_server.url, "http://127.0.0.1:9")
        env["GUNICORN_CMD_ARGS"] = case.gunicorn_args
        with running_stack(env, Path(scratch) / "logs", {"web": "gunicorn wsgi:app"}) as stack:
            pids = descendants([p.pid for p in stack.processes["web"]])
            cpu_before = sum(proc_cpu_s(pid) for pid in pids)
            stop, done = threading.Event(), [0] * (2 * clients)
            threads = [
                threading.Thread(target=client, args=(i, clients, stack.port, case, stop, done), daemon=True)
                for i in range(clients)
            ]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            time.sleep(seconds)
            stop.set()
            for thread in threads:
                thread.join(READ_TIMEOUT_S)
            wall = time.monotonic() - started
            cpu = sum(proc_cpu_s(pid) for pid in pids) - cpu_before
            used = re.search(r"Using worker: (\S+)", stack.log_tail("web", lines=500))
    answered = sum(done[0::2])
    worker_class = used.group(1) if used else "unknown"
    return Result(case, answered / wall, 1000 * cpu / max(1, answered), sum(done[1::2]), worker_class)


def cases(rtts_ms: list[float]) -> list[Case]:
    """Sync (baseline) and the Procfile's gthread at each round trip; clients keep alive or close."""
    found = []
    for rtt_ms in rtts_ms:
        rtt = rtt_ms / 1000
        found.append(Case("sync workers", SYNC_ARGS, rtt, keepalive=True, baseline=True))
        found.append(Case("gthread (Procfile), clients keep alive", "", rtt, keepalive=True))
        found.append(Case("gthread (Procfile), clients close", "", rtt, keepalive=False))
    return found


def rows(results: list[Result]) -> list[list[str]]:
    """One table row per result, with its ratio to the sync baseline at the same round trip."""
    baseline = {r.case.rtt_s: r.rate for r in results if r.case.baseline}
    out = []
    for r in results:
        reference = baseline.get(r.case.rtt_s)
        ratio = f"{r.rate / reference:.2f}" if reference else ""
        out.append(
            [
                f"{r.case.rtt_s * 1000:.0f} ms",
                r.case.workers,
                r.worker_class,
                f"{r.rate:,.0f} /s",
                f"{r.cpu_ms:.2f} ms",
                ratio,
                str(r.errors),
            ]
        )
    return out


HEADER = [
    "round trip",
    "web process",
    "gunicorn ran",
    "callbacks/s",
    "web CPU per callback",
    "vs sync",
    "errors",
]


def main(argv: list[str] | None = None) -> int:
    """Measure every case, print the table, write it to BENCHMARKS.md."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.distant", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--rtt-ms", type=float, action="append", help="round trips to test (default 0, 50, 150)"
    )
    parser.add_argument("--clients", type=int, default=64, help="concurrent connections, as Viber might open")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each case")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--output", type=Path, default=REPORT, help="report file ('-' for none)")
    args = parser.parse_args(argv)
    code_before = code_state()
    results = []
    for case in cases(args.rtt_ms or [0.0, 50.0, 150.0]):
        result = measure(case, clients=args.clients, seconds=args.seconds, workdir=args.workdir)
        print(f"{case.rtt_s * 1000:.0f} ms, {case.workers}: {result.rate:,.0f} callbacks/s", flush=True)
        results.append(result)
    text = table(rows(results), HEADER)
    print("\n" + text)
    if str(args.output) != "-":
        lines = [
            f"Command: `{shlex.join(['python', '-m', 'bench.distant', *argv])}`",
            f"Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
            f"Code: {describe_code(code_before, code_state())}",
            "Machine: " + ", ".join(f"{k} {v}" for k, v in machine().items()),
            f"Setup: the web process alone (WEB_CONCURRENCY 4, Redis appendonly yes, appendfsync always), "
            f"{args.clients} client threads in this process, each waiting one round trip before its FIN "
            f'or its next request; sync is `GUNICORN_CMD_ARGS="{SYNC_ARGS}"`, gthread is gunicorn.conf.py '
            f"(16 threads a worker); {args.seconds:.0f} s a case.",
            "",
            text,
        ]
        write_section(args.output, "Distant clients", "\n".join(lines))
        print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
