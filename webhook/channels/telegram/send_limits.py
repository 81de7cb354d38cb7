"""Telegram's send limits (about 30 messages a second in all, about 1 a second to one chat), shared
by every send worker through Redis with the `limits` library's moving windows."""

from __future__ import annotations

import time

from limits import RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis import Redis

from webhook.core.identity import IdentityKind, voter_key
from webhook.store import keys

PER_CHAT = 3
PER_CHAT_WINDOW_S = 3
"""To one chat: about one a second on average; a short burst (confirmation, "already voted") at once."""
ALL_CHATS = "all"


class SendLimiter:
    """Tells the sender when a message may go; a message admitted has its slot taken."""

    def __init__(
        self,
        redis: Redis,
        secret: str,
        *,
        global_per_s: int,
        per_chat: int = PER_CHAT,
        per_chat_window_s: int = PER_CHAT_WINDOW_S,
    ) -> None:
        """Windows in the service's Redis, on its connection pool (URL or Sentinel alike)."""
        storage = RedisStorage(
            "redis://", connection_pool=redis.connection_pool, key_prefix=keys.TELEGRAM_LIMITS
        )
        self._limiter = MovingWindowRateLimiter(storage)
        self._secret = secret
        self._global = RateLimitItemPerSecond(global_per_s)
        self._per_chat = RateLimitItemPerSecond(per_chat, per_chat_window_s)
        self._deferred = 0
        self._window_ends_at = 0.0

    def wait_s(self, chat_id: str) -> float:
        """0.0 when a message to this chat may go now (its slot is taken), else seconds to wait.

        Messages turned away in the same window are spread over the following seconds, so they
        do not all come back at once.
        """
        chat = voter_key(self._secret, IdentityKind.TELEGRAM, chat_id).hex()  # no chat id in Redis
        if not self._limiter.test(self._per_chat, chat):
            return self._defer(self._per_chat, chat)
        if not self._limiter.hit(self._global, ALL_CHATS):
            return self._defer(self._global, ALL_CHATS)
        self._limiter.hit(self._per_chat, chat)
        return 0.0

    def _defer(self, item: RateLimitItemPerSecond, key: str) -> float:
        """Seconds until the window frees a slot, plus a share of the backlog turned away before."""
        now = time.time()
        if now >= self._window_ends_at:
            self._deferred, self._window_ends_at = 0, now + 1.0
        self._deferred += 1
        reset_at = self._limiter.get_window_stats(item, key).reset_time
        return max(0.05, reset_at - now) + self._deferred / self._global.amount
