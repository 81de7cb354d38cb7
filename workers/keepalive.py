"""`python -m workers.keepalive CMD ...`: run a worker command, restarting it when it crashes.

RQ's worker and cron processes exit when Redis is unreachable for a while. A platform's
process manager restarts them in production; honcho (`make run`) does not, so the Procfile
wraps them in this loop. SIGTERM/SIGINT are passed on and end the loop.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0
HEALTHY_RUN_S = 30.0
"""A run this long resets the backoff."""


def main(argv: list[str]) -> int:
    """Run argv until it exits cleanly or this process is told to stop."""
    if not argv:
        print("usage: python -m workers.keepalive COMMAND [ARGS...]", file=sys.stderr)
        return 2
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    backoff = FIRST_BACKOFF_S
    while True:
        started = time.monotonic()
        child = subprocess.Popen(argv)
        code = child.wait()
        if stopping or code == 0:
            return code
        if time.monotonic() - started > HEALTHY_RUN_S:
            backoff = FIRST_BACKOFF_S
        print(f"keepalive: {argv[0]} exited with {code}; restarting in {backoff:.1f} s", file=sys.stderr)
        time.sleep(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF_S)
        if stopping:
            return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
