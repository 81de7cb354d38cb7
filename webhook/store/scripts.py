"""The Lua scripts that make each Redis step atomic, loaded from webhook/lua/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from redis import Redis
from redis.commands.core import Script

LUA_DIR = Path(__file__).parent / "lua"


@dataclass(frozen=True)
class Scripts:
    """Registered scripts bound to one Redis connection (EVALSHA, reloaded if flushed)."""

    cast: Script
    reply: Script
    tally: Script
    retry_due: Script
    replay_dead: Script
    bind_phone: Script
    prune_consumers: Script

    @classmethod
    def register(cls, redis: Redis) -> Scripts:
        """Register every script with this connection."""
        names = ("cast", "reply", "tally", "retry_due", "replay_dead", "bind_phone", "prune_consumers")
        loaded = {n: redis.register_script((LUA_DIR / f"{n}.lua").read_text()) for n in names}
        return cls(**loaded)
