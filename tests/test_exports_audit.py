"""Exports (results, anonymous ballot ledger, receipts) and the signed audit, against the real Redis."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis

from tests.conftest import VOTER_ID_SECRET, message_event, next_token, post_callback
from webhook import create_app
from webhook.config import Config
from webhook.core.errors import ConfigError
from webhook.core.identity import IdentityKind, parse_receipt, receipt_code, voter_key
from webhook.core.ledger import receipt_counted
from webhook.operator import audit, exports
from webhook.runtime import Runtime
from webhook.store import keys
from webhook.store.streams import VoteEntry
from workers import tally

ROOT = Path(__file__).resolve().parent.parent
VOTES = {"ex-ann": "yes", "ex-bob": "yes", "ex-cat": "no", "ex-dan": "abstain", "ex-eve": "yes"}
OPTIONS = ("yes", "no", "abstain")


def invoke(app: Flask, *args: str) -> Result:
    """Run a CLI command the way `flask --app wsgi ...` does (with the app context pushed)."""
    with app.app_context():
        return app.test_cli_runner().invoke(args=list(args))


def vote(client: FlaskClient, user: str, text: str, poll_id: str = "main") -> None:
    """Send one signed vote message through the webhook."""
    assert post_callback(client, message_event(user, text, tracking_data=poll_id)).status_code == 200


def cast_votes(client: FlaskClient, rt: Runtime, votes: dict[str, str] = VOTES) -> None:
    """Vote through the webhook and tally every vote."""
    for user, text in votes.items():
        vote(client, user, text)
    assert tally.drain(rt, "t") == len(votes)


def viber_key(user: str) -> bytes:
    """The voter key the service derives for a Viber user id."""
    return voter_key(VOTER_ID_SECRET, IdentityKind.VIBER, user)


def parse_csv(body: str) -> list[dict[str, str]]:
    """Rows of a CSV export."""
    return list(csv.DictReader(io.StringIO(body)))


def as_text(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Rows with every value as CSV writes it."""
    return [{k: str(v) for k, v in row.items()} for row in rows]


# --- exports --------------------------------------------------------------------------------


def test_results_rows_and_both_formats_round_trip(client: FlaskClient, rt: Runtime) -> None:
    """Results rows carry every option's votes and share; CSV and JSON parse back to them."""
    cast_votes(client, rt)
    rows = exports.results_rows(rt, rt.polls.get("main"))
    assert rows == [
        {"poll": "main", "option": "yes", "label": "Yes", "votes": 3, "share": 0.6},
        {"poll": "main", "option": "no", "label": "No", "votes": 1, "share": 0.2},
        {"poll": "main", "option": "abstain", "label": "Abstain", "votes": 1, "share": 0.2},
    ]
    body, mimetype = exports.render(rows, "json")
    assert mimetype == "application/json"
    assert json.loads(body) == rows
    body, mimetype = exports.render(rows, "csv")
    assert mimetype.startswith("text/csv")
    assert body.splitlines()[0] == "poll,option,label,votes,share"
    assert parse_csv(body) == as_text(rows)
    with pytest.raises(ValueError, match="xml"):
        exports.render(rows, "xml")


def test_results_rows_of_an_empty_poll_have_zero_shares(rt: Runtime, redis: Redis) -> None:
    """A poll nobody voted in exports zero votes and zero shares, not a division error."""
    rows = exports.results_rows(rt, rt.polls.get("future"))
    assert [(r["option"], r["votes"], r["share"]) for r in rows] == [("a", 0, 0.0), ("b", 0, 0.0)]


