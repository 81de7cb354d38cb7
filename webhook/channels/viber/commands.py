"""Viber's operator command: `flask --app wsgi set-webhook URL`."""

from __future__ import annotations

import click

from webhook.channels.viber.client import ViberClient
from webhook.core.errors import ViberApiError
from webhook.runtime import runtime


@click.command("set-webhook")
@click.argument("url")
def set_webhook_command(url: str) -> None:
    """Register this service's public webhook URL (https://.../viber/webhook) with Viber."""
    config = runtime().config
    if not config.viber_auth_token:
        raise click.ClickException("VIBER_AUTH_TOKEN is not set: this deployment runs no Viber bot")
    try:
        answer = ViberClient(config.viber_api_url, config.viber_auth_token).set_webhook(url)
    except ViberApiError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"webhook set; Viber will send: {', '.join(answer.get('event_types', []))}")
