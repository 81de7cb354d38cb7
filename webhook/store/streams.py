"""The entries of the pipeline's streams, each format defined once.

The Lua scripts write entries field by field from pairs these classes build (`pairs()`), and the
workers read them back with `parse()`: no script spells a field name. Entries queued by a version
before this one used one- and two-letter names (`k` was the voter in one stream and the reply kind
in the other); `parse()` still reads them, so nothing queued across an upgrade is lost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

DEFAULT_CHANNEL = "viber"
"""The channel of an entry queued before entries named one (only Viber existed)."""
RETRY_FIELDS = ("id", "why")
"""Extra fields of a reply parked for a retry or dead-lettered: its stream id, why it failed."""


class BadEntry(ValueError):
    """A stream entry that lacks a field or holds a value of the wrong kind."""


def _text(fields: dict[bytes, bytes], name: str, legacy: str | None, default: str | None = None) -> str:
    """A text field by its name, or by the name an older version gave it."""
    raw = fields.get(name.encode())
    if raw is None and legacy is not None:
        raw = fields.get(legacy.encode())
    if raw is None:
        if default is None:
            raise BadEntry(f"entry has no {name!r}")
        return default
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise BadEntry(f"entry's {name!r} is not text") from None


def _flatten(items: dict[str, str | bytes | int]) -> list[str | bytes | int]:
    """Field/value pairs as one flat list, the shape XADD takes them in."""
    return [item for pair in items.items() for item in pair]


@dataclass(frozen=True)
class VoteEntry:
    """An accepted vote waiting in vv:votes for the tally worker (written by cast.lua)."""

    poll: str
    voter: bytes
    """The keyed hash the ballot is stored under (the account, or in a phone poll the number)."""
    option: int
    receiver: str
    """The voter's messenger id, sealed: where the confirmation goes."""
    language: str
    accepted_at: int
    """Unix seconds."""
    channel: str

    def pairs(self) -> list[str | bytes | int]:
        """The entry as XADD field/value pairs."""
        return _flatten(
            {
                "poll": self.poll,
                "voter": self.voter,
                "option": self.option,
                "receiver": self.receiver,
                "language": self.language,
                "accepted_at": self.accepted_at,
                "channel": self.channel,
            }
        )

    @classmethod
    def parse(cls, fields: dict[bytes, bytes]) -> VoteEntry:
        """Read an entry as the stream holds it; BadEntry if it is not one."""
        voter = fields.get(b"voter", fields.get(b"k"))
        if voter is None:
            raise BadEntry("entry has no 'voter'")
        try:
            option = int(_text(fields, "option", "o"))
            accepted_at = int(_text(fields, "accepted_at", "t"))
        except ValueError as exc:
            raise BadEntry(str(exc)) from None
        return cls(
            poll=_text(fields, "poll", "p"),
            voter=voter,
            option=option,
            receiver=_text(fields, "receiver", "to"),
            language=_text(fields, "language", "l", "en"),
            accepted_at=accepted_at,
            channel=_text(fields, "channel", None, DEFAULT_CHANNEL),
        )


@dataclass(frozen=True)
class ReplyEntry:
    """A reply waiting in vv:outbox (or parked in vv:outbox:retry / vv:outbox:dead as JSON)."""

    channel: str
    kind: str
    """A ReplyKind value."""
    receiver: str
    """The voter's messenger id, sealed."""
    poll: str
    language: str
    attempts: int = 0
    receipt: str | None = None
    option: str | None = None
    """The option id a confirmation names."""

    ATTEMPTS: ClassVar[str] = "attempts"
    """The field replay_dead.lua resets (older entries: "n")."""

    def fields(self) -> dict[str, str]:
        """The entry's fields as text, the optional ones only when set."""
        items = {
            "channel": self.channel,
            "kind": self.kind,
            "receiver": self.receiver,
            "poll": self.poll,
            "language": self.language,
            self.ATTEMPTS: str(self.attempts),
        }
        if self.receipt is not None:
            items["receipt"] = self.receipt
        if self.option is not None:
            items["option"] = self.option
        return items

    def pairs(self) -> list[str | bytes | int]:
        """The entry as XADD field/value pairs."""
        return _flatten(dict(self.fields()))

    def parked(self, stream_id: str, why: str) -> str:
        """The JSON a retry or dead letter holds: the fields, the stream id and the failure."""
        return json.dumps({**self.fields(), "id": stream_id, "why": why}, sort_keys=True)

    @classmethod
    def parse(cls, fields: dict[bytes, bytes]) -> ReplyEntry:
        """Read an entry as the stream holds it; BadEntry if it is not one."""
        try:
            attempts = int(_text(fields, cls.ATTEMPTS, "n", "0"))
        except ValueError:
            raise BadEntry("entry's attempts is not a number") from None
        receipt = fields.get(b"receipt", fields.get(b"r"))
        option = fields.get(b"option", fields.get(b"o"))
        return cls(
            channel=_text(fields, "channel", None, DEFAULT_CHANNEL),
            kind=_text(fields, "kind", "k"),
            receiver=_text(fields, "receiver", "to"),
            poll=_text(fields, "poll", "p"),
            language=_text(fields, "language", "l", "en"),
            attempts=attempts,
            receipt=receipt.decode(errors="replace") if receipt is not None else None,
            option=option.decode(errors="replace") if option is not None else None,
        )
