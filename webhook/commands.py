"""Text commands a voter can send besides a vote: results, and checking a receipt."""

from __future__ import annotations

from dataclasses import dataclass

from webhook.outbox import ReplyKind

RESULTS_WORDS = frozenset({"results", "результаты", "вынікі"})
CHECK_WORDS = frozenset({"check", "проверить", "праверыць"})
MAX_COMMAND_CHARS = 64


@dataclass(frozen=True)
class Command:
    """A recognised command and, for a check, the receipt code as typed."""

    kind: ReplyKind
    receipt: str | None = None


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
        return Command(ReplyKind.CHECK, words[1].strip() if len(words) > 1 else "")
    return None
