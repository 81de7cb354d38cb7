"""Operator commands: `flask --app wsgi <command>` (each channel adds its own, e.g. set-webhook).

Commands that only read or write Redis take the store (REDIS_URL and POLL_FILE are all they
need); audit, audit-verify and the channels' commands take the runtime (every setting). A missing
setting, a bad poll file or an unreachable Redis ends a command with one line, not a traceback.
"""

from __future__ import annotations

import copy
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from flask import Flask
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from webhook.core.errors import ConfigError, PollFileError, UnknownPoll
from webhook.core.ledger import recount
from webhook.core.polls import Poll, PollStatus
from webhook.core.results import poll_results
from webhook.operator import accounts, audit, exports
from webhook.runtime import Store, runtime, store
from webhook.store.durable import NotReplicated

T = TypeVar("T")
poll_option = click.option("--poll", "poll_id", default=None, help="Poll id (default: the current poll).")


def _poll(rt: Store, poll_id: str | None) -> Poll:
    """The named poll, or the current one; a clear error for an unknown id."""
    if poll_id is None:
        return rt.polls.current(time.time())
    try:
        return rt.polls.get(poll_id)
    except UnknownPoll:
        raise click.BadParameter(f"no poll {poll_id!r}", param_hint="--poll") from None


def _set_status(rt: Store, poll: Poll, status: PollStatus | None) -> None:
    """Open, close or hand back a poll; a clear error when the replicas did not confirm it."""
    try:
        rt.ballot_box.set_status(poll, status)
    except NotReplicated as exc:
        raise click.ClickException(
            f"{exc}: the primary has the change, but a failover now could undo it; run the command again"
        ) from None


@click.command("results")
@poll_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def results_command(poll_id: str | None, as_json: bool) -> None:
    """Print a poll's live counts."""
    rt = store()
    res = poll_results(rt.ballot_box, _poll(rt, poll_id))
    if as_json:
        click.echo(json.dumps(res, indent=2, ensure_ascii=False))
        return
    click.echo(f"{res['poll']} ({res['status']}): {res['question']}")
    for option in res["options"]:
        share = 100 * option["votes"] / res["total"] if res["total"] else 0.0
        click.echo(f"  {option['label']:<30} {option['votes']:>10}  {share:5.1f}%")
    click.echo(f"  {'total':<30} {res['total']:>10}")


@click.command("recount")
@poll_option
def recount_command(poll_id: str | None) -> None:
    """Recount the stored ballots and compare them with the counters; exit 1 on a mismatch."""
    rt = store()
    result = recount(rt.redis, _poll(rt, poll_id))
    click.echo(f"poll {result.poll_id}")
    for option_id, votes in result.recounted.items():
        mark = "" if votes == result.counters.get(option_id, 0) else "  MISMATCH"
        click.echo(
            f"  {option_id:<20} ballots {votes:>10}  counter {result.counters.get(option_id, 0):>10}{mark}"
        )
    click.echo(f"  voters claimed {result.voters_claimed}, votes still queued {result.votes_pending}")
    if result.accounts_claimed is not None:
        click.echo(f"  accounts claimed with their numbers {result.accounts_claimed}")
    if not result.matches:
        raise click.ClickException("recount does not match the counters")
    click.echo("recount matches the counters")


@click.command("open-poll")
@click.argument("poll_id")
def open_poll_command(poll_id: str) -> None:
    """Open a poll now, whatever its schedule says."""
    rt = store()
    _set_status(rt, _poll(rt, poll_id), PollStatus.OPEN)
    click.echo(f"poll {poll_id} is open")


@click.command("close-poll")
@click.argument("poll_id")
def close_poll_command(poll_id: str) -> None:
    """Close a poll now: no vote is counted after this."""
    rt = store()
    _set_status(rt, _poll(rt, poll_id), PollStatus.CLOSED)
    click.echo(f"poll {poll_id} is closed")


@click.command("follow-schedule")
@click.argument("poll_id")
def follow_schedule_command(poll_id: str) -> None:
    """Drop an operator's open/close of a poll: its schedule decides again."""
    rt = store()
    poll = _poll(rt, poll_id)
    _set_status(rt, poll, None)
    click.echo(f"poll {poll_id} follows its schedule: {rt.ballot_box.status(poll).value}")


@click.command("replay-dead")
def replay_dead_command() -> None:
    """Send every dead-lettered reply again."""
    click.echo(f"replayed {store().outbox.replay_dead()} replies")


