"""What the bot says: every message, in the voter's language, built with viberbot's types."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from viberbot.api.messages.text_message import TextMessage

from webhook.i18n import translator
from webhook.outbox import ReplyKind
from webhook.polls import Poll, PollStatus

KEYBOARD_BG_COLOR = "#FFFFFF"
BUTTON_BG_COLOR = "#7360F2"
SHARE_PHONE_MIN_API_VERSION = 3
"""Viber clients older than this cannot send a share-phone button's contact."""


def N_(text: str) -> str:
    """Mark a text for the catalogues (pybabel's N_ keyword); it is translated where it is used."""
    return text


REFUSAL_TEXTS = {
    ReplyKind.PHONE_INVALID: N_(
        "That is not a valid mobile phone number. Tap “Share my phone number” to share your own."
    ),
    ReplyKind.PHONE_COUNTRY_MISMATCH: N_(
        "This number is not the one your account is registered with, so it cannot vote here. "
        "Tap “Share my phone number” to share your own number."
    ),
    ReplyKind.PHONE_NOT_OWN: N_(
        "That contact is not your own number. Tap “Share my phone number” to share your own."
    ),
    ReplyKind.PHONE_OTHER_NUMBER: N_(
        "This account is already verified with another number. "
        "Each account can vote with one number only; the first one it shared counts."
    ),
    ReplyKind.PHONE_BOUND_ELSEWHERE: N_(
        "This number is already verified with another account. A number can vote only once."
    ),
}
"""Why a shared contact was refused, by reply kind (the voter is always told, never ignored)."""


@dataclass(frozen=True)
class Facts:
    """What the sender looked up for a reply: the poll's status, counts, a receipt check."""

    status: PollStatus | None = None
    counts: dict[str, int] | None = None
    receipt_found: bool | None = None


def keyboard(poll: Poll, language: str) -> dict[str, Any]:
    """One full-width reply button per option; a tap sends the option id back as text."""
    buttons = [_button("reply", option.id, option.label_in(language)) for option in poll.options]
    return {"Type": "keyboard", "DefaultHeight": False, "BgColor": KEYBOARD_BG_COLOR, "Buttons": buttons}


def phone_keyboard(language: str) -> dict[str, Any]:
    """A single share-phone button (Viber sends the voter's own number back as a contact)."""
    _ = translator(language)
    button = _button("share-phone", "phone", _("Share my phone number"))
    return {"Type": "keyboard", "DefaultHeight": False, "BgColor": KEYBOARD_BG_COLOR, "Buttons": [button]}


def welcome(
    poll: Poll, status: PollStatus, bot_name: str, language: str, *, needs_phone: bool = False
) -> dict[str, Any]:
    """The welcome returned in the response to conversation_started."""
    _ = translator(language)
    question = poll.question_in(language)
    if status is not PollStatus.OPEN:
        return _payload(poll, f"{question}\n\n{_status_text(poll, status, language)}", bot_name)
    if needs_phone:
        return _phone_request(poll, f"{question}\n\n{_ask_phone_text(language)}", bot_name, language)
    text = f"{question}\n\n" + _("Tap one answer below. Each person can vote once.")
    return _payload(poll, text, bot_name, keyboard(poll, language))


