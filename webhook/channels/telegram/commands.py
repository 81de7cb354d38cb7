"""Telegram's operator command: `flask --app wsgi set-telegram-webhook URL`."""

from __future__ import annotations

import asyncio

import click

from webhook.config import TelegramSettings
from webhook.runtime import runtime

ALLOWED_UPDATES = ["message", "callback_query"]
"""Only what the conversation uses: other updates never reach the webhook."""
MAX_CONNECTIONS = 100
"""Telegram's most parallel webhook connections (default 40): bursts are answered faster."""


async def _set_webhook(settings: TelegramSettings, url: str) -> None:
    """Call setWebhook with the secret token, then close the session."""
    from aiogram import Bot  # the CLI's other commands do not pay for aiogram's import
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer

    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.api_url))
    async with Bot(settings.bot_token, session=session) as bot:
        await bot.set_webhook(
            url,
            secret_token=settings.webhook_secret,
            allowed_updates=ALLOWED_UPDATES,
            max_connections=MAX_CONNECTIONS,
        )


@click.command("set-telegram-webhook")
@click.argument("url")
def set_telegram_webhook_command(url: str) -> None:
    """Register this service's webhook URL (https://.../telegram/webhook) with Telegram, with the secret."""
    settings = runtime().config.telegram
    if settings is None:
        raise click.ClickException("TELEGRAM_BOT_TOKEN is not set: this deployment runs no Telegram bot")
    from aiogram.exceptions import TelegramAPIError

    try:
        asyncio.run(_set_webhook(settings, url))
    except TelegramAPIError as exc:
        raise click.ClickException(f"setWebhook refused: {exc.message}") from None
    click.echo(f"webhook set; Telegram will send: {', '.join(ALLOWED_UPDATES)}, with the secret token")
