"""What the bot says: every message text and keyboard, built with viberbot's message types."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from viberbot.api.messages.text_message import TextMessage

from webhook.outbox import ReplyKind
from webhook.polls import Poll, PollStatus

KEYBOARD_BG_COLOR = "#FFFFFF"
BUTTON_BG_COLOR = "#7360F2"


def keyboard(poll: Poll) -> dict[str, Any]:
    """One full-width reply button per option; a tap sends the option id back as text."""
    buttons = [
        {
            "ActionType": "reply",
            "ActionBody": option.id,
            "Text": f'<font color="#FFFFFF">{option.label}</font>',
            "BgColor": BUTTON_BG_COLOR,
            "Columns": 6,
            "Rows": 1,
        }
        for option in poll.options
    ]
    return {"Type": "keyboard", "DefaultHeight": False, "BgColor": KEYBOARD_BG_COLOR, "Buttons": buttons}


def welcome(poll: Poll, status: PollStatus, bot_name: str) -> dict[str, Any]:
    """The welcome returned in the response to conversation_started."""
    if status is PollStatus.OPEN:
        text = f"{poll.question}\n\nTap one answer below. Each person can vote once."
        return _payload(poll, text, bot_name, with_keyboard=True)
    return _payload(poll, f"{poll.question}\n\n{_status_text(poll, status)}", bot_name)


def reply(poll: Poll, kind: ReplyKind, entry: dict[str, str], bot_name: str) -> dict[str, Any]:
    """The message for an outbox entry, without its receiver."""
    if kind is ReplyKind.CONFIRM:
        label = next((o.label for o in poll.options if o.id == entry.get("o")), "your choice")
        text = (
            f"Thank you: your vote ({label}) is counted.\n"
            f"Your receipt code: {entry.get('r', '')}\n"
            "Keep it to check later that your vote is in the count; it does not show your choice."
        )
        return _payload(poll, text, bot_name)
    if kind is ReplyKind.ALREADY_VOTED:
        return _payload(poll, "You have already voted in this poll. Each person votes once.", bot_name)
    if kind is ReplyKind.CLOSED:
        return _payload(poll, _status_text(poll, PollStatus.CLOSED), bot_name)
    if kind is ReplyKind.NOT_OPEN:
        return _payload(poll, _status_text(poll, PollStatus.NOT_OPEN), bot_name)
    text = f"{poll.question}\n\nTo vote, tap one of the buttons below."
    return _payload(poll, text, bot_name, with_keyboard=True)


def _status_text(poll: Poll, status: PollStatus) -> str:
    """Why a voter cannot vote now."""
    if status is PollStatus.CLOSED:
        return "Voting has closed. No more votes are counted."
    if poll.opens_at is not None:
        when = datetime.fromtimestamp(poll.opens_at, UTC).strftime("%d %B %Y, %H:%M UTC")
        return f"Voting has not opened yet. It opens on {when}."
    return "Voting has not opened yet."


def _payload(poll: Poll, text: str, bot_name: str, *, with_keyboard: bool = False) -> dict[str, Any]:
    """A send_message body without its receiver; tracking data names the poll."""
    message = TextMessage(
        text=text, keyboard=keyboard(poll) if with_keyboard else None, tracking_data=poll.id
    )
    return {"sender": {"name": bot_name}, **message.to_dict()}
