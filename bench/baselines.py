"""The apps the benchmark measures the service against, each run under the same gunicorn settings.

- floor_app: the framework floor, a Flask endpoint that answers 200 and does nothing else;
  `gunicorn bench.baselines:floor_app`.
- create_naive_app(): the naive design, one RQ job per vote (`naive_count_vote`) run by RQ's
  default forking worker; `gunicorn 'bench.baselines:create_naive_app()'` and
  `rq worker naive -c bench.baselines` (the -c import preloads this module, so a forked
  work horse does not import Flask and the service again for every job).
- create_sync_reply_app(): viberbot's sample-bot style, the reply POSTed to Viber inside the
  webhook request before answering; `gunicorn 'bench.baselines:create_sync_reply_app()'`.
- create_minimal_app(variant): the minimal vote path, what a vote cannot do without (read the body,
  check its HMAC in constant time, json.loads, one keyed hash of the sender, one Lua call that claims
  the voter with HSETNX and appends the vote with XADD, answer 200), and the same stripped further
  to locate the unavoidable cost: "no-stream" (HSETNX only), "no-redis" (no Redis call);
  `gunicorn 'bench.baselines:create_minimal_app("full")'`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

from flask import Flask, Response, jsonify, request
from redis import Redis
from rq import Queue, get_current_job

from webhook.channels.viber import signature
from webhook.channels.viber.client import ViberClient
from webhook.channels.viber.events import MessageEvent, parse_callback
from webhook.config import Config
from webhook.core.errors import BadCallback
from webhook.core.identity import IdentityKind, receipt_code, voter_key
from webhook.core.ledger import pack_ballot
from webhook.core.polls import PollBook, load_polls
from webhook.store import keys
from webhook.store.connection import connect

NAIVE_QUEUE = "naive"
NAIVE_JOB = "bench.baselines.naive_count_vote"
SYNC_REPLY = "Thank you: your vote ({option}) is counted.\nYour receipt code: {receipt}"
SYNC_POOL_SIZE = 8
"""Keep-alive connections to Viber per web process (a sync worker uses one at a time)."""

floor_app = Flask(__name__)


@floor_app.post("/viber/webhook")
def floor_webhook() -> tuple[str, int, dict[str, str]]:
    """Answer 200 without reading the callback: what Flask and gunicorn cost by themselves."""
    return "{}", 200, {"Content-Type": "application/json"}


@floor_app.get("/healthz")
def floor_healthz() -> tuple[str, int]:
    """The process is up."""
    return "ok", 200


MINIMAL_CLAIM = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
if ARGV[4] == '1' then redis.call('XADD', KEYS[2], '*', 'v', ARGV[1], 'o', ARGV[3]) end
return 1
"""
"""The minimal path's one Lua call: claim the voter, append the vote (ARGV[4] == '0' skips it)."""

MinimalVariant = Literal["full", "no-stream", "no-redis"]


def create_minimal_app(variant: MinimalVariant = "full") -> Flask:
    """The minimal vote path (see the module's docstring), on VIBER_AUTH_TOKEN, VOTER_ID_SECRET, REDIS_URL."""
    token, secret = os.environ["VIBER_AUTH_TOKEN"].encode(), os.environ["VOTER_ID_SECRET"].encode()
    claim = Redis.from_url(os.environ["REDIS_URL"]).register_script(MINIMAL_CLAIM)
    stream = "1" if variant == "full" else "0"
    app = Flask(__name__)

    @app.post("/viber/webhook")
    def minimal_vote() -> tuple[str, int, dict[str, str]]:
        body = request.get_data()
        mac = hmac.new(token, body, hashlib.sha256).hexdigest().encode()
        if not hmac.compare_digest(mac, request.headers.get(signature.HEADER, "").encode()):
            return "", 403, {}
        event = json.loads(body)
        voter = hmac.new(secret, event["sender"]["id"].encode(), hashlib.sha256).digest()[:12]
        if variant != "no-redis":
            bucket, tag = f"vv:minimal:voters:{voter[:2].hex()}", event["message_token"] % 4096
            claim(keys=[bucket, "vv:minimal:votes"], args=[voter[2:], tag, event["message"]["text"], stream])
        return "{}", 200, {"Content-Type": "application/json"}

    app.add_url_rule("/healthz", "healthz", floor_healthz)
    return app


