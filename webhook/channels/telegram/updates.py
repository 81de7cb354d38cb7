"""Telegram updates parsed with aiogram's types into what the core understands; anything malformed is refused.

Only private chats with people count: a bot, a group, an edited message or a status change is
acknowledged and left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aiogram.types import CallbackQuery, Update
from aiogram.types import Message as TelegramMessage
from pydantic import ValidationError

from webhook.core.conversation import Message, Sender
from webhook.core.errors import BadCallback
from webhook.core.phones import SharedContact

START = "/start"
MAX_PAYLOAD_CHARS = 64
"""A deep link's start payload is at most 64 characters of A-Z, a-z, 0-9, _ and -."""
BUTTON_SEPARATOR = ":"
"""An option button's callback data: the poll id, this, the option's position."""


@dataclass(frozen=True)
class Opened:
    """/start: the voter opened the bot (a deep link's payload is the campaign)."""

    update_id: int
    chat_id: int
    sender: Sender
    campaign: str | None
    sent_at: int


@dataclass(frozen=True)
class Written:
    """A message from the voter (text or contact), for the conversation."""

    message: Message
    sent_at: int


@dataclass(frozen=True)
class Tapped:
    """An inline button was tapped: the query to answer, and the option it names."""

    query_id: str
    message: Message
    option_index: int | None


@dataclass(frozen=True)
class Ignored:
    """Acknowledged, nothing to do (a bot, a group, an edit, a status change)."""

    why: str


Parsed = Opened | Written | Tapped | Ignored


def parse_update(body: bytes) -> Parsed:
    """What an update body is; BadCallback when it is not a Telegram update."""
    try:
        update = Update.model_validate_json(body)
    except (ValidationError, ValueError, RecursionError):
        raise BadCallback("body is not a Telegram update") from None
    if update.callback_query is not None:
        return _tap(update.update_id, update.callback_query)
    if update.message is not None:
        return _message(update.update_id, update.message)
    return Ignored("no message or button in this update")


def button_data(poll_id: str, option_index: int) -> str:
    """The callback data of an option's button (well under Telegram's 64 bytes)."""
    return f"{poll_id}{BUTTON_SEPARATOR}{option_index}"


def _sender(user_id: int, language: str | None) -> Sender:
    """The core's view of a Telegram user (any client can share its number)."""
    return Sender(str(user_id), language or "en")


def _message(update_id: int, message: TelegramMessage) -> Parsed:
    """A message in a private chat: /start, a text or a contact."""
    user = message.from_user
    if user is None or user.is_bot or message.chat.type != "private":
        return Ignored("not a person in a private chat")
    sender = _sender(user.id, user.language_code)
    sent_at = _unix_time(message.date)
    text = message.text
    if text is not None and (text == START or text.startswith(START + " ")):
        payload = text[len(START) :].strip()[:MAX_PAYLOAD_CHARS] or None
        return Opened(update_id, message.chat.id, sender, payload, sent_at)
    contact = None
    if message.contact is not None:
        # Telegram vouches that a contact is the sender's own only by its user_id: a forwarded or
        # hand-made card has none, or someone else's.
        own = message.contact.user_id is not None and message.contact.user_id == user.id
        contact = SharedContact(message.contact.phone_number, own_contact=own)
    elif text is None:
        return Ignored("neither text nor contact")
    return Written(Message(sender=sender, token=update_id, text=text, contact=contact), sent_at)


def _unix_time(date: datetime) -> int:
    """A message's date as Unix seconds; Telegram sends Unix time, so a date without a zone is not its."""
    if date.tzinfo is None:
        raise BadCallback("a message date without a time zone")
    try:
        return int(date.timestamp())
    except (OverflowError, OSError, ValueError):
        raise BadCallback("a message date out of range") from None


def _tap(update_id: int, query: CallbackQuery) -> Parsed:
    """A tapped option button: "POLL:INDEX"."""
    if query.from_user.is_bot:
        return Ignored("a bot")
    poll_id, _, index = (query.data or "").partition(BUTTON_SEPARATOR)
    option_index = int(index) if index.isascii() and index.isdigit() and len(index) <= 2 else None
    message = Message(
        sender=_sender(query.from_user.id, query.from_user.language_code), token=update_id, poll_id=poll_id
    )
    return Tapped(query.id, message, option_index)
