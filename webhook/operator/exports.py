"""Operator exports: results, the anonymous ballot ledger and the receipt list, as CSV or JSON.

A receipt code is never exported next to an option: the ballot ledger has only an option and
the minute it was accepted (sorted, so the order reveals nothing about voters), and the
receipt list has only codes (sorted), so a voter can check that their ballot was counted
without anyone learning how they voted.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from redis import Redis

from webhook.core.identity import receipt_code
from webhook.core.ledger import unpack_ballot
from webhook.core.polls import Poll
from webhook.runtime import Store
from webhook.store import keys

KINDS = ("results", "ballots", "receipts")
FORMATS = ("csv", "json")
MIMETYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}
RESULTS_COLUMNS = ("poll", "option", "label", "votes", "share")
BALLOT_COLUMNS = ("option", "minute")
RECEIPT_COLUMN = "receipt"
SCAN_BATCH = 1000
"""Ballot buckets asked for per SCAN call, and read per pipeline round trip."""
SHARE_DIGITS = 6


def results_rows(rt: Store, poll: Poll) -> list[dict[str, Any]]:
    """One row per option: poll id, option id, label, votes, and share of the total (0..1)."""
    counts = rt.ballot_box.counts(poll)
    total = sum(counts.values())
    return [
        {
            "poll": poll.id,
            "option": option.id,
            "label": option.label,
            "votes": counts[option.id],
            "share": round(counts[option.id] / total, SHARE_DIGITS) if total else 0.0,
        }
        for option in poll.options
    ]


def ballot_rows(redis: Redis, poll: Poll) -> list[dict[str, str]]:
    """Every stored ballot as its option id and UTC minute, sorted by minute then option."""
    values: Counter[int] = Counter()
    for _, fields in _buckets(redis, poll, "hvals"):
        values.update(int(value) for value in fields)
    cells = [(*_ballot_cells(poll, value), n) for value, n in values.items()]
    rows: list[dict[str, str]] = []
    for minute, option, n in sorted(cells):
        rows.extend({"option": option, "minute": minute} for _ in range(n))
    return rows


def receipt_codes(redis: Redis, poll: Poll) -> list[str]:
    """The sorted receipt codes of every counted ballot of a poll."""
    codes = [
        receipt_code(bytes.fromhex(bucket_hex) + stored_field)
        for bucket_hex, fields in _buckets(redis, poll, "hkeys")
        for stored_field in fields
    ]
    return sorted(codes)


def rows_of(rt: Store, poll: Poll, kind: str) -> list[dict[str, Any]] | list[str]:
    """The rows of one kind of export (one of KINDS)."""
    if kind == "results":
        return results_rows(rt, poll)
    if kind == "ballots":
        return ballot_rows(rt.redis, poll)
    if kind == "receipts":
        return receipt_codes(rt.redis, poll)
    raise ValueError(f"unknown export {kind!r}; use one of {KINDS}")


def render(rows: list[dict[str, Any]] | list[str], fmt: str) -> tuple[str, str]:
    """(body, mimetype) of rows as CSV or JSON; a list of receipt codes is one CSV column."""
    if fmt == "json":
        return json.dumps(rows, ensure_ascii=False, indent=1) + "\n", MIMETYPES["json"]
    if fmt != "csv":
        raise ValueError(f"unknown export format {fmt!r}; use one of {FORMATS}")
    out = io.StringIO()
    if rows and isinstance(rows[0], str):
        writer = csv.writer(out)
        writer.writerow([RECEIPT_COLUMN])
        writer.writerows([code] for code in rows)
    elif rows:
        dict_writer = csv.DictWriter(out, fieldnames=list(rows[0]))  # type: ignore[arg-type]
        dict_writer.writeheader()
        dict_writer.writerows(rows)  # type: ignore[arg-type]
    return out.getvalue(), MIMETYPES["csv"]


def _ballot_cells(poll: Poll, value: int) -> tuple[str, str]:
    """(ISO 8601 UTC minute, option id) of a stored ballot value."""
    index, accepted_at = unpack_ballot(value)
    option = poll.options[index].id if index < len(poll.options) else f"#{index}"
    minute = datetime.fromtimestamp(accepted_at, UTC).strftime("%Y-%m-%dT%H:%MZ")
    return minute, option


def _buckets(redis: Redis, poll: Poll, command: str) -> Iterator[tuple[str, list[bytes]]]:
    """(bucket hex, HVALS or HKEYS reply) of every ballot bucket, a pipeline per SCAN batch."""
    prefix_chars = len(keys.ballots_bucket(poll.id, ""))
    seen: set[bytes] = set()
    cursor = 0
    while True:
        cursor, found = redis.scan(cursor, match=keys.ballots_pattern(poll.id), count=SCAN_BATCH)
        fresh = [key for key in found if key not in seen]  # SCAN may return a key twice
        seen.update(fresh)
        if fresh:
            pipe = redis.pipeline(transaction=False)
            for key in fresh:
                getattr(pipe, command)(key)
            for key, reply in zip(fresh, pipe.execute(), strict=True):
                yield key[prefix_chars:].decode(), reply
        if cursor == 0:
            return