def naive_count_vote(poll_id: str, voter_hex: str, option_index: int, option_id: str, at: int) -> bool:
    """RQ job: store one ballot unless the voter has one (HSETNX) and count it (HINCRBY)."""
    redis = get_current_job().connection
    voter = bytes.fromhex(voter_hex)
    stored = redis.hsetnx(keys.ballots(poll_id, voter), keys.field(voter), pack_ballot(option_index, at))
    if stored:
        redis.hincrby(keys.counts(poll_id), option_id, 1)
    return bool(stored)


class Vote(NamedTuple):
    """A verified vote callback: who (keyed hash), for which poll and option."""

    receiver: str
    voter: bytes
    poll_id: str
    option_index: int
    option_id: str


def create_naive_app(environ: Mapping[str, str] | None = None) -> Flask:
    """The naive design: verify and parse like the service, then enqueue one RQ job per vote."""
    config = Config.from_environ(environ)
    queue = Queue(NAIVE_QUEUE, connection=connect(config.redis))

    def enqueue(vote: Vote) -> None:
        queue.enqueue(
            NAIVE_JOB, vote.poll_id, vote.voter.hex(), vote.option_index, vote.option_id, int(time.time())
        )

    return _vote_app(config, enqueue)


def create_sync_reply_app(environ: Mapping[str, str] | None = None) -> Flask:
    """viberbot's sample-bot style: send the reply to Viber inside the request, then answer."""
    config = Config.from_environ(environ)
    client = ViberClient(config.viber_api_url, config.viber_auth_token, pool_size=SYNC_POOL_SIZE)

    def reply(vote: Vote) -> None:
        client.send_message(
            {
                "receiver": vote.receiver,
                "sender": {"name": config.bot_name},
                "type": "text",
                "text": SYNC_REPLY.format(option=vote.option_id, receipt=receipt_code(vote.voter)),
                "tracking_data": vote.poll_id,
            }
        )

    return _vote_app(config, reply)


def _vote_app(config: Config, on_vote: Callable[[Vote], None]) -> Flask:
    """A baseline app: POST /viber/webhook verifies and parses, hands each vote to on_vote, answers {}."""
    polls = load_polls(config.poll_file)
    app = Flask(__name__)

    @app.post("/viber/webhook")
    def baseline_webhook() -> Any:
        """Verify, parse, handle the vote the callback carries."""
        vote = _read_vote(config, polls)
        if isinstance(vote, Response):
            return vote
        if vote is not None:
            on_vote(vote)
        return jsonify({})

    app.add_url_rule("/healthz", "healthz", floor_healthz)
    return app


def _read_vote(config: Config, polls: PollBook) -> Response | Vote | None:
    """Verify and parse the callback: an error response, the vote it carries, or None."""
    body = request.get_data(cache=False)
    if not signature.is_valid(config.viber_auth_token, body, request.headers.get(signature.HEADER)):
        return Response('{"error": "missing or wrong signature"}', 403, mimetype="application/json")
    try:
        event = parse_callback(body)
    except BadCallback:
        return Response('{"error": "bad callback"}', 400, mimetype="application/json")
    if not isinstance(event, MessageEvent) or event.text is None:
        return None
    poll = polls.find(event.tracking_data) or polls.current(time.time())
    index = poll.option_index(event.text)
    if index is None:
        return None
    voter = voter_key(config.voter_id_secret, IdentityKind.VIBER, event.sender.id)
    return Vote(event.sender.id, voter, poll.id, index, poll.options[index].id)
