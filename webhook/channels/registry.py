"""Every channel the service knows, by name; a second messenger adds an entry here, not branches."""

from __future__ import annotations

from webhook.channels.base import Channel
from webhook.channels.telegram import TELEGRAM
from webhook.channels.viber import VIBER
from webhook.config import Config

CHANNELS: dict[str, Channel] = {channel.name: channel for channel in (VIBER, TELEGRAM)}


def configured(config: Config) -> list[Channel]:
    """The channels this deployment runs, in a stable order."""
    return [channel for channel in CHANNELS.values() if channel.configured(config)]


def channel(name: str) -> Channel | None:
    """The channel of this name, or None (an entry naming an unknown channel)."""
    return CHANNELS.get(name)
