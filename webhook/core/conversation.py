"""The voter conversation, the same for every channel: what a tap, a contact or a text does.

A channel turns its callback into a Message (who wrote, which poll it answers, what it carries)
and hands it over; the conversation casts the vote or binds the number in one atomic Redis step
and queues the reply it deserves, which the send worker delivers through the same channel.
"""

from __future__ import annotations

from dataclasses import dataclass

from webhook.core.ballot_box import BallotBox, CastOutcome
from webhook.core.i18n import language_of
from webhook.core.identity import IdentityKind, canonical_receipt, voter_key
from webhook.core.outbox import Outbox, ReplyKind, ReplyLimits
from webhook.core.phone_gate import PhoneGate, Turned
from webhook.core.phones import SharedContact
from webhook.core.polls import Poll, PollBook, PollStatus
from webhook.core.refusals import REPLY_FOR_REFUSAL
from webhook.core.sealing import ReceiverSeal
from webhook.store import keys
from webhook.store.streams import ReplyEntry, VoteEntry

RESULTS_WORDS = frozenset({"results", "результаты", "вынікі", "/results"})
CHECK_WORDS = frozenset({"check", "проверить", "праверыць", "/check"})
MAX_COMMAND_CHARS = 64
REPLY_FOR_OUTCOME = {
    CastOutcome.DUPLICATE: ReplyKind.ALREADY_VOTED,
    CastOutcome.CLOSED: ReplyKind.CLOSED,
    CastOutcome.NOT_OPEN: ReplyKind.NOT_OPEN,
}


@dataclass(frozen=True)
class Sender:
    """Who wrote, as their messenger describes them."""

    id: str
    """The messenger's id of the voter: sealed before it reaches Redis, hashed as their identity."""
    language: str
    """The messenger's language tag ("be-BY"); the bot answers in the nearest language it speaks."""
    can_share_phone: bool = True
    """False for a client that cannot share its number (Viber Desktop, old versions)."""


@dataclass(frozen=True)
class Message:
    """One callback from a voter, in channel-free terms."""

    sender: Sender
    token: int
    """The channel's id of this callback, the same when it is delivered again (dedupe)."""
    poll_id: str | None = None
    """The poll the message answers (Viber's tracking data, a Telegram button's data), if known."""
    text: str | None = None
    option: str | None = None
    """An option id the voter tapped (channels whose buttons carry it apart from text)."""
    contact: SharedContact | None = None


@dataclass(frozen=True)
class Handled:
    """What a message did: a vote's outcome, the reply it got."""

    vote: CastOutcome | None = None
    reply: ReplyKind | None = None


@dataclass(frozen=True)
class Welcome:
    """What the voter who opens the bot is shown: the poll, its status, whether a number is needed."""

    poll: Poll
    status: PollStatus
    language: str
    needs_phone: bool


@dataclass(frozen=True)
class Command:
    """A recognised text command and, for a check, the receipt code."""

    kind: ReplyKind
    receipt: str | None = None
    """The code in its printed form ("7K2QX-M9D4T"), or "" if what followed the word is not one."""


def parse_command(text: str | None) -> Command | None:
    """The command a text is, or None (a vote, or something else)."""
    if text is None or len(text) > MAX_COMMAND_CHARS:
        return None
    words = text.strip().split(maxsplit=1)
    if not words:
        return None
    first = words[0].casefold()
    if first in RESULTS_WORDS and len(words) == 1:
        return Command(ReplyKind.RESULTS)
    if first in CHECK_WORDS:
        return Command(ReplyKind.CHECK, canonical_receipt(words[1]) if len(words) > 1 else "")
    return None


