"""gunicorn settings (read automatically from the working directory)."""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
worker_class = "sync"
keepalive = 5
timeout = 30
graceful_timeout = 10
accesslog = None
control_socket_disable = True
"""Several stacks (tests, benchmarks) run on one machine; a shared control socket would clash."""
