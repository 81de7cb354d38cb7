"""POST /viber/webhook: verify, parse, one atomic Redis step, answer."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from webhook import keys, messages, metrics, signature
from webhook.ballot_box import BindOutcome, CastOutcome
from webhook.commands import parse_command
from webhook.errors import BadCallback
from webhook.events import ConversationStarted, MessageEvent, MessageType, parse_callback
from webhook.http_errors import error_response
from webhook.i18n import language_of
from webhook.identity import IdentityKind, voter_key
from webhook.messages import SHARE_PHONE_MIN_API_VERSION
from webhook.outbox import ReplyKind
from webhook.phones import ContactRefusal, SharedContact, judge_contact
from webhook.polls import Poll
from webhook.runtime import Runtime, runtime

log = logging.getLogger(__name__)
bp = Blueprint("viber_webhook", __name__)

MAX_CLOCK_SKEW_S = 300
"""A callback stamped further in the future than this (seconds) is ignored."""
CHANNEL = "viber"
"""This messenger's name in phone bindings (a number binds to one account per messenger)."""
REPLY_FOR_OUTCOME = {
    CastOutcome.DUPLICATE: ReplyKind.ALREADY_VOTED,
    CastOutcome.CLOSED: ReplyKind.CLOSED,
    CastOutcome.NOT_OPEN: ReplyKind.NOT_OPEN,
}
REPLY_FOR_REFUSAL = {
    ContactRefusal.INVALID_NUMBER: ReplyKind.PHONE_INVALID,
    ContactRefusal.COUNTRY_NOT_ALLOWED: ReplyKind.PHONE_REFUSED,
    ContactRefusal.COUNTRY_MISMATCH: ReplyKind.PHONE_COUNTRY_MISMATCH,
    ContactRefusal.NOT_OWN_CONTACT: ReplyKind.PHONE_NOT_OWN,
    ContactRefusal.OTHER_NUMBER: ReplyKind.PHONE_OTHER_NUMBER,
    ContactRefusal.BOUND_ELSEWHERE: ReplyKind.PHONE_BOUND_ELSEWHERE,
}


@bp.post("/viber/webhook")
@metrics.WEBHOOK_SECONDS.time()
def receive() -> Any:
    """Handle one Viber callback."""
    rt = runtime()
    body = request.get_data(cache=False)
    if not signature.is_valid(rt.config.viber_auth_token, body, request.headers.get(signature.HEADER)):
        metrics.REJECTED.labels("bad_signature").inc()
        return error_response(403, "missing or wrong signature")
    try:
        event = parse_callback(body)
    except BadCallback:
        metrics.REJECTED.labels("bad_request").inc()
        raise
    now = time.time()
    if isinstance(event, MessageEvent | ConversationStarted) and _stale(rt, event.timestamp_ms, now):
        metrics.REJECTED.labels("stale").inc()
        return _ok({"status": "ignored", "reason": "timestamp outside the accepted window"})
    if isinstance(event, ConversationStarted):
        return _ok(_welcome(rt, event, now))
    if isinstance(event, MessageEvent):
        _on_message(rt, event, now)
    return _ok({})


def _welcome(rt: Runtime, event: ConversationStarted, now: float) -> dict[str, Any]:
    """The welcome for the current poll, in the voter's language."""
    poll = rt.polls.current(now)
    language = language_of(event.user.language)
    needs_phone = False
    if poll.require_phone:
        viber_voter = voter_key(rt.config.voter_id_secret, IdentityKind.VIBER, event.user.id)
        needs_phone = rt.ballot_box.phone_of(CHANNEL, viber_voter) is None
    status = rt.ballot_box.status(poll, now)
    return messages.welcome(poll, status, rt.config.bot_name, language, needs_phone=needs_phone)


def _on_message(rt: Runtime, event: MessageEvent, now: float) -> None:
    """Cast the vote a message names, or queue the reply it deserves."""
    poll = rt.polls.find(event.tracking_data) or rt.polls.current(now)
    viber_voter = voter_key(rt.config.voter_id_secret, IdentityKind.VIBER, event.sender.id)
    receiver = rt.seal.seal(event.sender.id)

    def reply(kind: ReplyKind, receipt: str | None = None, count: str = "") -> None:
        rt.outbox.queue_reply(
            kind,
            receiver=receiver,
            poll_id=poll.id,
            language=language_of(event.sender.language),
            voter=viber_voter,
            message_token=event.message_token,
            rate_limit=rt.config.reply_rate_limit,
            rate_window_s=rt.config.reply_rate_window_s,
            receipt=receipt,
            count=count,
        )

    if event.message_type == MessageType.CONTACT.value:
        if not poll.require_phone:
            reply(ReplyKind.HELP)
            return
        refusal = _verify_phone(rt, poll, viber_voter, event)
        if refusal is None:
            reply(ReplyKind.PHONE_OK)
        else:
            reply(REPLY_FOR_REFUSAL[refusal], count=keys.refused_contact_stat(refusal.value))
        return
    text = event.text if event.message_type == MessageType.TEXT.value else None
    command = parse_command(text)
    if command is not None:
        reply(command.kind, command.receipt)
        return
    option = poll.option_index(text) if text is not None else None
    voter, account = viber_voter, None
    if poll.require_phone:
        phone = rt.ballot_box.phone_of(CHANNEL, viber_voter)
        if phone is None:
            reply(_phone_prompt(event))
            return
        voter, account = phone, viber_voter
    if option is None:
        reply(ReplyKind.HELP)
        return
    outcome = rt.ballot_box.cast(
        poll,
        voter,
        option,
        message_token=event.message_token,
        receiver=receiver,
        language=language_of(event.sender.language),
        account=account,
        now=now,
    )
    metrics.VOTES.labels(outcome.value).inc()
    if outcome in REPLY_FOR_OUTCOME:
        reply(REPLY_FOR_OUTCOME[outcome])


def _verify_phone(rt: Runtime, poll: Poll, viber_voter: bytes, event: MessageEvent) -> ContactRefusal | None:
    """Bind a shared number (as a keyed hash) to the account for good; None if accepted, else why not."""
    contact = SharedContact(event.contact_phone or "", account_country=event.sender.country)
    judged = judge_contact(contact, poll.allowed_countries)
    if isinstance(judged, ContactRefusal):
        return judged
    phone = voter_key(rt.config.voter_id_secret, IdentityKind.PHONE, judged.e164)
    outcome = rt.ballot_box.bind_phone(CHANNEL, viber_voter, phone)
    if outcome is BindOutcome.OTHER_NUMBER:
        return ContactRefusal.OTHER_NUMBER
    if outcome is BindOutcome.BOUND_ELSEWHERE:
        return ContactRefusal.BOUND_ELSEWHERE
    return None


def _phone_prompt(event: MessageEvent) -> ReplyKind:
    """Ask for the number (again, at every tap); a client too old for the button (Desktop) is told so."""
    api_version = event.sender.api_version
    if api_version is not None and api_version < SHARE_PHONE_MIN_API_VERSION:
        return ReplyKind.PHONE_DESKTOP
    return ReplyKind.ASK_PHONE


def _stale(rt: Runtime, timestamp_ms: int, now: float) -> bool:
    """Whether a callback's timestamp is too old (a replay) or too far ahead."""
    age_s = now - timestamp_ms / 1000
    return age_s > rt.config.max_callback_age_s or age_s < -MAX_CLOCK_SKEW_S


def _ok(body: dict[str, Any]) -> tuple[Response, int]:
    """A 200 answer, so Viber does not retry."""
    return jsonify(body), 200
