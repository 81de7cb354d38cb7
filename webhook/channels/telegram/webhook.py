"""POST /telegram/webhook: check the secret, parse the update, hand the core a Message, answer fast.

Telegram has no signature: the secret set with setWebhook comes back in a header with every update,
compared here in constant time. Its retries repeat the update_id, which is the dedupe token.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, jsonify, request

from webhook import telemetry
from webhook.core import texts
from webhook.core.conversation import Handled, Message
from webhook.core.errors import BadCallback
from webhook.core.i18n import translator
from webhook.http_errors import error_response
from webhook.runtime import Runtime, runtime

if TYPE_CHECKING:
    from webhook.channels.telegram.updates import Tapped

bp = Blueprint("telegram_webhook", __name__)

CHANNEL = "telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
REDELIVERY_S = 24 * 3600
"""Telegram keeps an update it could not deliver for 24 hours: a message that old is still taken (the
secret token, not the age, keeps strangers out) and its update_id is remembered that long, plus a margin."""
SEEN_MARGIN_S = 3600


@bp.post("/telegram/webhook")
@telemetry.WEBHOOK_SECONDS.time()
def receive() -> Any:
    """Handle one Telegram update."""
    # aiogram's types take seconds to import: the service's app imports them before serving
    # (TelegramChannel.warm, from wsgi.py), an operator command never.
    from webhook.channels.telegram import render
    from webhook.channels.telegram.updates import Opened, Tapped, Written, parse_update

    rt = runtime()
    settings = rt.config.telegram
    given = request.headers.get(SECRET_HEADER, "").encode("utf-8", "replace")
    if settings is None or not hmac.compare_digest(given, settings.webhook_secret.encode()):
        telemetry.rejected(CHANNEL, "bad_signature")
        return error_response(403, "missing or wrong secret token")
    try:
        parsed = parse_update(request.get_data(cache=False))
    except BadCallback:
        telemetry.rejected(CHANNEL, "bad_request")
        raise
    now = time.time()
    if isinstance(parsed, Opened | Written) and now - parsed.sent_at > REDELIVERY_S:
        telemetry.rejected(CHANNEL, "stale")
        return _ok({})
    conversation = rt.conversation(CHANNEL, seen_ttl_s=REDELIVERY_S + SEEN_MARGIN_S)
    if isinstance(parsed, Opened):
        welcome = conversation.welcome(parsed.sender, now)
        content = texts.welcome(
            welcome.poll, welcome.status, welcome.language, needs_phone=welcome.needs_phone
        )
        return _ok(render.webhook_answer(content, parsed.chat_id))
    if isinstance(parsed, Written):
        _count(conversation.receive(parsed.message, now))
    elif isinstance(parsed, Tapped):
        handled = conversation.receive(_chosen(rt, parsed), now)
        _count(handled)
        return _ok(_answer_tap(parsed, handled))
    return _ok({})  # Ignored: acknowledged, nothing to do


def _chosen(rt: Runtime, tap: Tapped) -> Message:
    """The tapped button's option, by its position in the poll it names (none if either is unknown)."""
    poll = rt.polls.find(tap.message.poll_id)
    if poll is None or tap.option_index is None or tap.option_index >= len(poll.options):
        return replace(tap.message, poll_id=poll.id if poll else None)
    return replace(tap.message, option=poll.options[tap.option_index].id)


def _answer_tap(tap: Tapped, handled: Handled) -> dict[str, Any]:
    """answerCallbackQuery as the HTTP answer: stops the button's spinner; the reply follows by message."""
    answer: dict[str, Any] = {"method": "answerCallbackQuery", "callback_query_id": tap.query_id}
    if handled.vote is not None and handled.reply is None:
        _ = translator(tap.message.sender.language)
        answer["text"] = _("Vote received: your receipt follows.")
    return answer


def _count(handled: Handled) -> None:
    """Count a vote's outcome, as the Viber webhook does."""
    if handled.vote is not None:
        telemetry.VOTES.labels(handled.vote.value).inc()


def _ok(body: dict[str, Any]) -> tuple[Response, int]:
    """A 200 answer, so Telegram does not retry (its body may itself be a Bot API call)."""
    return jsonify(body), 200