def reply(poll: Poll, kind: ReplyKind, entry: dict[str, str], bot_name: str, facts: Facts) -> dict[str, Any]:
    """The message for an outbox entry, without its receiver."""
    language = entry.get("l", "en")
    _ = translator(language)
    question = poll.question_in(language)
    receipt = entry.get("r", "")
    if kind is ReplyKind.CONFIRM:
        option = next((o for o in poll.options if o.id == entry.get("o")), None)
        label = option.label_in(language) if option else "?"
        text = _(
            "Thank you: your vote ({label}) is counted.\n"
            "Your receipt code: {receipt}\n"
            "Send “check {receipt}” at any time to see that your vote is in the count. "
            "The code does not show your choice."
        ).format(label=label, receipt=receipt)
        return _payload(poll, text, bot_name)
    if kind is ReplyKind.ALREADY_VOTED:
        return _payload(poll, _("You have already voted in this poll. Each person votes once."), bot_name)
    if kind in (ReplyKind.CLOSED, ReplyKind.NOT_OPEN):
        status = PollStatus.CLOSED if kind is ReplyKind.CLOSED else PollStatus.NOT_OPEN
        text = _status_text(poll, status, language)
        if status is PollStatus.CLOSED and facts.counts is not None and poll.results_visible(status):
            text += "\n\n" + _results_text(poll, facts.counts, status, language)
        return _payload(poll, text, bot_name)
    if kind is ReplyKind.RESULTS:
        status = facts.status or PollStatus.OPEN
        if facts.counts is None or not poll.results_visible(status):
            return _payload(poll, _hidden_results_text(poll, language), bot_name)
        return _payload(poll, _results_text(poll, facts.counts, status, language), bot_name)
    if kind is ReplyKind.CHECK:
        return _payload(poll, _check_text(receipt, facts.receipt_found, language), bot_name)
    if kind is ReplyKind.ASK_PHONE:
        return _phone_request(poll, _ask_phone_text(language), bot_name, language)
    if kind is ReplyKind.PHONE_OK:
        text = _("Thank you, your number is verified. Now choose your answer:") + f"\n\n{question}"
        return _payload(poll, text, bot_name, keyboard(poll, language))
    if kind is ReplyKind.PHONE_REFUSED:
        text = _("Sorry: only phone numbers of the countries this vote is for can take part.")
        return _payload(poll, text, bot_name)
    if kind is ReplyKind.PHONE_OTHER_NUMBER:  # the first number still votes: offer the options
        return _payload(poll, _(REFUSAL_TEXTS[kind]), bot_name, keyboard(poll, language))
    if kind in REFUSAL_TEXTS:  # the voter may still share their own number
        return _phone_request(poll, _(REFUSAL_TEXTS[kind]), bot_name, language)
    if kind is ReplyKind.PHONE_DESKTOP:
        text = _(
            "Viber on a computer cannot share a phone number. "
            "Please open this bot in Viber on your phone to vote."
        )
        return _payload(poll, text, bot_name)
    text = f"{question}\n\n" + _(
        "To vote, tap one of the buttons below. "
        "Send “results” to see the results, or “check” and your receipt code to check your vote."
    )
    return _payload(poll, text, bot_name, keyboard(poll, language))


def _status_text(poll: Poll, status: PollStatus, language: str) -> str:
    """Why a voter cannot vote now."""
    _ = translator(language)
    if status is PollStatus.CLOSED:
        return _("Voting has closed. No more votes are counted.")
    if poll.opens_at is not None:
        when = datetime.fromtimestamp(poll.opens_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        return _("Voting has not opened yet. It opens on {when}.").format(when=when)
    return _("Voting has not opened yet.")


def _results_text(poll: Poll, counts: dict[str, int], status: PollStatus, language: str) -> str:
    """The counts, one line per option."""
    _ = translator(language)
    total = sum(counts.values())
    heading = _("Final results:") if status is PollStatus.CLOSED else _("Results so far:")
    lines = []
    for option in poll.options:
        votes = counts.get(option.id, 0)
        share = 100 * votes / total if total else 0.0
        lines.append(f"{option.label_in(language)}: {votes} ({share:.1f}%)")
    return "\n".join([heading, *lines, _("Total: {total}").format(total=total)])


def _hidden_results_text(poll: Poll, language: str) -> str:
    """Why the bot does not show results now."""
    _ = translator(language)
    if poll.results.value == "hidden":
        return _("The bot does not publish the results of this poll.")
    return _("The results will be shown when voting has closed.")


def _check_text(receipt: str, found: bool | None, language: str) -> str:
    """The answer to `check CODE`; it never reveals the choice."""
    _ = translator(language)
    if found is None:
        return _("That is not a receipt code. A receipt code looks like 7K2QX-M9D4T.")
    if found:
        return _("Receipt {receipt} is in the count.").format(receipt=receipt)
    return _(
        "Receipt {receipt} is not in the count. If you voted only a moment ago, try again in a minute."
    ).format(receipt=receipt)


def _ask_phone_text(language: str) -> str:
    """Why the bot needs the voter's phone number."""
    _ = translator(language)
    return _(
        "This vote counts one vote per phone number. Tap “Share my phone number” below. "
        "The number is only used to make sure each person votes once; it is never stored."
    )


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


def _phone_request(poll: Poll, text: str, bot_name: str, language: str) -> dict[str, Any]:
    """A message whose keyboard asks for the voter's phone number."""
    payload = _payload(poll, text, bot_name, phone_keyboard(language))
    payload["min_api_version"] = SHARE_PHONE_MIN_API_VERSION
    return payload


def _payload(poll: Poll, text: str, bot_name: str, keys: dict[str, Any] | None = None) -> dict[str, Any]:
    """A send_message body without its receiver; tracking data names the poll."""
    message = TextMessage(text=text, keyboard=keys, tracking_data=poll.id)
    return {"sender": {"name": bot_name}, **message.to_dict()}
