"""What a reply needs to know when it is sent (not when it was queued): status, counts, a receipt."""

from __future__ import annotations

from dataclasses import dataclass

from webhook.core.ballot_box import BallotBox
from webhook.core.identity import parse_receipt
from webhook.core.ledger import receipt_counted
from webhook.core.outbox import ReplyKind
from webhook.core.polls import Poll, PollStatus


@dataclass(frozen=True)
class Facts:
    """What the sender looked up for a reply: the poll's status, counts, a receipt check."""

    status: PollStatus | None = None
    counts: dict[str, int] | None = None
    receipt_found: bool | None = None


def look_up(ballot_box: BallotBox, poll: Poll, kind: ReplyKind, receipt: str | None) -> Facts:
    """The facts a reply of this kind shows, read now."""
    if kind in (ReplyKind.RESULTS, ReplyKind.CLOSED):
        status = ballot_box.status(poll)
        counts = ballot_box.counts(poll) if poll.results_visible(status) else None
        return Facts(status=status, counts=counts)
    if kind is ReplyKind.CHECK:
        number = parse_receipt(receipt or "")
        found = None if number is None else receipt_counted(ballot_box.redis, poll, number)
        return Facts(receipt_found=found)
    return Facts()
