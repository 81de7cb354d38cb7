"""gunicorn settings (read automatically from the working directory)."""

import os
import shutil
import tempfile

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "16"))
"""Threads per worker. A kept-alive connection waits in the worker's poller, not in a thread, and a
client closing slowly holds one thread, not the whole worker: with Viber a round trip away, sync
workers answer only WEB_CONCURRENCY / round trip callbacks per second (`make bench-distant`)."""
preload_app = True
"""The app (and aiogram's ~1 s of type building) is imported once in the master; workers fork from it.
PROMETHEUS_MULTIPROC_DIR is therefore set here, before the app is imported (prometheus_client picks
its multiprocess mode at import)."""
keepalive = 5
timeout = 30
graceful_timeout = 10
accesslog = None
control_socket_disable = True
"""Several stacks (tests, benchmarks) run on one machine; a shared control socket would clash."""


os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="viber-vote-metrics-")
"""The workers' one directory for their summed Prometheus metrics."""


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    """Forget a dead worker's live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):  # type: ignore[no-untyped-def]
    """Remove the metrics directory."""
    shutil.rmtree(os.environ.get("PROMETHEUS_MULTIPROC_DIR", ""), ignore_errors=True)
