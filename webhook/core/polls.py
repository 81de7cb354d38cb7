"""Polls: their definition file, options and schedule."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from webhook.core.errors import PollFileError, UnknownPoll
from webhook.core.phones import regions_of_country_codes

ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
MAX_OPTIONS = 24
"""Keyboard rows Viber shows comfortably; ballots pack the option index in 6 bits."""
MAX_LABEL_CHARS = 60
MAX_QUESTION_CHARS = 1000
LANGUAGES = ("en", "ru", "be")
"""Languages the bot speaks; English is the fallback."""
COUNTRY_CODE = re.compile(r"^[1-9][0-9]{0,3}$")
REGION = re.compile(r"^[A-Z]{2}$")
"""ISO 3166-1 alpha-2, as messengers report an account's country ("BY")."""


class PollStatus(StrEnum):
    """Where a poll is in its life."""

    NOT_OPEN = "not_open"
    OPEN = "open"
    CLOSED = "closed"


class ResultsVisibility(StrEnum):
    """When a voter may ask the bot for a poll's results."""

    LIVE = "live"
    AFTER_CLOSE = "after_close"
    HIDDEN = "hidden"


@dataclass(frozen=True)
class Option:
    """One answer a voter can choose."""

    id: str
    label: str
    labels: dict[str, str] = field(default_factory=dict, compare=False)

    def label_in(self, language: str) -> str:
        """The option's label in a language, else in English."""
        return self.labels.get(language, self.label)


@dataclass(frozen=True)
class Poll:
    """A question, its options and its schedule."""

    id: str
    question: str
    options: tuple[Option, ...]
    opens_at: float | None = None
    closes_at: float | None = None
    questions: dict[str, str] = field(default_factory=dict, compare=False)
    require_phone: bool = False
    allowed_country_codes: tuple[str, ...] = ()
    allowed_countries: tuple[str, ...] = ()
    """Two-letter countries whose numbers may vote (given, or derived from the calling codes)."""
    proven_numbers_only: bool = False
    """Only numbers the messenger proves are the sender's own vote (Telegram's; not Viber's)."""
    results: ResultsVisibility = ResultsVisibility.AFTER_CLOSE

    def question_in(self, language: str) -> str:
        """The question in a language, else in English."""
        return self.questions.get(language, self.question)

    def results_visible(self, status: PollStatus) -> bool:
        """Whether voters may see the results while the poll has this status."""
        if self.results is ResultsVisibility.LIVE:
            return True
        return self.results is ResultsVisibility.AFTER_CLOSE and status is PollStatus.CLOSED

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
            names = {option.id, option.label.casefold(), *(v.casefold() for v in option.labels.values())}
            if wanted in names:
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
    question, questions = _translated(raw, "question", where, MAX_QUESTION_CHARS)
    raw_options = raw.get("options")
    if not isinstance(raw_options, list) or not 2 <= len(raw_options) <= MAX_OPTIONS:
        raise PollFileError(f"{where}: needs 2 to {MAX_OPTIONS} [[polls.options]]")
    options = tuple(_parse_option(o, where) for o in raw_options)
    if len({o.id for o in options}) != len(options):
        raise PollFileError(f"{where}: option ids repeat")
    opens_at, closes_at = _time(raw, "opens_at", where), _time(raw, "closes_at", where)
    if opens_at is not None and closes_at is not None and closes_at <= opens_at:
        raise PollFileError(f"{where}: closes_at must be after opens_at")
    require_phone = raw.get("require_phone", False)
    proven_only = raw.get("proven_numbers_only", False)
    if not isinstance(require_phone, bool) or not isinstance(proven_only, bool):
        raise PollFileError(f"{where}: require_phone and proven_numbers_only must be true or false")
    if proven_only and not require_phone:
        raise PollFileError(f"{where}: proven_numbers_only needs require_phone = true")
    codes = raw.get("allowed_country_codes", [])
    if not isinstance(codes, list) or not all(isinstance(c, str) and COUNTRY_CODE.match(c) for c in codes):
        raise PollFileError(f'{where}: allowed_country_codes must be a list of codes like "375"')
    countries = raw.get("allowed_countries")
    if countries is None:
        countries = list(regions_of_country_codes(tuple(codes)))
    if not isinstance(countries, list) or not all(isinstance(c, str) and REGION.match(c) for c in countries):
        raise PollFileError(f'{where}: allowed_countries must be a list of two-letter countries like "BY"')
    if codes and not set(countries) <= set(regions_of_country_codes(tuple(codes))):
        raise PollFileError(f"{where}: allowed_countries lie outside allowed_country_codes")
    try:
        results = ResultsVisibility(raw.get("results", ResultsVisibility.AFTER_CLOSE.value))
    except ValueError:
        raise PollFileError(f"{where}: results must be live, after_close or hidden") from None
    return Poll(
        poll_id,
        question,
        options,
        opens_at,
        closes_at,
        questions=questions,
        require_phone=require_phone,
        allowed_country_codes=tuple(codes),
        allowed_countries=tuple(countries),
        proven_numbers_only=proven_only,
        results=results,
    )


def _parse_option(raw: object, where: str) -> Option:
    """Validate one option table."""
    if not isinstance(raw, dict):
        raise PollFileError(f"{where}: an option must be a table")
    option_id = _text(raw, "id", where, "id")
    if not ID_PATTERN.match(option_id):
        raise PollFileError(f"{where}: option id {option_id!r} must match {ID_PATTERN.pattern}")
    label, labels = _translated(raw, "label", where, MAX_LABEL_CHARS)
    return Option(option_id, label, labels)


def _text(raw: dict, key: str, where: object, what: str) -> str:
    """A required non-empty string field."""
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise PollFileError(f"{where}: '{key}' must be a non-empty string ({what})")
    return value.strip()


def _translated(raw: dict, key: str, where: str, max_chars: int) -> tuple[str, dict[str, str]]:
    """A text given as a string, or as a table of languages that includes English."""
    value = raw.get(key)
    texts = value if isinstance(value, dict) else {"en": value}
    for language, text in texts.items():
        if language not in LANGUAGES:
            raise PollFileError(f"{where}: '{key}' has language {language!r}; use one of {LANGUAGES}")
        if not isinstance(text, str) or not text.strip():
            raise PollFileError(f"{where}: '{key}' must be a non-empty string (or one per language)")
        if len(text) > max_chars:
            raise PollFileError(f"{where}: '{key}' longer than {max_chars} characters")
    if "en" not in texts:
        raise PollFileError(f"{where}: '{key}' needs an English text (en)")
    cleaned = {language: text.strip() for language, text in texts.items()}
    return cleaned["en"], cleaned


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
