"""One Telegram user talking to the app in-process; replies come back through the fake Bot API."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from webhook.store import keys
from workers import sender, tally

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
DEFERRED_WAIT_S = 4.0
"""Replies the send limits hold back this long at most are waited for (longer ones are retries)."""
DEFERRED_ROUNDS = 5
_update_ids = itertools.count(700_000_000)
_message_ids = itertools.count(1)


def next_update_id() -> int:
    """A fresh update_id."""
    return next(_update_ids)


def user(user_id: int, language: str = "en") -> dict[str, Any]:
    """A Telegram user object."""
    return {"id": user_id, "is_bot": False, "first_name": "Voter", "language_code": language}


def message_update(user_id: int, language: str = "en", **content: Any) -> dict[str, Any]:
    """An update carrying a private message (text=..., or contact=...)."""
    return {
        "update_id": next_update_id(),
        "message": {
            "message_id": next(_message_ids),
            "date": int(time.time()),
            "chat": {"id": user_id, "type": "private"},
            "from": user(user_id, language),
            **content,
        },
    }


def tap_update(user_id: int, data: str, language: str = "en") -> dict[str, Any]:
    """An update carrying a tapped inline button (callback_query)."""
    return {
        "update_id": next_update_id(),
        "callback_query": {
            "id": f"cq-{next_update_id()}",
            "from": user(user_id, language),
            "chat_instance": "1",
            "data": data,
            "message": {
                "message_id": 1,
                "date": int(time.time()),
                "chat": {"id": user_id, "type": "private"},
            },
        },
    }


def contact(phone: str, owner: int | None) -> dict[str, Any]:
    """A contact (the share button's, when owner is the sender; a forwarded card otherwise)."""
    card: dict[str, Any] = {"phone_number": phone, "first_name": "Voter"}
    if owner is not None:
        card["user_id"] = owner
    return {"contact": card}


class TelegramChat:
    """A voter's Telegram conversation: each step posts an update, drains the workers, returns new replies."""

    def __init__(
        self, client: Any, rt: Any, fake: Any, senders: Any, secret: str, user_id: int, language: str = "en"
    ):
        """A chat of one Telegram user."""
        self.client, self.rt, self.fake, self.senders, self.secret = client, rt, fake, senders, secret
        self.user_id, self.language = user_id, language
        self.seen = 0

    def post(self, update: dict[str, Any] | bytes, secret: str | None = None) -> Any:
        """POST an update to the webhook; returns the response."""
        body = update if isinstance(update, bytes) else json.dumps(update).encode()
        headers = {
            SECRET_HEADER: self.secret if secret is None else secret,
            "Content-Type": "application/json",
        }
        return self.client.post("/telegram/webhook", data=body, headers=headers)

    def replies(self) -> list[dict[str, Any]]:
        """Drain the workers (and replies the send limits hold back a moment); new messages to this chat."""
        tally.drain(self.rt, "test")
        sender.drain(self.rt, self.senders, "test")
        for _ in range(DEFERRED_ROUNDS):
            due = self.rt.redis.zrange(keys.OUTBOX_RETRY, 0, 0, withscores=True)
            if not due or due[0][1] - time.time() > DEFERRED_WAIT_S:
                break
            time.sleep(max(0.0, due[0][1] - time.time()))
            self.rt.outbox.move_due_retries()
            sender.drain(self.rt, self.senders, "test")
        sent = self.fake.messages_to(self.user_id)
        new, self.seen = sent[self.seen :], len(sent)
        return new

    def start(self, payload: str = "") -> dict[str, Any]:
        """/start (with a deep-link payload): returns the webhook's own answer (a sendMessage call)."""
        response = self.post(message_update(self.user_id, self.language, text=f"/start {payload}".strip()))
        assert response.status_code == 200
        return response.get_json()

    def say(self, text: str) -> list[dict[str, Any]]:
        """Send a text; the replies it brings."""
        assert self.post(message_update(self.user_id, self.language, text=text)).status_code == 200
        return self.replies()

    def tap(self, data: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Tap an inline button: (the webhook's answer, the replies that follow)."""
        response = self.post(tap_update(self.user_id, data, self.language))
        assert response.status_code == 200
        return response.get_json(), self.replies()

    def share(self, phone: str, owner: int | None = -1) -> list[dict[str, Any]]:
        """Share a contact: by default the sender's own (the request_contact button's)."""
        card = contact(phone, self.user_id if owner == -1 else owner)
        assert self.post(message_update(self.user_id, self.language, **card)).status_code == 200
        return self.replies()


def text_of(replies: list[dict[str, Any]]) -> str:
    """The text of the single reply."""
    assert len(replies) == 1, replies
    return replies[0]["text"]


def buttons(message: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The rows of buttons of a sent message or webhook answer (reply_markup may arrive as JSON text)."""
    markup = message.get("reply_markup") or {}
    if isinstance(markup, str):
        markup = json.loads(markup)
    return markup.get("inline_keyboard") or markup.get("keyboard") or []