class Conversation:
    """One channel's side of the conversation with voters, on the shared ballot box and outbox."""

    def __init__(
        self,
        channel: str,
        *,
        secret: str,
        polls: PollBook,
        ballot_box: BallotBox,
        outbox: Outbox,
        seal: ReceiverSeal,
        limits: ReplyLimits,
    ) -> None:
        """A conversation for one channel ("viber", "telegram")."""
        self.channel = channel
        self.identity = IdentityKind(channel)
        self.secret, self.polls, self.seal, self.limits = secret, polls, seal, limits
        self.ballot_box, self.outbox = ballot_box, outbox
        self.phone_gate = PhoneGate(channel, secret=secret, polls=polls, ballot_box=ballot_box)

    def account(self, sender: Sender) -> bytes:
        """The keyed hash that stands for a messenger account."""
        return voter_key(self.secret, self.identity, sender.id)

    def welcome(self, sender: Sender, now: float, poll_id: str | None = None) -> Welcome:
        """What to show a voter who opens the bot (the named poll, else the current one)."""
        poll = self.polls.find(poll_id) or self.polls.current(now)
        needs_phone = (
            poll.require_phone and self.ballot_box.phone_of(self.channel, self.account(sender)) is None
        )
        status = self.ballot_box.status(poll, now)
        return Welcome(poll, status, language_of(sender.language), needs_phone)

    def receive(self, message: Message, now: float) -> Handled:
        """Cast the vote a message names, bind the number it shares, or queue the reply it deserves."""
        poll = self.polls.find(message.poll_id) or self.polls.current(now)
        account = self.account(message.sender)
        if message.contact is not None:
            if message.poll_id is None:  # a contact that names no poll is for the open phone poll
                poll = self.phone_gate.open_phone_poll(now) or poll
            return self._contact(poll, account, message)
        command = parse_command(message.text)
        if command is not None:
            return self._reply(poll, account, message, command.kind, receipt=command.receipt)
        voter, claimed_account = account, None
        if poll.require_phone:
            phone = self.phone_gate.voter(poll, account, message.sender.can_share_phone)
            if isinstance(phone, Turned):
                return self._turned(poll, account, message, phone)
            voter, claimed_account = phone, account
        option = self._option(poll, message)
        if option is None:
            return self._reply(poll, account, message, ReplyKind.HELP)
        vote = VoteEntry(
            poll=poll.id,
            voter=voter,
            option=option,
            receiver=self.seal.seal(message.sender.id),
            language=language_of(message.sender.language),
            accepted_at=int(now),
            channel=self.channel,
        )
        outcome = self.ballot_box.cast(poll, vote, message_token=message.token, account=claimed_account)
        if outcome in REPLY_FOR_OUTCOME:
            return self._reply(poll, account, message, REPLY_FOR_OUTCOME[outcome], vote=outcome)
        return Handled(vote=outcome)

    def _option(self, poll: Poll, message: Message) -> int | None:
        """The index of the option a message chooses: a tapped option id, else its text."""
        if message.option is not None:
            return next((i for i, o in enumerate(poll.options) if o.id == message.option), None)
        return poll.option_index(message.text) if message.text is not None else None

    def _contact(self, poll: Poll, account: bytes, message: Message) -> Handled:
        """Bind a shared number (as a keyed hash) to the account for good, or say why not."""
        if not poll.require_phone or message.contact is None:
            return self._reply(poll, account, message, ReplyKind.HELP)
        refusal = self.phone_gate.bind(poll, account, message.contact)
        if refusal is None:
            return self._reply(poll, account, message, ReplyKind.PHONE_OK)
        return self._turned(poll, account, message, Turned(REPLY_FOR_REFUSAL[refusal], refusal))

    def _turned(self, poll: Poll, account: bytes, message: Message, turned: Turned) -> Handled:
        """Reply why the voter cannot vote (yet); a refused number is counted by its reason."""
        count = keys.refused_contact_stat(self.channel, turned.refusal.value) if turned.refusal else ""
        return self._reply(poll, account, message, turned.reply, count=count)

    def _reply(
        self,
        poll: Poll,
        account: bytes,
        message: Message,
        kind: ReplyKind,
        *,
        receipt: str | None = None,
        count: str = "",
        vote: CastOutcome | None = None,
    ) -> Handled:
        """Queue a reply of this kind to the message's sender (once per callback, within the rate limit)."""
        entry = ReplyEntry(
            channel=self.channel,
            kind=kind.value,
            receiver=self.seal.seal(message.sender.id),
            poll=poll.id,
            language=language_of(message.sender.language),
            receipt=receipt,
        )
        self.outbox.queue_reply(entry, voter=account, token=message.token, limits=self.limits, count=count)
        return Handled(vote=vote, reply=kind)