def test_ballot_ledger_counts_equal_counters_sorted_by_minute(client: FlaskClient, rt: Runtime) -> None:
    """Each ballot is an option and a UTC minute; per option they equal the counters; sorted."""
    poll = rt.polls.get("main")
    now = time.time()
    earlier = {"ex-old-1": (2, now - 7200), "ex-old-2": (0, now - 3600), "ex-old-3": (1, now - 7200)}
    for user, (index, at) in earlier.items():
        earlier_vote = VoteEntry(poll.id, viber_key(user), index, rt.seal.seal(user), "en", int(at), "viber")
        outcome = rt.ballot_box.cast(poll, earlier_vote, message_token=next_token())
        assert outcome.value == "accepted"
    for user, text in VOTES.items():
        vote(client, user, text)
    assert tally.drain(rt, "t") == len(VOTES) + len(earlier)
    rows = exports.ballot_rows(rt.redis, poll)
    assert len(rows) == len(VOTES) + len(earlier)
    assert all(set(row) == {"option", "minute"} for row in rows)
    per_option = {o: sum(1 for r in rows if r["option"] == o) for o in OPTIONS}
    assert per_option == rt.ballot_box.counts(poll) == {"yes": 4, "no": 2, "abstain": 2}
    assert rows == sorted(rows, key=lambda r: (r["minute"], r["option"]))
    assert [r["option"] for r in rows[:2]] == ["abstain", "no"]  # the two cast two hours ago
    minutes = {datetime.fromisoformat(r["minute"]) for r in rows}
    assert all(m.tzinfo is not None and m.utcoffset().total_seconds() == 0 for m in minutes)  # type: ignore[union-attr]
    expected = {int(at) // 60 * 60 for _, at in earlier.values()}
    assert {int(m.timestamp()) for m in minutes} >= expected
    assert rows[0]["minute"] == datetime.fromtimestamp(int(now - 7200) // 60 * 60, UTC).strftime(
        "%Y-%m-%dT%H:%MZ"
    )
    for fmt, parse in (("csv", parse_csv), ("json", json.loads)):
        body, _ = exports.render(rows, fmt)
        assert parse(body) == rows


def test_receipts_hold_a_known_voters_code_sorted(client: FlaskClient, rt: Runtime) -> None:
    """The receipt list has one code per counted ballot, sorted, each found by the ledger."""
    cast_votes(client, rt)
    poll = rt.polls.get("main")
    codes = exports.receipt_codes(rt.redis, poll)
    assert codes == sorted(codes)
    assert sorted(receipt_code(viber_key(user)) for user in VOTES) == codes
    assert receipt_code(viber_key("ex-cat")) in codes
    assert all(receipt_counted(rt.redis, poll, parse_receipt(code) or -1) for code in codes)
    body, mimetype = exports.render(codes, "csv")
    assert mimetype.startswith("text/csv")
    assert parse_csv(body) == [{"receipt": code} for code in codes]
    assert json.loads(exports.render(codes, "json")[0]) == codes
    assert exports.receipt_codes(rt.redis, rt.polls.get("past")) == []


def test_no_export_row_pairs_a_receipt_with_an_option(client: FlaskClient, rt: Runtime) -> None:
    """Whatever the export and format, no row holds both a receipt code and an option."""
    cast_votes(client, rt)
    poll = rt.polls.get("main")
    codes = set(exports.receipt_codes(rt.redis, poll))
    assert len(codes) == len(VOTES)
    exported = (
        exports.results_rows(rt, poll),
        exports.ballot_rows(rt.redis, poll),
        exports.receipt_codes(rt.redis, poll),
    )
    checked = 0
    for rows in exported:
        for fmt, parse in (("csv", parse_csv), ("json", json.loads)):
            parsed = parse(exports.render(rows, fmt)[0])
            for row in parsed:
                values = {str(v) for v in (row.values() if isinstance(row, dict) else [row])}
                assert not (values & codes and values & set(OPTIONS)), row
                checked += 1
    assert checked == 2 * (len(OPTIONS) + 2 * len(VOTES))


def test_export_command_writes_files(app: Flask, client: FlaskClient, rt: Runtime, tmp_path: Path) -> None:
    """`export results|ballots|receipts --format --output` writes what the functions return."""
    cast_votes(client, rt)
    poll = rt.polls.get("main")
    results_file, ballots_file = tmp_path / "results.json", tmp_path / "ballots.csv"
    done = invoke(
        app, "export", "results", "--poll", "main", "--format", "json", "--output", str(results_file)
    )
    assert done.exit_code == 0, done.output
    assert json.loads(results_file.read_text()) == exports.results_rows(rt, poll)
    done = invoke(app, "export", "ballots", "--output", str(ballots_file))
    assert done.exit_code == 0, done.output
    assert f"wrote {len(VOTES)} ballots rows" in done.stderr
    assert ballots_file.read_bytes().startswith(b"option,minute\r\n")
    with ballots_file.open(newline="") as file:
        assert parse_csv(file.read()) == exports.ballot_rows(rt.redis, poll)
    printed = invoke(app, "export", "receipts")
    assert printed.exit_code == 0, printed.output
    assert parse_csv(printed.stdout) == [{"receipt": c} for c in exports.receipt_codes(rt.redis, poll)]
    assert invoke(app, "export", "receipts", "--format", "xml").exit_code == 2
    assert invoke(app, "export", "voters").exit_code == 2
    assert invoke(app, "export", "results", "--poll", "nope").exit_code == 2


# --- audit ----------------------------------------------------------------------------------


def audit_document(result: Result) -> dict[str, Any]:
    """The signed summary `audit` printed."""
    return json.loads(result.stdout)


def test_audit_passes_on_a_clean_run_with_a_vote_still_queued(
    app: Flask, client: FlaskClient, rt: Runtime
) -> None:
    """Counters, recount, ballots and voters agree; a queued vote counts as pending, not missing."""
    cast_votes(client, rt)
    vote(client, "ex-late", "no")
    result = invoke(app, "audit", "--poll", "main")
    assert result.exit_code == 0, result.output
    document = audit_document(result)
    expected = {"yes": 3, "no": 1, "abstain": 1}
    assert {k: document[k] for k in ("poll", "counters", "recount", "ballots", "voters", "pending")} == {
        "poll": "main",
        "counters": expected,
        "recount": expected,
        "ballots": 5,
        "voters": 5,
        "pending": 1,
    }
    assert document["matches"] is True
    stamped = datetime.fromisoformat(document["time"])
    assert abs(stamped.timestamp() - time.time()) < 60


def test_audit_detects_a_tampered_counter(app: Flask, client: FlaskClient, rt: Runtime, redis: Redis) -> None:
    """A counter raised by hand makes the audit fail with exit 1 and matches=false."""
    cast_votes(client, rt)
    redis.hincrby(keys.counts("main"), "no", 1)
    result = invoke(app, "audit")
    assert result.exit_code == 1, result.output
    document = audit_document(result)
    assert document["matches"] is False
    assert document["counters"]["no"] == 2 and document["recount"]["no"] == 1
    assert "audit FAILED" in result.stderr


def test_audit_detects_a_deleted_ballot(app: Flask, client: FlaskClient, rt: Runtime, redis: Redis) -> None:
    """A ballot removed from the ledger makes the recount and the voters disagree."""
    cast_votes(client, rt)
    key = viber_key("ex-bob")
    assert redis.hdel(keys.ballots("main", key), keys.field(key)) == 1
    result = invoke(app, "audit")
    assert result.exit_code == 1, result.output
    document = audit_document(result)
    assert (document["ballots"], document["voters"], document["recount"]["yes"]) == (4, 5, 2)
    assert document["matches"] is False


def test_audit_detects_a_stuffed_ballot_with_matching_counter(
    client: FlaskClient, rt: Runtime, redis: Redis
) -> None:
    """A ballot added with its counter, but without a voter's claim, still fails the audit."""
    cast_votes(client, rt)
    fake = viber_key("ex-nobody")
    redis.hset(keys.ballots("main", fake), keys.field(fake), 0)
    redis.hincrby(keys.counts("main"), "yes", 1)
    summary = audit.audit_summary(rt, rt.polls.get("main"), attempts=1)
    assert summary["counters"] == summary["recount"]
    assert (summary["ballots"], summary["voters"], summary["matches"]) == (6, 5, False)


def test_signature_is_hmac_of_canonical_json_with_derived_key(config: Config, rt: Runtime) -> None:
    """Unset AUDIT_SECRET: the key is HMAC(VOTER_ID_SECRET, "audit-summary"); JSON sorted, no spaces."""
    assert config.audit_secret is None
    key = audit.audit_key(config)
    assert key == hmac.new(VOTER_ID_SECRET.encode(), b"audit-summary", hashlib.sha256).digest()
    summary = audit.audit_summary(rt, rt.polls.get("main"))
    text = json.dumps(summary, sort_keys=True, separators=(",", ":"))
    assert " " not in text.replace(summary["time"], "")
    signature = audit.sign_summary(summary, key)
    assert signature == hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
    assert audit.verify_summary(summary, signature, key)
    assert not audit.verify_summary({**summary, "ballots": 1}, signature, key)
    assert not audit.verify_summary(summary, signature, b"another key")
    assert not audit.verify_summary(summary, "é" * 64, key)


def test_audit_secret_is_used_when_set(environ: dict[str, str]) -> None:
    """AUDIT_SECRET signs summaries when set, and must be long enough."""
    config = Config.from_environ({**environ, "AUDIT_SECRET": "audit-secret-0123456789-test"})
    assert audit.audit_key(config) == b"audit-secret-0123456789-test"
    with pytest.raises(ConfigError, match="AUDIT_SECRET"):
        Config.from_environ({**environ, "AUDIT_SECRET": "short"})


def test_saved_summary_verifies_and_a_tampered_one_fails(
    app: Flask, client: FlaskClient, rt: Runtime, environ: dict[str, str], tmp_path: Path
) -> None:
    """`audit-verify` accepts the file `audit` printed and rejects any change or another key."""
    cast_votes(client, rt)
    saved = tmp_path / "audit.json"
    result = invoke(app, "audit")
    assert result.exit_code == 0, result.output
    saved.write_text(result.stdout)
    verified = invoke(app, "audit-verify", str(saved))
    assert verified.exit_code == 0, verified.output
    assert "signature valid" in verified.stdout and "matches=true" in verified.stdout
    document = audit_document(result)
    tampered = {
        "counter": {**document, "counters": {**document["counters"], "no": 7}},
        "verdict": {**document, "matches": False},
        "unsigned": {k: v for k, v in document.items() if k != "signature"},
    }
    for name, changed in tampered.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(changed))
        failed = invoke(app, "audit-verify", str(path))
        assert failed.exit_code == 1, (name, failed.output)
        assert "does NOT match" in failed.stderr
    garbage = tmp_path / "garbage.json"
    garbage.write_text("not json {")
    assert invoke(app, "audit-verify", str(garbage)).exit_code == 1
    other = create_app({**environ, "AUDIT_SECRET": "another-audit-secret-0123"})
    assert invoke(other, "audit-verify", str(saved)).exit_code == 1


def test_flask_audit_command_in_a_real_process(
    client: FlaskClient, rt: Runtime, environ: dict[str, str], tmp_path: Path
) -> None:
    """`flask --app wsgi audit > FILE` then `audit-verify FILE`, as an operator runs them."""
    cast_votes(client, rt)
    env = {**os.environ, **environ}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    saved = tmp_path / "audit.json"
    with saved.open("w") as out:
        done = subprocess.run(
            [*flask, "audit"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.PIPE, timeout=60
        )
    assert done.returncode == 0, done.stderr
    assert json.loads(saved.read_text())["ballots"] == len(VOTES)
    document = json.loads(saved.read_text())
    assert audit.verify_document(document, audit.audit_key(rt.config))
