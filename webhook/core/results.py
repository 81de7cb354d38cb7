"""A poll's results in the shape the API and the CLI show."""

from __future__ import annotations

from typing import Any

from webhook.core.ballot_box import BallotBox
from webhook.core.polls import Poll


def poll_results(ballot_box: BallotBox, poll: Poll) -> dict[str, Any]:
    """Question, status, total and per-option votes of a poll."""
    counts = ballot_box.counts(poll)
    return {
        "poll": poll.id,
        "question": poll.question,
        "status": ballot_box.status(poll).value,
        "total": sum(counts.values()),
        "options": [{"id": o.id, "label": o.label, "votes": counts[o.id]} for o in poll.options],
    }
