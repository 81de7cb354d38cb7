"""The phone gate of a phone poll: which number a shared contact binds, and whether a bound number votes.

A binding is for good and for every poll, so what a poll asks of a number (its countries; that the
messenger proved the number is the sender's own) is checked twice: when the contact binds, to
answer at once, and when a vote is cast, because the number may have been bound under another poll.
"""

from __future__ import annotations

from dataclasses import dataclass

from webhook.core.ballot_box import BallotBox, Binding, BindOutcome, Proof
from webhook.core.identity import IdentityKind, voter_key
from webhook.core.outbox import ReplyKind
from webhook.core.phones import ContactRefusal, SharedContact, judge_contact
from webhook.core.polls import Poll, PollBook, PollStatus
from webhook.core.refusals import REPLY_FOR_REFUSAL


@dataclass(frozen=True)
class Turned:
    """Why a voter of a phone poll cannot vote (yet): the reply, and the refusal to count, if any."""

    reply: ReplyKind
    refusal: ContactRefusal | None = None


class PhoneGate:
    """One channel's bindings between its accounts and numbers, and what polls ask of them."""

    def __init__(self, channel: str, *, secret: str, polls: PollBook, ballot_box: BallotBox) -> None:
        """The gate of one channel ("viber", "telegram")."""
        self.channel, self.secret, self.polls, self.ballot_box = channel, secret, polls, ballot_box

    def open_phone_poll(self, now: float) -> Poll | None:
        """The first phone poll open now (an operator's override counts), for a contact naming no poll."""
        for poll in self.polls.polls:
            if poll.require_phone and self.ballot_box.status(poll, now) is PollStatus.OPEN:
                return poll
        return None

    def bind(self, poll: Poll, account: bytes, contact: SharedContact) -> ContactRefusal | None:
        """None if the number is now (or already was) this account's, else why it is refused."""
        judged = judge_contact(contact, poll.allowed_countries)
        if isinstance(judged, ContactRefusal):
            return judged
        if poll.proven_numbers_only and contact.own_contact is not True:
            return ContactRefusal.UNPROVEN_NUMBER
        proof = Proof.OWNER if contact.own_contact else Proof.COUNTRY
        binding = Binding(voter_key(self.secret, IdentityKind.PHONE, judged.e164), judged.region, proof)
        outcome = self.ballot_box.bind_phone(self.channel, account, binding)
        if outcome is BindOutcome.OTHER_NUMBER:
            return ContactRefusal.OTHER_NUMBER
        if outcome is BindOutcome.BOUND_ELSEWHERE:
            return ContactRefusal.BOUND_ELSEWHERE
        return None

    def voter(self, poll: Poll, account: bytes, can_share_phone: bool) -> bytes | Turned:
        """The number (keyed hash) an account votes with in this phone poll, or why it cannot."""
        binding = self.ballot_box.phone_of(self.channel, account)
        if binding is None or (poll.allowed_countries and binding.region is None):
            # No number yet, or one an older version bound without its country: share it (again).
            return Turned(ReplyKind.ASK_PHONE if can_share_phone else ReplyKind.PHONE_DESKTOP)
        if poll.allowed_countries and binding.region not in poll.allowed_countries:
            return _refused(ContactRefusal.COUNTRY_NOT_ALLOWED)
        if poll.proven_numbers_only and binding.proof is not Proof.OWNER:
            return _refused(ContactRefusal.UNPROVEN_NUMBER)
        return binding.phone


def _refused(refusal: ContactRefusal) -> Turned:
    """A refusal, with the reply that explains it."""
    return Turned(REPLY_FOR_REFUSAL[refusal], refusal)
