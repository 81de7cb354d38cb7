"""The core's replies as Telegram messages: inline option buttons, or a button sharing the voter's number."""

from __future__ import annotations

from typing import Any

from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
)

from webhook.channels.telegram.updates import button_data
from webhook.core.texts import Keyboard, ReplyContent, share_phone_label

Markup = InlineKeyboardMarkup | ReplyKeyboardMarkup | None


def markup(content: ReplyContent) -> Markup:
    """The buttons that go with a reply."""
    if content.keyboard is Keyboard.OPTIONS:
        rows = [
            [
                InlineKeyboardButton(
                    text=o.label_in(content.language), callback_data=button_data(content.poll.id, i)
                )
            ]
            for i, o in enumerate(content.poll.options)
        ]
        return InlineKeyboardMarkup(inline_keyboard=rows)
    if content.keyboard is Keyboard.SHARE_PHONE:
        # request_contact sends the voter's own number as a contact whose user_id is theirs.
        button = KeyboardButton(text=share_phone_label(content.language), request_contact=True)
        return ReplyKeyboardMarkup(keyboard=[[button]], resize_keyboard=True, one_time_keyboard=True)
    return None


def webhook_answer(content: ReplyContent, chat_id: int) -> dict[str, Any]:
    """A sendMessage call as the webhook's own HTTP answer (Telegram performs it; nothing comes back)."""
    answer: dict[str, Any] = {"method": "sendMessage", "chat_id": chat_id, "text": content.text}
    buttons = markup(content)
    if buttons is not None:
        answer["reply_markup"] = buttons.model_dump(exclude_none=True)
    return answer
