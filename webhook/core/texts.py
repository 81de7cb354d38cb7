"""What the bot says, in the voter's language, for every channel: a text and which keyboard goes with it.

A channel renders a ReplyContent as its own message (Viber: a keyboard message; Telegram: inline
buttons or a contact-request button). The wording lives here, once, in the gettext catalogues.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from webhook.core.facts import Facts
from webhook.core.i18n import translator
from webhook.core.outbox import ReplyKind
from webhook.core.polls import Poll, PollStatus
from webhook.core.refusals import REFUSAL_TEXTS


class Keyboard(StrEnum):
    """Which buttons a message carries."""

    NONE = "none"
    OPTIONS = "options"
    """One button per option of the poll."""
    SHARE_PHONE = "share_phone"
    """One button that shares the voter's own phone number."""


@dataclass(frozen=True)
class ReplyContent:
    """A message to a voter, before any channel shapes it."""

    poll: Poll
    language: str
    text: str
    keyboard: Keyboard = Keyboard.NONE


def share_phone_label(language: str) -> str:
    """The share-phone button's label."""
    return translator(language)("Share my phone number")


def welcome(poll: Poll, status: PollStatus, language: str, *, needs_phone: bool = False) -> ReplyContent:
    """The message a voter gets when they open the bot."""
    _ = translator(language)
    question = poll.question_in(language)
    if status is not PollStatus.OPEN:
        return ReplyContent(poll, language, f"{question}\n\n{_status_text(poll, status, language)}")
    if needs_phone:
        return ReplyContent(
            poll, language, f"{question}\n\n{_ask_phone_text(language)}", Keyboard.SHARE_PHONE
        )
    text = f"{question}\n\n" + _("Tap one answer below. Each person can vote once.")
    return ReplyContent(poll, language, text, Keyboard.OPTIONS)


def reply(
    poll: Poll, kind: ReplyKind, language: str, facts: Facts, *, receipt: str = "", option: str | None = None
) -> ReplyContent:
    """The message for a queued reply of this kind."""
    _ = translator(language)

    def say(text: str, keyboard: Keyboard = Keyboard.NONE) -> ReplyContent:
        return ReplyContent(poll, language, text, keyboard)

    if kind is ReplyKind.CONFIRM:
        chosen = next((o for o in poll.options if o.id == option), None)
        label = chosen.label_in(language) if chosen else "?"
        return say(
            _(
                "Thank you: your vote ({label}) is counted.\n"
                "Your receipt code: {receipt}\n"
                "Send “check {receipt}” at any time to see that your vote is in the count. "
                "The code does not show your choice."
            ).format(label=label, receipt=receipt)
        )
    if kind is ReplyKind.ALREADY_VOTED:
        return say(_("You have already voted in this poll. Each person votes once."))
    if kind in (ReplyKind.CLOSED, ReplyKind.NOT_OPEN):
        status = PollStatus.CLOSED if kind is ReplyKind.CLOSED else PollStatus.NOT_OPEN
        text = _status_text(poll, status, language)
        if status is PollStatus.CLOSED and facts.counts is not None and poll.results_visible(status):
            text += "\n\n" + _results_text(poll, facts.counts, status, language)
        return say(text)
    if kind is ReplyKind.RESULTS:
        status = facts.status or PollStatus.OPEN
        if facts.counts is None or not poll.results_visible(status):
            return say(_hidden_results_text(poll, language))
        return say(_results_text(poll, facts.counts, status, language))
    if kind is ReplyKind.CHECK:
        return say(_check_text(receipt, facts.receipt_found, language))
    if kind is ReplyKind.ASK_PHONE:
        return say(_ask_phone_text(language), Keyboard.SHARE_PHONE)
    if kind is ReplyKind.PHONE_OK:
        question = poll.question_in(language)
        return say(
            _("Thank you, your number is verified. Now choose your answer:") + f"\n\n{question}",
            Keyboard.OPTIONS,
        )
    if kind is ReplyKind.PHONE_REFUSED:
        return say(_("Sorry: only phone numbers of the countries this vote is for can take part."))
    if kind is ReplyKind.PHONE_UNPROVEN:  # sharing again cannot help: no keyboard
        return say(_(REFUSAL_TEXTS[kind]))
    if kind is ReplyKind.PHONE_OTHER_NUMBER:  # the first number still votes: offer the options
        return say(_(REFUSAL_TEXTS[kind]), Keyboard.OPTIONS)
    if kind in REFUSAL_TEXTS:  # the voter may still share their own number
        return say(_(REFUSAL_TEXTS[kind]), Keyboard.SHARE_PHONE)
    if kind is ReplyKind.PHONE_DESKTOP:
        return say(
            _(
                "Viber on a computer cannot share a phone number. "
                "Please open this bot in Viber on your phone to vote."
            )
        )
    text = f"{poll.question_in(language)}\n\n" + _(
        "To vote, tap one of the buttons below. "
        "Send “results” to see the results, or “check” and your receipt code to check your vote."
    )
    return say(text, Keyboard.OPTIONS)


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
