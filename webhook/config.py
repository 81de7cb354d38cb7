"""One typed reader for the service's configuration, loud on a missing value."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from webhook.core.errors import ConfigError
from webhook.core.secret_strength import weakness
from webhook.store.connection import DEFAULT_WAIT_TIMEOUT_MS, SOCKET_TIMEOUT_S, RedisSettings, ReplicaWait

DEFAULT_VIBER_API_URL = "https://chatapi.viber.com/pa"
DEFAULT_POLL_FILE = str(Path(__file__).parent / "polls" / "default.toml")
DEFAULT_TELEGRAM_API_URL = "https://api.telegram.org"
DEFAULT_TELEGRAM_MESSAGES_PER_S = 25
"""Under Telegram's ~30 messages a second, leaving room for the webhook's own answers."""
TELEGRAM_TOKEN = re.compile(r"^[0-9]{1,20}:[A-Za-z0-9_-]{20,}$")
TELEGRAM_SECRET = re.compile(r"^[A-Za-z0-9_-]{16,256}$")
"""The Bot API allows 1-256 characters of these; the secret-strength check asks 24 at least."""
TELEGRAM_USERNAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{3,31}$")
DEFAULT_MAX_BODY_BYTES = 64 * 1024
"""Largest webhook body accepted, in bytes; Viber's own API limit is 30 KB."""
DEFAULT_MAX_CALLBACK_AGE_S = 2 * 3600
"""Callbacks older than this (seconds) are ignored; Viber retries for about an hour."""
DEFAULT_REPLY_RATE_LIMIT = 20
"""Replies one voter can trigger per rate window (a flood of texts gets no more)."""
DEFAULT_REPLY_RATE_WINDOW_S = 60
DEFAULT_SEND_NICE = 10


@dataclass(frozen=True)
class Config:
    """The service's settings, each with its type."""

    redis: RedisSettings
    """Where Redis is (REDIS_URL, or REDIS_SENTINELS and the rest), for webhook/store/connection.py."""
    voter_id_secret: str
    operator_token: str
    viber_auth_token: str | None = None
    """The Viber bot's token; unset, the service runs no Viber bot (Telegram's settings are then needed)."""
    poll_file: str = DEFAULT_POLL_FILE
    viber_api_url: str = DEFAULT_VIBER_API_URL
    bot_name: str = "Vote"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_callback_age_s: int = DEFAULT_MAX_CALLBACK_AGE_S
    reply_rate_limit: int = DEFAULT_REPLY_RATE_LIMIT
    reply_rate_window_s: int = DEFAULT_REPLY_RATE_WINDOW_S
    viber_chat_uri: str | None = None
    """The bot's public account URI, for viber://pa?chatURI=... links (env VIBER_CHAT_URI)."""
    audit_secret: str | None = None
    """Key that signs audit summaries; unset, one is derived from voter_id_secret."""
    telegram: TelegramSettings | None = None
    """The Telegram bot; unset, the service runs no Telegram bot."""
    trust_proxy: bool = False
    """TRUST_PROXY=1: the client address and scheme come from one proxy's X-Forwarded-For/-Proto."""
    send_nice: int = DEFAULT_SEND_NICE
    """SEND_NICE: how much the send worker lowers its own CPU priority (0 to 19). On a host it shares
    with the web processes, confirmations then yield the CPU to intake during a burst and catch up
    after it (`make bench`); 0 where the send worker has a host of its own."""

    @property
    def store(self) -> StoreSettings:
        """Where the votes are and what the polls are: the part a Redis-only command reads alone."""
        return StoreSettings(self.redis, self.poll_file)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Read the configuration from a mapping (the process environment by default)."""
        env = os.environ if environ is None else environ
        telegram = _telegram(env)
        viber_token = env.get("VIBER_AUTH_TOKEN", "").strip() or None
        if viber_token is None and telegram is None:
            raise ConfigError(
                "Config 'VIBER_AUTH_TOKEN' is missing, and has no default "
                "(or give TELEGRAM_BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET to run a Telegram bot instead)."
            )
        store = StoreSettings.from_environ(env)
        return cls(
            viber_auth_token=viber_token,
            telegram=telegram,
            redis=store.redis,
            voter_id_secret=_secret(env, "VOTER_ID_SECRET"),
            operator_token=_secret(env, "OPERATOR_TOKEN"),
            poll_file=store.poll_file,
            viber_api_url=(env.get("VIBER_API_URL") or DEFAULT_VIBER_API_URL).rstrip("/"),
            bot_name=(env.get("BOT_NAME") or "Vote")[:28],
            max_body_bytes=_int(env, "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            max_callback_age_s=_int(env, "MAX_CALLBACK_AGE_S", DEFAULT_MAX_CALLBACK_AGE_S),
            reply_rate_limit=_int(env, "REPLY_RATE_LIMIT", DEFAULT_REPLY_RATE_LIMIT),
            reply_rate_window_s=_int(env, "REPLY_RATE_WINDOW_S", DEFAULT_REPLY_RATE_WINDOW_S),
            viber_chat_uri=env.get("VIBER_CHAT_URI", "").strip() or None,
            audit_secret=_secret(env, "AUDIT_SECRET") if env.get("AUDIT_SECRET", "").strip() else None,
            trust_proxy=env.get("TRUST_PROXY", "").strip() == "1",
            send_nice=_int(env, "SEND_NICE", DEFAULT_SEND_NICE, minimum=0, maximum=19),
        )


@dataclass(frozen=True)
class StoreSettings:
    """Where the votes are (REDIS_URL or Sentinel) and what the polls are (POLL_FILE).

    All that the operator commands which only read or write Redis need (results, recount,
    export, open/close-poll, replay-dead): they run with these two settings and nothing else,
    while the service's processes read the whole Config and refuse to start without it.
    """

    redis: RedisSettings
    poll_file: str = DEFAULT_POLL_FILE

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> StoreSettings:
        """Read Redis's settings (REDIS_URL or Sentinel) and POLL_FILE (from the environment by default)."""
        env = os.environ if environ is None else environ
        return cls(_redis(env), env.get("POLL_FILE") or DEFAULT_POLL_FILE)


