"""An aiohttp low-level server on its own event loop in a daemon thread (the base of the API fakes)."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import socket
import sys
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.log import access_logger, server_logger

LISTEN_BACKLOG = 1024  # hundreds of clients may connect at once (a benchmark's senders)
STOP_GRACE_S = 0.1  # stop() lets requests in flight (already cut off) run this long, then cancels them
LOOP_CALL_TIMEOUT_S = 10.0  # start(), stop() and close_all_connections() give up on the loop after this
THREAD_JOIN_TIMEOUT_S = 5.0
# aiohttp's errors (malformed requests, handler crashes) are logged only when the server is verbose.
_QUIET_LOG = logging.getLogger("tests.support.loop_server.quiet")
_QUIET_LOG.setLevel(logging.CRITICAL + 1)


class _StderrAccessLog(AbstractAccessLogger):
    """Access log lines on stderr, like http.server's, for a verbose server."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, elapsed: float) -> None:
        """Write one line per answered request."""
        when = datetime.datetime.now().strftime("%d/%b/%Y %H:%M:%S")
        line = f"{request.method} {request.raw_path} HTTP/{request.version.major}.{request.version.minor}"
        sys.stderr.write(f'{request.remote} - - [{when}] "{line}" {response.status} -\n')


def json_response(code: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    """JSON answer with a Content-Length, so the connection can be kept alive."""
    body = json.dumps(payload).encode()
    return web.Response(status=code, body=body, content_type="application/json", headers=headers)


def drop_connection(request: web.BaseRequest) -> web.Response:
    """Close the connection without answering (a scripted network fault)."""
    request.protocol.force_close()
    return web.Response()


class LoopServer:
    """Serves handle() with aiohttp on a private event loop; subclasses implement handle()."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False) -> None:
        """Configure the server; it listens only after start()."""
        self.host = host
        self.port = port
        self.verbose = verbose
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.ServerRunner | None = None
        self._thread: threading.Thread | None = None

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Answer one request (runs on the server's loop)."""
        raise NotImplementedError

    # Lifecycle

    def start(self) -> None:
        """Bind the port and serve from an event loop in a daemon thread."""
        if self._loop is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        sock = socket.create_server((self.host, self.port), backlog=LISTEN_BACKLOG)
        self.port = int(sock.getsockname()[1])
        loop = asyncio.new_event_loop()
        name = f"{type(self).__name__}-{self.port}"
        thread = threading.Thread(target=self._run_loop, args=(loop,), name=name, daemon=True)
        thread.start()
        try:
            future = asyncio.run_coroutine_threadsafe(self._serve(sock), loop)
            self._runner = future.result(timeout=LOOP_CALL_TIMEOUT_S)
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=THREAD_JOIN_TIMEOUT_S)
            sock.close()
            raise
        self._loop, self._thread = loop, thread

    def stop(self) -> None:
        """Stop serving, cut open keep-alive connections and close the socket."""
        loop, runner, thread = self._loop, self._runner, self._thread
        if loop is None:
            return
        try:
            if runner is not None:
                self._on_loop(self._shutdown(runner))
        finally:
            loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(timeout=THREAD_JOIN_TIMEOUT_S)
            self._loop = self._runner = self._thread = None

    def __enter__(self) -> Self:
        """Start and return the server."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    @property
    def started(self) -> bool:
        """Whether the server is listening."""
        return self._loop is not None

    def close_all_connections(self) -> None:
        """Cut every open (keep-alive) connection, even mid-request; keep listening."""
        if self._runner is not None:
            self._on_loop(self._cut_connections(self._runner))

    # The event loop's thread

    def _on_loop(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a coroutine on the server's loop and wait for it (from any other thread)."""
        loop = self._loop
        if loop is None or threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError(f"{type(self).__name__} not started, or called from its own loop")
        asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=LOOP_CALL_TIMEOUT_S)

    def _run_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run the loop until stop(), then close it."""
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            # Requests still in flight past the stop grace (a long scripted delay) are cancelled.
            leftovers = asyncio.all_tasks(loop)
            for task in leftovers:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self, sock: socket.socket) -> web.ServerRunner:
        """Serve the bound socket with aiohttp's low-level server."""
        server = web.Server(
            self.handle,
            handler_cancellation=False,  # a client that gives up does not cancel the call
            logger=server_logger if self.verbose else _QUIET_LOG,
            access_log=access_logger if self.verbose else None,
            access_log_class=_StderrAccessLog,
        )
        runner = web.ServerRunner(server, shutdown_timeout=STOP_GRACE_S)
        await runner.setup()
        await web.SockSite(runner, sock, backlog=LISTEN_BACKLOG).start()
        return runner

    async def _shutdown(self, runner: web.ServerRunner) -> None:
        """Close the listening socket and every connection."""
        await self._cut_connections(runner)
        await runner.cleanup()

    async def _cut_connections(self, runner: web.ServerRunner) -> None:
        """Close every connection's transport; handlers still running finish unanswered."""
        if runner.server is not None:
            for connection in runner.server.connections:
                connection.force_close()
