"""What a channel is to the rest of the service: a thin adapter around the channel-free core.

Payload in -> core Message; core ReplyContent -> the channel's message. The app registers each
configured channel's webhook and commands, the send worker hands each outbox entry to its
channel's sender, and the public page shows each channel's way in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from webhook.core.outbox import SendResult
from webhook.core.texts import ReplyContent

if TYPE_CHECKING:
    from flask import Flask

    from webhook.config import Config


@dataclass(frozen=True)
class EntryLink:
    """How a visitor of the public page opens the bot in one messenger."""

    channel: str
    label: str
    """The messenger's name, as the button says it ("Viber", "Telegram")."""
    url: str
    configured: bool = True
    """False when the link is a placeholder (the bot's address is not configured)."""


class ChannelSender(Protocol):
    """Delivers rendered replies from the send worker's event loop."""

    def admit(self, receiver: str) -> float:
        """Before a send (worker thread): 0.0 to send now, else seconds the channel's limits ask to wait."""
        ...

    async def send(self, content: ReplyContent, receiver: str) -> SendResult:
        """Deliver one reply to a voter and classify the outcome."""
        ...

    def close(self) -> None:
        """Close connections (from a thread other than the event loop's)."""
        ...


class Channel(Protocol):
    """One messenger the service talks to voters through."""

    name: str

    def configured(self, config: Config) -> bool:
        """Whether this deployment runs this channel (its settings are given)."""
        ...

    def init_app(self, app: Flask) -> None:
        """Register the channel's webhook and operator commands."""
        ...

    def warm(self) -> None:
        """Import ahead what the webhook would otherwise import on its first update (wsgi.py)."""
        ...

    def sender(self, config: Config, *, concurrency: int) -> ChannelSender:
        """A sender for the send worker's event loop."""
        ...

    def entry_link(self, config: Config, campaign: str | None) -> EntryLink:
        """The deep link that opens the bot, carrying a campaign tag."""
        ...
