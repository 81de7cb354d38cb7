"""The core's replies as Viber messages: text, keyboards and tracking data (Viber's send_message JSON)."""

from __future__ import annotations

from typing import Any

from webhook.core.texts import Keyboard, ReplyContent, share_phone_label

KEYBOARD_BG_COLOR = "#FFFFFF"
BUTTON_BG_COLOR = "#7360F2"
SHARE_PHONE_MIN_API_VERSION = 3
"""Viber clients older than this cannot send a share-phone button's contact."""


def message(content: ReplyContent, bot_name: str) -> dict[str, Any]:
    """A send_message body without its receiver (also the welcome answer); tracking data names the poll."""
    keyboard = None
    if content.keyboard is Keyboard.OPTIONS:
        keyboard = _keyboard(
            [_button("reply", o.id, o.label_in(content.language)) for o in content.poll.options]
        )
    elif content.keyboard is Keyboard.SHARE_PHONE:
        keyboard = _keyboard([_button("share-phone", "phone", share_phone_label(content.language))])
    payload: dict[str, Any] = {
        "sender": {"name": bot_name},
        "type": "text",
        "text": content.text,
        "tracking_data": content.poll.id,
    }
    if keyboard is not None:
        payload["keyboard"] = keyboard
    if content.keyboard is Keyboard.SHARE_PHONE:
        payload["min_api_version"] = SHARE_PHONE_MIN_API_VERSION
    return payload


def _keyboard(buttons: list[dict[str, Any]]) -> dict[str, Any]:
    """A keyboard of full-width buttons (a reply button sends its ActionBody back as text)."""
    return {"Type": "keyboard", "DefaultHeight": False, "BgColor": KEYBOARD_BG_COLOR, "Buttons": buttons}


def _button(action_type: str, body: str, text: str) -> dict[str, Any]:
    """A full-width keyboard button."""
    return {
        "ActionType": action_type,
        "ActionBody": body,
        "Text": f'<font color="#FFFFFF">{text}</font>',
        "BgColor": BUTTON_BG_COLOR,
        "Columns": 6,
        "Rows": 1,
    }
