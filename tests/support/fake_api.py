"""What the messenger API fakes share: recorded requests, scripted faults, latency, waits, the CLI."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable
from types import FrameType
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from tests.support.loop_server import LoopServer

DEFAULT_TIMEOUT_S = 10.0  # how long wait_for_messages() waits unless told
SUMMARY_TEXT_CHARS = 60  # the CLI shortens a message's text to this on its one line
CLI_POLL_S = 0.5  # how often the foreground CLI looks whether a signal asked it to stop


class ScriptedFault(Protocol):
    """What every fake's scripted fault has: a delay before answering, or no answer at all."""

    @property
    def delay_s(self) -> float:
        """Seconds to wait (on top of the fake's latency) before answering."""
        ...

    @property
    def close(self) -> bool:
        """Whether to drop the connection instead of answering."""
        ...


RequestT = TypeVar("RequestT")
FaultT = TypeVar("FaultT", bound=ScriptedFault)


class FakeApi(LoopServer, Generic[RequestT, FaultT]):
    """A LoopServer that records requests and answers with latency and scripted faults, in order."""

    URL_PATH: ClassVar[str] = ""  # where the API's methods start below the root, e.g. /pa

    def __init__(
        self,
        host: str,
        port: int,
        latency_s: float,
        *,
        verbose: bool,
        on_message: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        """Configure the fake; it listens only after start()."""
        super().__init__(host, port, verbose=verbose)
        self.latency_s = latency_s  # awaited (not slept: the loop serves other calls meanwhile)
        self.on_message = on_message  # called on the fake's event loop: keep it quick
        self.requests: list[RequestT] = []
        self._faults: deque[FaultT] = deque()
        self._cond = threading.Condition()  # reentrant: subclasses extend clear() and waits under it

    @property
    def url(self) -> str:
        """The API's base URL, e.g. http://127.0.0.1:PORT/pa."""
        if not self.started:
            raise RuntimeError(f"{type(self).__name__} not started")
        return f"http://{self.host}:{self.port}{self.URL_PATH}"

    def sent_messages(self) -> list[dict[str, Any]]:
        """The messages the fake accepted, in order."""
        raise NotImplementedError

    @property
    def pending_faults(self) -> int:
        """Number of scripted faults not yet consumed."""
        with self._cond:
            return len(self._faults)

    def clear(self) -> None:
        """Forget recorded requests and pending faults (subclasses forget their own records too)."""
        with self._cond:
            self.requests.clear()
            self._faults.clear()

    def _script(self, fault: FaultT, n: int) -> None:
        """Queue n copies of a fault."""
        with self._cond:
            self._faults.extend([fault] * n)

    def _record(self, request: RequestT) -> None:
        """Append a request to the log."""
        with self._cond:
            self.requests.append(request)
            self._cond.notify_all()

    async def _wait_out(self, scripted: bool) -> FaultT | None:
        """Take the next fault if this call consumes one, then await the latency plus its delay."""
        fault = None
        if scripted:
            with self._cond:
                fault = self._faults.popleft() if self._faults else None
        delay_s = self.latency_s + (fault.delay_s if fault else 0.0)
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        return fault

    def _wait_for(self, count: Callable[[], int], n: int, timeout_s: float, what: str) -> None:
        """Wait until count() >= n, else say what arrived (hold self._cond to read the result with it)."""
        with self._cond:
            if not self._cond.wait_for(lambda: count() >= n, timeout=timeout_s):
                raise AssertionError(
                    f"expected at least {n} {what} within {timeout_s}s, got {count()} ({self._progress()})"
                )

    def _progress(self) -> str:
        """What a failed wait reports besides the count it waited for."""
        return f"{len(self.requests)} request(s) in total"


def one_line(text: Any) -> str:
    """A message's text on one line, shortened for the CLI."""
    text = str(text).replace("\n", " ")
    return text[:SUMMARY_TEXT_CHARS] + "…" if len(text) > SUMMARY_TEXT_CHARS else text


def cli_parser(prog: str, description: str | None, latency_help: str) -> argparse.ArgumentParser:
    """The flags every fake's CLI has; the fake adds its own."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help=latency_help)
    parser.add_argument("--verbose", action="store_true", help="log every HTTP request")
    return parser


def serve_in_foreground(
    fake: FakeApi[Any, Any], url_variable: str, summary: Callable[[dict[str, Any]], str]
) -> int:
    """Serve until SIGINT or SIGTERM: print url_variable=URL, then a summary line per message."""
    print_lock = threading.Lock()

    def show(message: dict[str, Any]) -> None:
        """Print a one-line summary of a message."""
        with print_lock:
            print(summary(message), flush=True)

    fake.on_message = show
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        """Ask the main loop to stop."""
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    fake.start()
    try:
        with print_lock:
            print(f"{url_variable}={fake.url}", flush=True)
        while not stopping.wait(CLI_POLL_S):
            pass
    finally:
        fake.stop()
    with print_lock:
        print(f"# stopped after {len(fake.sent_messages())} message(s)", file=sys.stderr)
    return 0