@click.command("export")
@click.argument("what", type=click.Choice(exports.KINDS))
@poll_option
@click.option("--format", "fmt", type=click.Choice(exports.FORMATS), default="csv", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="File (default: stdout).")
def export_command(what: str, poll_id: str | None, fmt: str, output: Path | None) -> None:
    """Export a poll's results, its anonymous ballot ledger, or the receipt codes of its ballots."""
    rt = store()
    poll = _poll(rt, poll_id)
    rows = exports.rows_of(rt, poll, what)
    body, _ = exports.render(rows, fmt)
    if output is None:
        click.echo(body, nl=False)
        return
    with output.open("w", encoding="utf-8", newline="") as file:
        file.write(body)
    click.echo(f"wrote {len(rows)} {what} rows of poll {poll.id} to {output}", err=True)


@click.command("audit")
@poll_option
def audit_command(poll_id: str | None) -> None:
    """Recount the ledger against counters and voters; print a signed summary; exit 1 on a mismatch."""
    rt = runtime()
    summary = audit.audit_summary(rt, _poll(rt, poll_id))
    click.echo(json.dumps(audit.signed_document(summary, audit.audit_key(rt.config)), indent=2))
    if not summary["matches"]:
        raise click.ClickException("audit FAILED: the ledger does not match the counters or the voters")
    click.echo("audit passed: ledger, counters and voters agree", err=True)


@click.command("audit-verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def audit_verify_command(file: Path) -> None:
    """Check the signature of a saved audit summary; exit 1 if it was altered."""
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{file} is not a JSON audit summary: {exc}") from None
    if not audit.verify_document(document, audit.audit_key(runtime().config)):
        raise click.ClickException(f"{file}: signature does NOT match: the summary was altered or not ours")
    click.echo(
        f"signature valid: audit of poll {document.get('poll')} at {document.get('time')}, "
        f"matches={json.dumps(document.get('matches'))}"
    )


@click.group("operator")
def operator_group() -> None:
    """Operator accounts: each operator logs in and calls the API with a token of their own."""


@operator_group.command("add")
@click.argument("name")
def operator_add_command(name: str) -> None:
    """Create an account and print its token, once (only its scrypt hash is stored)."""
    first = not accounts.has_accounts(store().redis)
    token = _account_change(lambda: accounts.add(store().redis, name))
    click.echo(token)
    click.echo(f"operator {name!r} added; the token above is shown only this once", err=True)
    if first:
        click.echo("the first account: OPERATOR_TOKEN (operator 'bootstrap') no longer logs in", err=True)


@operator_group.command("remove")
@click.argument("name")
def operator_remove_command(name: str) -> None:
    """Delete an account: its token stops working and its logins end now."""
    ended = _account_change(lambda: accounts.remove(store().redis, name))
    click.echo(f"operator {name!r} removed; {ended} login(s) ended")


@operator_group.command("rotate")
@click.argument("name")
def operator_rotate_command(name: str) -> None:
    """Give an account a new token (printed once); the old one and its logins end now."""
    click.echo(_account_change(lambda: accounts.rotate(store().redis, name)))
    click.echo(f"operator {name!r} has a new token (above, shown only this once)", err=True)


@operator_group.command("list")
def operator_list_command() -> None:
    """List the accounts (names and dates; never a token or hash)."""
    rows = accounts.listing(store().redis)
    if not rows:
        click.echo("no operator accounts: OPERATOR_TOKEN logs in as 'bootstrap'")
    for row in rows:
        changed = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(row["changed"] or 0))
        click.echo(f"{row['name']:<40}  id {row['id']}  token set {changed}")


def _account_change(change: Callable[[], T]) -> T:
    """Run an account command, turning a refusal into a clear error (exit 1)."""
    try:
        return change()
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from None


def init_app(app: Flask) -> None:
    """Register the commands, then make every command of the app (channels' too) fail in one line."""
    for command in (
        operator_group,
        results_command,
        recount_command,
        open_poll_command,
        close_poll_command,
        follow_schedule_command,
        replay_dead_command,
        export_command,
        audit_command,
        audit_verify_command,
    ):
        app.cli.add_command(command)
    for name, command in list(app.cli.commands.items()):
        app.cli.commands[name] = _one_line_errors(command)


SETTINGS_HINT = "(commands read the environment, then .env: make run writes one for its local stack)"


def _one_line_errors(command: click.Command) -> click.Command:
    """A copy of a command whose missing setting, bad poll file or unreachable Redis is one line."""
    callback = command.callback
    if callback is None:
        return command

    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        """Run the command; the service's own errors and Redis's absence become click errors."""
        try:
            return callback(*args, **kwargs)
        except ConfigError as exc:
            raise click.ClickException(f"{exc} {SETTINGS_HINT}") from None
        except PollFileError as exc:
            raise click.ClickException(str(exc)) from None
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise click.ClickException(f"Redis is unreachable at REDIS_URL: {exc}") from None

    wrapped = copy.copy(command)
    wrapped.callback = run
    return wrapped
