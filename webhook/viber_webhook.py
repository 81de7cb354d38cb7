"""POST /viber/webhook: verify, parse, one atomic Redis step, answer."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from webhook import messages, signature
from webhook.ballot_box import CastOutcome
from webhook.events import ConversationStarted, MessageEvent, MessageType, parse_callback
from webhook.http_errors import error_response
from webhook.identity import IdentityKind, voter_key
from webhook.outbox import ReplyKind
from webhook.runtime import Runtime, runtime

log = logging.getLogger(__name__)
bp = Blueprint("viber_webhook", __name__)

MAX_CLOCK_SKEW_S = 300
"""A callback stamped further in the future than this (seconds) is ignored."""
REPLY_FOR_OUTCOME = {
    CastOutcome.DUPLICATE: ReplyKind.ALREADY_VOTED,
    CastOutcome.CLOSED: ReplyKind.CLOSED,
    CastOutcome.NOT_OPEN: ReplyKind.NOT_OPEN,
}


@bp.post("/viber/webhook")
def receive() -> Any:
    """Handle one Viber callback."""
    rt = runtime()
    body = request.get_data(cache=False)
    if not signature.is_valid(rt.config.viber_auth_token, body, request.headers.get(signature.HEADER)):
        return error_response(403, "missing or wrong signature")
    event = parse_callback(body)
    now = time.time()
    if isinstance(event, MessageEvent | ConversationStarted) and _stale(rt, event.timestamp_ms, now):
        return _ok({"status": "ignored", "reason": "timestamp outside the accepted window"})
    if isinstance(event, ConversationStarted):
        poll = rt.polls.current(now)
        return _ok(messages.welcome(poll, rt.ballot_box.status(poll, now), rt.config.bot_name))
    if isinstance(event, MessageEvent):
        _on_message(rt, event, now)
    return _ok({})


def _on_message(rt: Runtime, event: MessageEvent, now: float) -> None:
    """Cast the vote a message names, or queue the reply it deserves."""
    poll = rt.polls.find(event.tracking_data) or rt.polls.current(now)
    voter = voter_key(rt.config.voter_id_secret, IdentityKind.VIBER, event.sender.id)
    option = None
    if event.message_type == MessageType.TEXT.value and event.text is not None:
        option = poll.option_index(event.text)
    if option is None:
        reply = ReplyKind.HELP
    else:
        outcome = rt.ballot_box.cast(
            poll,
            voter,
            option,
            message_token=event.message_token,
            receiver=event.sender.id,
            language=event.sender.language,
            now=now,
        )
        if outcome not in REPLY_FOR_OUTCOME:
            return
        reply = REPLY_FOR_OUTCOME[outcome]
    rt.outbox.queue_reply(
        reply,
        receiver=event.sender.id,
        poll_id=poll.id,
        language=event.sender.language,
        voter=voter,
        message_token=event.message_token,
        rate_limit=rt.config.reply_rate_limit,
        rate_window_s=rt.config.reply_rate_window_s,
    )


def _stale(rt: Runtime, timestamp_ms: int, now: float) -> bool:
    """Whether a callback's timestamp is too old (a replay) or too far ahead."""
    age_s = now - timestamp_ms / 1000
    return age_s > rt.config.max_callback_age_s or age_s < -MAX_CLOCK_SKEW_S


def _ok(body: dict[str, Any]) -> tuple[Response, int]:
    """A 200 answer, so Viber does not retry."""
    return jsonify(body), 200
