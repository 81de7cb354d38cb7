"""POST /viber/webhook: verify, parse, hand the core a Message, answer fast."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from webhook import telemetry
from webhook.channels.viber import render, signature
from webhook.channels.viber.events import (
    ConversationStarted,
    MessageEvent,
    MessageType,
    Voter,
    parse_callback,
)
from webhook.core import texts
from webhook.core.conversation import Message, Sender
from webhook.core.errors import BadCallback
from webhook.core.phones import SharedContact
from webhook.http_errors import error_response
from webhook.runtime import Runtime, runtime

bp = Blueprint("viber_webhook", __name__)

CHANNEL = "viber"
MAX_CLOCK_SKEW_S = 300
"""A callback stamped further in the future than this (seconds) is ignored."""
EMPTY_OK = ("{}", 200, {"Content-Type": "application/json"})
"""The answer to a message callback: Viber reads nothing from it (built once, not by jsonify)."""
SEEN_MARGIN_S = MAX_CLOCK_SKEW_S
"""A callback's token is remembered for as long as the callback is accepted (MAX_CALLBACK_AGE_S),
plus this: a replay old enough to be forgotten is old enough to be refused as stale."""


@bp.post("/viber/webhook")
@telemetry.WEBHOOK_SECONDS.time()
def receive() -> Any:
    """Handle one Viber callback."""
    rt = runtime()
    body = request.get_data(cache=False)
    if not signature.is_valid(rt.config.viber_auth_token or "", body, request.headers.get(signature.HEADER)):
        telemetry.rejected(CHANNEL, "bad_signature")
        return error_response(403, "missing or wrong signature")
    try:
        event = parse_callback(body)
    except BadCallback:
        telemetry.rejected(CHANNEL, "bad_request")
        raise
    now = time.time()
    if isinstance(event, MessageEvent | ConversationStarted) and _stale(rt, event.timestamp_ms, now):
        telemetry.rejected(CHANNEL, "stale")
        return _ok({"status": "ignored", "reason": "timestamp outside the accepted window"})
    conversation = rt.conversation(CHANNEL, seen_ttl_s=rt.config.max_callback_age_s + SEEN_MARGIN_S)
    if isinstance(event, ConversationStarted):
        welcome = conversation.welcome(_sender(event.user), now)
        content = texts.welcome(
            welcome.poll, welcome.status, welcome.language, needs_phone=welcome.needs_phone
        )
        return _ok(render.message(content, rt.config.bot_name))
    if isinstance(event, MessageEvent):
        handled = conversation.receive(_message(event), now)
        if handled.vote is not None:
            telemetry.VOTES.labels(handled.vote.value).inc()
    return EMPTY_OK


def _sender(voter: Voter) -> Sender:
    """The core's view of a Viber user: Desktop and old clients cannot share their number."""
    api_version = voter.api_version
    can_share = api_version is None or api_version >= render.SHARE_PHONE_MIN_API_VERSION
    return Sender(voter.id, voter.language, can_share_phone=can_share)


def _message(event: MessageEvent) -> Message:
    """The core's view of a Viber message: a keyboard tap arrives as text, a number as a contact."""
    contact = None
    if event.message_type == MessageType.CONTACT.value:
        # Viber vouches for the account's country (it follows the number the account was
        # registered with), not for the contact: a forwarded card looks the same.
        contact = SharedContact(event.contact_phone or "", account_country=event.sender.country)
    return Message(
        sender=_sender(event.sender),
        token=event.message_token,
        poll_id=event.tracking_data,
        text=event.text if event.message_type == MessageType.TEXT.value else None,
        contact=contact,
    )


def _stale(rt: Runtime, timestamp_ms: int, now: float) -> bool:
    """Whether a callback's timestamp is too old (a replay) or too far ahead."""
    age_s = now - timestamp_ms / 1000
    return age_s > rt.config.max_callback_age_s or age_s < -MAX_CLOCK_SKEW_S


def _ok(body: dict[str, Any]) -> tuple[Response, int]:
    """A 200 answer, so Viber does not retry."""
    return jsonify(body), 200
