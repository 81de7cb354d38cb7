"""What the public page shows of a poll, read from Redis at most once per interval per process."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from redis.exceptions import RedisError

from webhook.core.polls import Poll, PollStatus
from webhook.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """What the page shows of a poll, as read from Redis at one moment."""

    poll: Poll
    status: PollStatus
    counts: dict[str, int]

    @property
    def total(self) -> int:
        """Votes counted so far."""
        return sum(self.counts.values())

    @property
    def results_visible(self) -> bool:
        """Whether the poll's results policy lets the public see per-option results now."""
        return self.poll.results_visible(self.status)


class SnapshotCache:
    """Per-process cache of poll snapshots; one reader refills an expired entry at a time.

    If Redis cannot be read, the last snapshot is served again (and retried an interval later).
    """

    def __init__(self) -> None:
        """An empty cache."""
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Snapshot]] = {}

    def get(self, rt: Runtime, poll: Poll, ttl_s: float) -> Snapshot:
        """The poll's snapshot, read from Redis only when the cached one is older than ttl_s."""
        with self._lock:
            cached = self._entries.get(poll.id)
            now = time.monotonic()
            if cached is not None and cached[0] > now:
                return cached[1]
            try:
                snapshot = Snapshot(poll, rt.ballot_box.status(poll), rt.ballot_box.counts(poll))
            except RedisError:
                if cached is None:
                    raise
                log.warning("redis unavailable: the public page shows its last numbers")
                snapshot = cached[1]
            self._entries[poll.id] = (now + ttl_s, snapshot)
            return snapshot
