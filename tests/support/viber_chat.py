"""One Viber voter talking to the app in-process; replies come back through the fake Viber API."""

from __future__ import annotations

from typing import Any

from tests.conftest import post_callback
from tests.support.viber_callbacks import contact_message, conversation_started, message_event
from workers import sender, tally


class Chat:
    """A voter's conversation: each send posts a callback, drains the workers, returns the new replies."""

    def __init__(
        self,
        client: Any,
        rt: Any,
        fake_viber: Any,
        senders: Any,
        user_id: str,
        language: str = "en",
        api_version: int = 10,
        country: str = "BY",
    ) -> None:
        """A chat of one Viber user (id, language, client version, account country)."""
        self.client, self.rt, self.fake, self.senders = client, rt, fake_viber, senders
        self.user_id, self.language, self.api_version = user_id, language, api_version
        self.country = country
        self.seen = 0

    def open(self) -> dict[str, Any]:
        """Open the bot; returns the welcome."""
        event = conversation_started(self.user_id)
        event["user"]["language"] = self.language
        response = post_callback(self.client, event)
        assert response.status_code == 200
        return response.json

    def event(self, text: str | None = None, *, poll: str = "main", **message: Any) -> dict[str, Any]:
        """The callback a text (or another message type) from this voter would be."""
        event = message_event(self.user_id, text or "", language=self.language, tracking_data=poll)
        event["sender"]["api_version"] = self.api_version
        event["sender"]["country"] = self.country
        if message:
            event["message"] = {"tracking_data": poll, **message}
        return event

    def post(self, event: dict[str, Any]) -> None:
        """Post a callback (acknowledged with 200) without draining the workers."""
        assert post_callback(self.client, event).status_code == 200

    def replies(self) -> list[dict[str, Any]]:
        """Drain the tally and send workers; the replies to this voter not returned before."""
        tally.drain(self.rt, "test")
        sender.drain(self.rt, self.senders, "test")
        replies = self.fake.messages_to(self.user_id)
        new, self.seen = replies[self.seen :], len(replies)
        return new

    def send(self, text: str | None = None, *, poll: str = "main", **message: Any) -> list[dict[str, Any]]:
        """Send a text (or another message type) and return the bot's new replies."""
        self.post(self.event(text, poll=poll, **message))
        return self.replies()

    def share_phone(self, number: str, poll: str = "phone") -> list[dict[str, Any]]:
        """Tap the share-phone button (or send a card): Viber sends a contact message with the number."""
        return self.send(poll=poll, **contact_message(number))


def only_text(replies: list[dict[str, Any]]) -> str:
    """The text of the single reply."""
    assert len(replies) == 1, replies
    return replies[0]["text"]
