"""The Viber channel: webhook, callback parsing, signature, API client, and rendering of replies."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from webhook.channels.base import EntryLink
from webhook.channels.viber import render
from webhook.core.outbox import SendResult
from webhook.core.texts import ReplyContent

if TYPE_CHECKING:
    from flask import Flask

    from webhook.channels.viber.client import AsyncViberClient
    from webhook.config import Config

NAME = "viber"
PLACEHOLDER_CHAT_URI = "viber-vote"
"""Shown (and said to be a placeholder) until VIBER_CHAT_URI names the bot's public account."""


class ViberSender:
    """Renders replies as Viber messages and sends them with the async client."""

    def __init__(self, client: AsyncViberClient, bot_name: str) -> None:
        """Send through this client, under this sender name."""
        self.client, self.bot_name = client, bot_name

    def admit(self, receiver: str) -> float:
        """Viber's limits are per user per hour (status 12 answers them): send now."""
        return 0.0

    async def send(self, content: ReplyContent, receiver: str) -> SendResult:
        """Send one reply to a Viber user."""
        return await self.client.send_message(
            {"receiver": receiver, **render.message(content, self.bot_name)}
        )

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()


class ViberChannel:
    """Viber as a channel of the service."""

    name = NAME

    def configured(self, config: Config) -> bool:
        """Viber runs when its bot token is set."""
        return bool(config.viber_auth_token)

    def init_app(self, app: Flask) -> None:
        """The /viber/webhook blueprint and the set-webhook command."""
        from webhook.channels.viber import commands, webhook

        app.register_blueprint(webhook.bp)
        app.cli.add_command(commands.set_webhook_command)

    def warm(self) -> None:
        """Nothing to import ahead: the Viber webhook parses callbacks with the standard library."""

    def sender(self, config: Config, *, concurrency: int) -> ViberSender:
        """A sender with a keep-alive pool of `concurrency` connections to Viber's API."""
        from webhook.channels.viber.client import AsyncViberClient

        client = AsyncViberClient(config.viber_api_url, config.viber_auth_token or "", pool_size=concurrency)
        return ViberSender(client, config.bot_name)

    def entry_link(self, config: Config, campaign: str | None) -> EntryLink:
        """viber://pa?chatURI=...: opens the bot in Viber, with the campaign as its context."""
        link = f"viber://pa?chatURI={quote(config.viber_chat_uri or PLACEHOLDER_CHAT_URI, safe='')}"
        if campaign:
            link += f"&context={quote(campaign, safe='')}"
        return EntryLink(NAME, "Viber", link, configured=config.viber_chat_uri is not None)


VIBER = ViberChannel()