@dataclass(frozen=True)
class TelegramSettings:
    """The Telegram bot's settings (env TELEGRAM_*)."""

    bot_token: str
    webhook_secret: str
    """Telegram sends it in X-Telegram-Bot-Api-Secret-Token with every update."""
    api_url: str = DEFAULT_TELEGRAM_API_URL
    """A method is called at {api_url}/bot{bot_token}/{method}, as the Bot API defines."""
    bot_username: str | None = None
    """The bot's @username, for https://t.me/<username> links on the public page."""
    messages_per_s: int = DEFAULT_TELEGRAM_MESSAGES_PER_S
    """Messages a second to all chats, shared by every send worker (Telegram allows about 30;
    paid broadcasts, up to 1,000)."""


def _telegram(env: Mapping[str, str]) -> TelegramSettings | None:
    """Telegram's settings when its bot token is given (its secret is then required)."""
    token = env.get("TELEGRAM_BOT_TOKEN", "").strip()
    if not token:
        return None
    if not TELEGRAM_TOKEN.match(token):
        raise ConfigError(
            "Config 'TELEGRAM_BOT_TOKEN' is not a bot token (digits, a colon, then the secret)."
        )
    secret = _secret(env, "TELEGRAM_WEBHOOK_SECRET")  # who knows it can forge updates
    if not TELEGRAM_SECRET.match(secret):
        raise ConfigError(
            "Config 'TELEGRAM_WEBHOOK_SECRET' must be 24 to 256 characters of A-Z, a-z, 0-9, _ and -."
        )
    username = env.get("TELEGRAM_BOT_USERNAME", "").strip().lstrip("@") or None
    if username is not None and not TELEGRAM_USERNAME.match(username):
        raise ConfigError("Config 'TELEGRAM_BOT_USERNAME' is not a Telegram bot username.")
    api_url = (env.get("TELEGRAM_API_URL") or DEFAULT_TELEGRAM_API_URL).rstrip("/")
    rate = _int(env, "TELEGRAM_MESSAGES_PER_S", DEFAULT_TELEGRAM_MESSAGES_PER_S)
    return TelegramSettings(token, secret, api_url, username, rate)


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


def _int(
    env: Mapping[str, str], key: str, default: int, *, minimum: int = 1, maximum: int | None = None
) -> int:
    """Return an optional integer setting of at least minimum (positive by default), at most maximum."""
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"Config '{key}' must be an integer, not {raw!r}.") from None
    if value < minimum:
        least = "positive" if minimum == 1 else f"at least {minimum}"
        raise ConfigError(f"Config '{key}' must be {least}, not {value}.")
    if maximum is not None and value > maximum:
        raise ConfigError(f"Config '{key}' must be at most {maximum}, not {value}.")
    return value


def _redis(env: Mapping[str, str]) -> RedisSettings:
    """Sentinels and the primary's name when REDIS_SENTINELS is set (it wins over REDIS_URL), else REDIS_URL.

    Under Sentinel a vote is acknowledged once 1 replica has it (REDIS_WAIT_REPLICAS), with a
    plain URL once the server has it (0), unless told otherwise.
    """
    raw_sentinels = env.get("REDIS_SENTINELS", "").strip()
    if raw_sentinels:
        sentinels = tuple(_address(item.strip()) for item in raw_sentinels.split(",") if item.strip())
        if not sentinels:
            raise ConfigError(f"Config 'REDIS_SENTINELS' must list host:port pairs, not {raw_sentinels!r}.")
        settings = RedisSettings(
            sentinels=sentinels,
            master=_required(env, "REDIS_SENTINEL_MASTER"),
            sentinel_password=env.get("REDIS_SENTINEL_PASSWORD") or None,
        )
    else:
        settings = RedisSettings(url=_required(env, "REDIS_URL"))
    wait = ReplicaWait(
        replicas=_int(env, "REDIS_WAIT_REPLICAS", 1 if raw_sentinels else 0, minimum=0),
        timeout_ms=_int(env, "REDIS_WAIT_TIMEOUT_MS", DEFAULT_WAIT_TIMEOUT_MS),
    )
    if wait.timeout_ms >= SOCKET_TIMEOUT_S * 1000:
        # The client would give up on the socket before WAIT answers, and report Redis down.
        limit_ms = int(SOCKET_TIMEOUT_S * 1000)
        raise ConfigError(f"Config 'REDIS_WAIT_TIMEOUT_MS' must be below {limit_ms}, not {wait.timeout_ms}.")
    return replace(settings, password=env.get("REDIS_PASSWORD") or None, wait=wait)


def _address(item: str) -> tuple[str, int]:
    """Parse one REDIS_SENTINELS entry, host:port (an IPv6 host in brackets: [::1]:26379)."""
    host, sep, port = item.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"Config 'REDIS_SENTINELS' must list host:port pairs, not {item!r}.")
    return host, int(port)
