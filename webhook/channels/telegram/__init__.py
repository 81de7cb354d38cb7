"""The Telegram channel: webhook, update parsing (aiogram's types), client, send limits, rendering."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from webhook.channels.base import EntryLink

if TYPE_CHECKING:
    from flask import Flask

    from webhook.channels.telegram.client import TelegramSender
    from webhook.config import Config

NAME = "telegram"
PLACEHOLDER_USERNAME = "viber_vote_bot"


class TelegramChannel:
    """Telegram as a channel of the service."""

    name = NAME

    def configured(self, config: Config) -> bool:
        """Telegram runs when its bot token (and so its webhook secret) is set."""
        return config.telegram is not None

    def init_app(self, app: Flask) -> None:
        """The /telegram/webhook blueprint and the set-telegram-webhook command."""
        from webhook.channels.telegram import commands, webhook

        app.register_blueprint(webhook.bp)
        app.cli.add_command(commands.set_telegram_webhook_command)

    def warm(self) -> None:
        """Import aiogram's types, which the webhook parses updates with (seconds of CPU: pydantic
        builds ~400 models). The served app does it once before forking (wsgi.py, gunicorn's
        preload_app); an operator command, which never parses an update, does not."""
        from webhook.channels.telegram import render, updates  # noqa: F401

    def sender(self, config: Config, *, concurrency: int) -> TelegramSender:
        """A sender within Telegram's limits, shared by every send worker through Redis."""
        from webhook.channels.telegram.client import TelegramSender
        from webhook.channels.telegram.send_limits import SendLimiter
        from webhook.store.connection import connect

        assert config.telegram is not None
        settings = config.telegram
        limiter = SendLimiter(
            connect(config.redis), config.voter_id_secret, global_per_s=settings.messages_per_s
        )
        return TelegramSender(settings, limiter, concurrency=concurrency)

    def entry_link(self, config: Config, campaign: str | None) -> EntryLink:
        """https://t.me/<bot>?start=<campaign>: opens the bot, the campaign as /start's payload."""
        username = config.telegram.bot_username if config.telegram else None
        link = f"https://t.me/{quote(username or PLACEHOLDER_USERNAME, safe='')}"
        if campaign:
            link += f"?start={quote(campaign, safe='')}"
        return EntryLink(NAME, "Telegram", link, configured=username is not None)


TELEGRAM = TelegramChannel()
