"""Polls: their definition file, options and schedule."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from webhook.errors import PollFileError, UnknownPoll

ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
MAX_OPTIONS = 24
"""Keyboard rows Viber shows comfortably; ballots pack the option index in 6 bits."""
MAX_LABEL_CHARS = 60
MAX_QUESTION_CHARS = 1000


class PollStatus(StrEnum):
    """Where a poll is in its life."""

    NOT_OPEN = "not_open"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True)
class Option:
    """One answer a voter can choose."""

    id: str
    label: str


@dataclass(frozen=True)
class Poll:
    """A question, its options and its schedule."""

    id: str
    question: str
    options: tuple[Option, ...]
    opens_at: float | None = None
    closes_at: float | None = None

    def scheduled_status(self, now: float) -> PollStatus:
        """Status by the schedule alone (an operator's open/close overrides it)."""
        if self.opens_at is not None and now < self.opens_at:
            return PollStatus.NOT_OPEN
        if self.closes_at is not None and now >= self.closes_at:
            return PollStatus.CLOSED
        return PollStatus.OPEN

    def option_index(self, text: str) -> int | None:
        """Index of the option a voter's text names (its id or label), or None."""
        wanted = text.strip().casefold()
        for index, option in enumerate(self.options):
            if wanted in (option.id, option.label.casefold()):
                return index
        return None


@dataclass(frozen=True)
class PollBook:
    """All polls from the poll file, in file order."""

    polls: tuple[Poll, ...]

    def get(self, poll_id: str) -> Poll:
        """Return the poll with this id or raise UnknownPoll."""
        for poll in self.polls:
            if poll.id == poll_id:
                return poll
        raise UnknownPoll(poll_id)

    def find(self, poll_id: str | None) -> Poll | None:
        """Return the poll with this id, or None."""
        return next((p for p in self.polls if p.id == poll_id), None)

    def current(self, now: float) -> Poll:
        """The poll a voter without context means: the first open by schedule, else the first."""
        for poll in self.polls:
            if poll.scheduled_status(now) is PollStatus.OPEN:
                return poll
        return self.polls[0]


def load_polls(path: str | Path) -> PollBook:
    """Read and validate the poll file."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PollFileError(f"cannot read poll file {path}: {exc}") from None
    raw_polls = data.get("polls")
    if not isinstance(raw_polls, list) or not raw_polls:
        raise PollFileError(f"{path}: no [[polls]] defined")
    polls = tuple(_parse_poll(raw, path) for raw in raw_polls)
    ids = [p.id for p in polls]
    if len(set(ids)) != len(ids):
        raise PollFileError(f"{path}: poll ids repeat: {ids}")
    return PollBook(polls)


def _parse_poll(raw: object, path: str | Path) -> Poll:
    """Validate one [[polls]] table."""
    if not isinstance(raw, dict):
        raise PollFileError(f"{path}: a poll must be a table")
    poll_id = _text(raw, "id", path, ID_PATTERN.pattern)
    if not ID_PATTERN.match(poll_id):
        raise PollFileError(f"{path}: poll id {poll_id!r} must match {ID_PATTERN.pattern}")
    where = f"{path}: poll {poll_id}"
    question = _text(raw, "question", where, "text")
    if len(question) > MAX_QUESTION_CHARS:
        raise PollFileError(f"{where}: question longer than {MAX_QUESTION_CHARS} characters")
    raw_options = raw.get("options")
    if not isinstance(raw_options, list) or not 2 <= len(raw_options) <= MAX_OPTIONS:
        raise PollFileError(f"{where}: needs 2 to {MAX_OPTIONS} [[polls.options]]")
    options = tuple(_parse_option(o, where) for o in raw_options)
    if len({o.id for o in options}) != len(options):
        raise PollFileError(f"{where}: option ids repeat")
    opens_at, closes_at = _time(raw, "opens_at", where), _time(raw, "closes_at", where)
    if opens_at is not None and closes_at is not None and closes_at <= opens_at:
        raise PollFileError(f"{where}: closes_at must be after opens_at")
    return Poll(poll_id, question, options, opens_at, closes_at)


def _parse_option(raw: object, where: str) -> Option:
    """Validate one option table."""
    if not isinstance(raw, dict):
        raise PollFileError(f"{where}: an option must be a table")
    option_id = _text(raw, "id", where, "id")
    if not ID_PATTERN.match(option_id):
        raise PollFileError(f"{where}: option id {option_id!r} must match {ID_PATTERN.pattern}")
    label = _text(raw, "label", where, "text")
    if len(label) > MAX_LABEL_CHARS:
        raise PollFileError(f"{where}: option label longer than {MAX_LABEL_CHARS} characters")
    return Option(option_id, label)


def _text(raw: dict, key: str, where: object, what: str) -> str:
    """A required non-empty string field."""
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise PollFileError(f"{where}: '{key}' must be a non-empty string ({what})")
    return value.strip()


def _time(raw: dict, key: str, where: str) -> float | None:
    """An optional RFC 3339 time with offset, as a Unix timestamp."""
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise PollFileError(f"{where}: '{key}' is not an RFC 3339 time") from None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise PollFileError(f"{where}: '{key}' needs a date, a time and a UTC offset")
    return value.timestamp()
