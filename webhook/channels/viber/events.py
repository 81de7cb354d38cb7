"""Viber callbacks parsed into typed events; anything malformed raises BadCallback."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

from webhook.core.errors import BadCallback

MAX_ID_CHARS = 128
MAX_LANGUAGE_CHARS = 16
COUNTRY_CHARS = 2
DEFAULT_LANGUAGE = "en"
MAX_UINT64 = 2**64 - 1


class EventType(StrEnum):
    """Every callback event Viber sends, including ones its SDK does not know."""

    WEBHOOK = "webhook"
    CONVERSATION_STARTED = "conversation_started"
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"
    MESSAGE = "message"
    DELIVERED = "delivered"
    SEEN = "seen"
    FAILED = "failed"
    CLIENT_STATUS = "client_status"


class MessageType(StrEnum):
    """Message types a voter can send; only text can carry a vote."""

    TEXT = "text"
    PICTURE = "picture"
    VIDEO = "video"
    FILE = "file"
    STICKER = "sticker"
    CONTACT = "contact"
    LOCATION = "location"
    URL = "url"
    RICH_MEDIA = "rich_media"


@dataclass(frozen=True)
class Voter:
    """The Viber user behind an event (their id never leaves the request except to reply)."""

    id: str
    language: str
    api_version: int | None
    country: str = ""
    """The account's two-letter country, which follows the number it was registered with ("" if absent)."""


@dataclass(frozen=True)
class MessageEvent:
    """A voter sent a message (a tapped keyboard button arrives as text)."""

    timestamp_ms: int
    message_token: int
    sender: Voter
    message_type: str
    text: str | None
    tracking_data: str | None
    contact_phone: str | None = None


@dataclass(frozen=True)
class ConversationStarted:
    """A voter opened the bot; the welcome goes back in the HTTP response."""

    timestamp_ms: int
    message_token: int
    user: Voter
    context: str | None


@dataclass(frozen=True)
class OtherEvent:
    """An event the service acknowledges and does not act on (known or not)."""

    event: str


Event = MessageEvent | ConversationStarted | OtherEvent


def parse_callback(body: bytes) -> Event:
    """Parse a callback body into an event."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadCallback("body is not valid JSON") from None
    except RecursionError:
        raise BadCallback("body is nested too deeply") from None
    if not isinstance(payload, dict):
        raise BadCallback("body is not a JSON object")
    event = payload.get("event")
    if not isinstance(event, str) or not event:
        raise BadCallback("'event' is missing or not a string")
    if event == EventType.MESSAGE.value:
        return _message(payload)
    if event == EventType.CONVERSATION_STARTED.value:
        return ConversationStarted(
            timestamp_ms=_int(payload, "timestamp"),
            message_token=_int(payload, "message_token"),
            user=_voter(_object(payload, "user")),
            context=_optional_str(payload, "context"),
        )
    return OtherEvent(event)


def _message(payload: dict) -> MessageEvent:
    """Parse a message event."""
    message = _object(payload, "message")
    message_type = message.get("type")
    if not isinstance(message_type, str) or not message_type:
        raise BadCallback("'message.type' is missing or not a string")
    text = _optional_str(message, "text")
    if message_type == MessageType.TEXT.value and text is None:
        raise BadCallback("a text message has no 'message.text'")
    contact = message.get("contact")
    phone = _optional_str(contact, "phone_number") if isinstance(contact, dict) else None
    return MessageEvent(
        timestamp_ms=_int(payload, "timestamp"),
        message_token=_int(payload, "message_token"),
        sender=_voter(_object(payload, "sender")),
        message_type=message_type,
        text=text,
        tracking_data=_optional_str(message, "tracking_data"),
        contact_phone=phone if message_type == MessageType.CONTACT.value else None,
    )


def _voter(user: dict) -> Voter:
    """Parse a sender or user object."""
    user_id = user.get("id")
    if not isinstance(user_id, str) or not 0 < len(user_id) <= MAX_ID_CHARS:
        raise BadCallback("the user's 'id' is missing or not a short string")
    try:
        user_id.encode("utf-8")
    except UnicodeEncodeError:
        raise BadCallback("the user's 'id' is not valid text") from None
    language = user.get("language")
    if not isinstance(language, str) or not 0 < len(language) <= MAX_LANGUAGE_CHARS:
        language = DEFAULT_LANGUAGE
    api_version = user.get("api_version")
    if not isinstance(api_version, int) or isinstance(api_version, bool):
        api_version = None
    country = user.get("country")
    if not isinstance(country, str) or len(country) != COUNTRY_CHARS or not country.isascii():
        country = ""
    return Voter(user_id, language, api_version, country.upper())


def _object(payload: dict, key: str) -> dict:
    """A required JSON object field."""
    value = payload.get(key)
    if not isinstance(value, dict):
        raise BadCallback(f"'{key}' is missing or not an object")
    return value


def _int(payload: dict, key: str) -> int:
    """A required integer field that fits 64 bits unsigned (Viber's timestamps and tokens)."""
    value = payload.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_UINT64:
        raise BadCallback(f"'{key}' is missing or not a non-negative 64-bit integer")
    return value


def _optional_str(payload: dict, key: str) -> str | None:
    """An optional string field (any other type counts as absent)."""
    value = payload.get(key)
    return value if isinstance(value, str) else None
