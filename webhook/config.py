"""One typed reader for the service's configuration, loud on a missing value."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from webhook.core.errors import ConfigError
from webhook.core.secret_strength import weakness
from webhook.store.connection import RedisSettings

DEFAULT_VIBER_API_URL = "https://chatapi.viber.com/pa"
DEFAULT_POLL_FILE = str(Path(__file__).parent / "polls" / "default.toml")
DEFAULT_MAX_BODY_BYTES = 64 * 1024
"""Largest webhook body accepted, in bytes; Viber's own API limit is 30 KB."""
DEFAULT_MAX_CALLBACK_AGE_S = 2 * 3600
"""Callbacks older than this (seconds) are ignored; Viber retries for about an hour."""
DEFAULT_REPLY_RATE_LIMIT = 20
"""Replies one voter can trigger per rate window (a flood of texts gets no more)."""
DEFAULT_REPLY_RATE_WINDOW_S = 60


@dataclass(frozen=True)
class Config:
    """The service's settings, each with its type."""

    viber_auth_token: str
    redis_url: str
    voter_id_secret: str
    operator_token: str
    poll_file: str = DEFAULT_POLL_FILE
    viber_api_url: str = DEFAULT_VIBER_API_URL
    bot_name: str = "Vote"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_callback_age_s: int = DEFAULT_MAX_CALLBACK_AGE_S
    reply_rate_limit: int = DEFAULT_REPLY_RATE_LIMIT
    reply_rate_window_s: int = DEFAULT_REPLY_RATE_WINDOW_S
    viber_chat_uri: str = "viber-vote"
    """The bot's public account URI, for viber://pa?chatURI=... links (env VIBER_CHAT_URI)."""
    audit_secret: str | None = None
    """Key that signs audit summaries; unset, one is derived from voter_id_secret."""
    trust_proxy: bool = False
    """TRUST_PROXY=1: the client address and scheme come from one proxy's X-Forwarded-For/-Proto."""

    @property
    def redis(self) -> RedisSettings:
        """Where Redis is, for webhook/store/connection.py."""
        return RedisSettings(self.redis_url)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Read the configuration from a mapping (the process environment by default)."""
        env = os.environ if environ is None else environ
        return cls(
            viber_auth_token=_required(env, "VIBER_AUTH_TOKEN"),
            redis_url=_required(env, "REDIS_URL"),
            voter_id_secret=_secret(env, "VOTER_ID_SECRET"),
            operator_token=_secret(env, "OPERATOR_TOKEN"),
            poll_file=env.get("POLL_FILE") or DEFAULT_POLL_FILE,
            viber_api_url=(env.get("VIBER_API_URL") or DEFAULT_VIBER_API_URL).rstrip("/"),
            bot_name=(env.get("BOT_NAME") or "Vote")[:28],
            max_body_bytes=_int(env, "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            max_callback_age_s=_int(env, "MAX_CALLBACK_AGE_S", DEFAULT_MAX_CALLBACK_AGE_S),
            reply_rate_limit=_int(env, "REPLY_RATE_LIMIT", DEFAULT_REPLY_RATE_LIMIT),
            reply_rate_window_s=_int(env, "REPLY_RATE_WINDOW_S", DEFAULT_REPLY_RATE_WINDOW_S),
            viber_chat_uri=env.get("VIBER_CHAT_URI", "").strip() or "viber-vote",
            audit_secret=_secret(env, "AUDIT_SECRET") if env.get("AUDIT_SECRET", "").strip() else None,
            trust_proxy=env.get("TRUST_PROXY", "").strip() == "1",
        )


def _required(env: Mapping[str, str], key: str) -> str:
    """Return a required value or fail naming it."""
    value = env.get(key, "").strip()
    if not value:
        raise ConfigError(f"Config '{key}' is missing, and has no default.")
    return value


def _secret(env: Mapping[str, str], key: str) -> str:
    """Return a required secret that is not weak on its face (webhook/core/secret_strength.py)."""
    value = _required(env, key)
    reason = weakness(value)
    if reason is not None:
        raise ConfigError(f"Config '{key}' {reason}.")
    return value


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    """Return an optional positive integer setting."""
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"Config '{key}' must be an integer, not {raw!r}.") from None
    if value <= 0:
        raise ConfigError(f"Config '{key}' must be positive, not {value}.")
    return value
