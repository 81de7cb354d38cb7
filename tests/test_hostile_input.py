"""Hostile-input properties of POST /viber/webhook, with hypothesis-generated bodies (over 10,000)."""

from __future__ import annotations

import copy
import json
import re
import time
from enum import Enum
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, Phase, assume, event, example, given, settings
from hypothesis import strategies as st
from redis import Redis

from tests.conftest import BOT_TOKEN
from tests.support.viber_chat import only_text
from webhook.channels.viber.events import MAX_ID_CHARS, MAX_LANGUAGE_CHARS
from webhook.channels.viber.signature import HEADER, sign
from webhook.channels.viber.webhook import MAX_CLOCK_SKEW_S
from webhook.config import Config
from webhook.core.conversation import CHECK_WORDS, RESULTS_WORDS
from webhook.store import keys
from webhook.store.streams import ReplyEntry, VoteEntry

pytestmark = pytest.mark.filterwarnings(
    "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning"
)
"""A falsifying ~60 KB body is still worth printing."""
HOSTILE = settings(
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
"""Database-free: runs write no .hypothesis directory."""
NO_SHRINK = settings(HOSTILE, phases=(Phase.explicit, Phase.generate))
"""For the xfail bug tests: stop at the first failure instead of shrinking."""

ALLOWED_STATUSES = {200, 400, 403, 413, 503}
VOTE_WRITES = re.compile(
    rb"vv:poll:[a-z0-9][a-z0-9-]{0,39}:voters:[0-9a-f]{4}"
    rb"|vv:votes|vv:outbox|vv:kick:(?:tally|send)|vv:seen:viber:[0-9]+|vv:rate:[0-9a-f]{24}|rq:.+"
    rb"|vv:stats|vv:poll:phone:accounts:[0-9a-f]{4}|vv:bind:(?:account|phone):viber:[0-9a-f]{4}"
)
"""Every key the webhook may write for a well-formed, fresh message: the claim, the vote stream,
a reply with its dedupe and rate keys, the RQ drain job a kick enqueues; and, per webhook/keys.py,
the event counters and a phone poll's account claims and phone bindings."""
MAIN_OPTIONS = {"yes", "no", "abstain"}
"""Option ids of tests/polls.toml's open poll `main` (each label casefolds to its id)."""
POLL_IDS = ("main", "future", "past", "phone", "secret")
"""Polls in tests/polls.toml; `main` is the current one (the first open by schedule)."""
SAFE_DEPTH = 200
"""Nesting json.loads handles at any stack depth; DEEP bodies go past the recursion limit."""


def pick(*strategies: st.SearchStrategy) -> st.SearchStrategy:
    """One of the strategies, equally likely (repeat one to weight it; st.one_of flattens unions)."""
    return st.sampled_from(strategies).flatmap(lambda strategy: strategy)


# --- characters and scalars -----------------------------------------------------------------

SPECIAL = [
    "\x00", "\x7f", "\n", '"', "\\", "/", "\u00a0", "\u0301", "\u200b", "\u200e", "\u200f",
    "\u2028", "\u202d", "\u202e", "\u2066", "\ufeff", "\uffff", "\U0001f5f3", "\U0010ffff",
]  # fmt: skip
SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]
SAFE_CHARS = st.one_of(st.characters(exclude_categories=("Cs",)), st.sampled_from(SPECIAL))
"""Any code point but a lone surrogate, with NUL, RTL/LTR overrides, BOM and friends boosted."""
ANY_CHARS = st.one_of(st.characters(exclude_categories=()), st.sampled_from(SPECIAL + SURROGATES))
"""Any code point at all, lone surrogates included."""

HUGE_INTS = [0, 1, -1, 2**31, 2**53 + 1, -(2**63), 2**63 - 1, 2**63, 2**64, 10**30, 10**400, -(10**400)]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(HUGE_INTS),
    st.floats(),
    st.text(ANY_CHARS, max_size=16),
    st.one_of(st.integers(), st.sampled_from(HUGE_INTS), st.floats(allow_nan=False)).map(str),
)
"""Wrong-typed field values: null, booleans, huge and negative ints, NaN, numbers as strings."""
NON_STRINGS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.lists(st.integers(), max_size=2)
)
JUNK = st.recursive(
    SCALARS,
    lambda kids: st.one_of(
        st.lists(kids, max_size=3), st.dictionaries(st.text(ANY_CHARS, max_size=6), kids, max_size=3)
    ),
    max_leaves=6,
)
"""Nested garbage of any JSON shape."""
HUGE_STRINGS = st.builds(
    lambda unit, times: unit * times,
    st.text(ANY_CHARS, min_size=1, max_size=3),
    st.one_of(st.integers(1, 20_000), st.sampled_from([15_000, 20_000, 22_000])),
)
"""Strings up to 66,000 code points (~60 KB; some bodies then exceed the 64 KB limit: 413)."""


def _nest(leaf: Any, depth: int, use_dicts: bool) -> Any:
    """Wrap a value in depth lists or single-key objects."""
    for _ in range(depth):
        leaf = {"x": leaf} if use_dicts else [leaf]
    return leaf


NESTED = st.builds(_nest, SCALARS, st.integers(1, SAFE_DEPTH), st.booleans())


def _deep(kind: str, depth: int, use_dicts: bool) -> bytes:
    """A callback body with one field nested far past Python's recursion limit (well under 64 KB)."""
    opening, closing = (b'{"x":', b"}") if use_dicts else (b"[", b"]")
    return b'{"event":"' + kind.encode() + b'","x":' + opening * depth + b"0" + closing * depth + b"}"


DEEP = st.builds(_deep, st.sampled_from(["seen", "message"]), st.integers(2_000, 10_000), st.booleans())

# --- well-formed callbacks --------------------------------------------------------------------


def _now_ms(offset_ms: int) -> int:
    """Now in Unix milliseconds, shifted."""
    return int(time.time() * 1000) + offset_ms


FRESH_MS = st.integers(-600_000, 60_000).map(_now_ms)
STALE_MS = st.one_of(
    st.sampled_from([-3 * 3600_000, -86_400_000, 10 * 60_000, 86_400_000]).map(_now_ms),
    st.integers(0, 10**12),
)
TIMESTAMPS = pick(FRESH_MS, FRESH_MS, FRESH_MS, STALE_MS)
TOKENS = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 4096, 5_100_000_000_000_000_000]))
LANGUAGES = st.one_of(
    st.sampled_from(["en", "ru", "be", "uk", "pl", "ar", "he", "zh-Hant", "pt-BR"]),
    st.text(ANY_CHARS, max_size=MAX_LANGUAGE_CHARS + 4),
)
USER_IDS = st.text(SAFE_CHARS, min_size=1, max_size=MAX_ID_CHARS)
PADDING = st.text(st.sampled_from([" ", "\t", "\n", "\r", "\u00a0", "\u2003", "\u3000"]), max_size=3)


def option_texts(words: list[str]) -> st.SearchStrategy[str]:
    """Option ids as a voter's client might send them: any case, padded with whitespace."""
    return st.builds(
        lambda left, word, case, right: left + case(word) + right,
        PADDING,
        st.sampled_from(words),
        st.sampled_from([str.lower, str.upper, str.title, str.swapcase]),
        PADDING,
    )


VOTE_TEXTS = option_texts([*sorted(MAIN_OPTIONS), "a", "b"])
WITH_SURROGATE = st.builds(
    lambda left, surrogate, right: left + surrogate + right,
    st.text(ANY_CHARS, max_size=12),
    st.sampled_from(SURROGATES),
    st.text(ANY_CHARS, max_size=12),
)
"""Any text holding at least one lone surrogate (no UTF-8 encoder takes it)."""
COMMAND_TEXTS = st.builds(
    lambda word, gap, rest: word + gap + rest,
    st.sampled_from(sorted(CHECK_WORDS | RESULTS_WORDS) + ["CHECK", "Check", *sorted(MAIN_OPTIONS)]),
    PADDING.map(lambda pad: pad or " "),
    pick(WITH_SURROGATE, st.text(ANY_CHARS, max_size=60), st.sampled_from(["7k2qx m9d4t", "ABCDE-FGHJK"])),
)
"""A command word (or an option) followed by anything: a `check` queues what follows it."""
TEXTS = st.one_of(
    VOTE_TEXTS,
    st.sampled_from(["results", "check", "check ABCDE-FGHJK", "Да", "+375291234567"]),
    st.text(ANY_CHARS, max_size=24),
    COMMAND_TEXTS,
)
TRACKING = st.one_of(
    st.sampled_from([*POLL_IDS, "", "MAIN", "main\x00", "nope"]), st.text(ANY_CHARS, max_size=12)
)
MESSAGE_TYPES = st.one_of(
    st.sampled_from(
        ["text", "picture", "video", "file", "sticker", "contact", "location", "url", "rich_media"]
    ),
    st.sampled_from(["", "TEXT", "Text", "poll", "keyboard"]),
    st.text(ANY_CHARS, max_size=10),
)
USERS = st.fixed_dictionaries(
    {"id": USER_IDS, "name": st.text(ANY_CHARS, max_size=12), "language": LANGUAGES},
    optional={
        "avatar": st.text(ANY_CHARS, max_size=12),
        "country": st.text(ANY_CHARS, max_size=3),
        "api_version": st.integers(0, 20),
    },
)
MESSAGES = st.fixed_dictionaries(
    {"type": MESSAGE_TYPES, "text": TEXTS},
    optional={
        "tracking_data": TRACKING,
        "media": st.text(ANY_CHARS, max_size=12),
        "contact": st.one_of(JUNK, st.fixed_dictionaries({"phone_number": st.one_of(TEXTS, SCALARS)})),
        "location": st.fixed_dictionaries({"lat": st.floats(), "lon": st.floats()}),
        "sticker_id": st.integers(),
    },
)
MESSAGE_EVENTS = st.fixed_dictionaries(
    {
        "event": st.just("message"),
        "timestamp": TIMESTAMPS,
        "message_token": TOKENS,
        "sender": USERS,
        "message": MESSAGES,
    },
    optional={"silent": st.booleans(), "chat_hostname": st.text(ANY_CHARS, max_size=12)},
)
CONVERSATIONS = st.fixed_dictionaries(
    {
        "event": st.just("conversation_started"),
        "timestamp": TIMESTAMPS,
        "message_token": TOKENS,
        "type": st.just("open"),
        "user": USERS,
    },
    optional={"context": st.text(ANY_CHARS, max_size=12), "subscribed": st.booleans()},
)
OTHER_EVENTS = st.one_of(
    # The real `failed` payload (2024) has no `desc`.
    st.fixed_dictionaries(
        {
            "event": st.sampled_from(["failed", "seen", "delivered"]),
            "timestamp": TIMESTAMPS,
            "message_token": TOKENS,
            "user_id": USER_IDS,
        },
        optional={"desc": st.text(ANY_CHARS, max_size=12)},
    ),
    st.fixed_dictionaries(
        {"event": st.just("subscribed"), "timestamp": TIMESTAMPS, "user": USERS, "message_token": TOKENS}
    ),
    st.fixed_dictionaries(
        {"event": st.sampled_from(["unsubscribed", "webhook", "client_status"]), "timestamp": TIMESTAMPS},
        optional={"user_id": USER_IDS, "message_token": TOKENS, "chat_hostname": st.text(max_size=10)},
    ),
    st.fixed_dictionaries(
        {"event": st.text(ANY_CHARS, min_size=1, max_size=20), "timestamp": TIMESTAMPS},
        optional={"payload": JUNK},
    ),
)
PAYLOADS = pick(MESSAGE_EVENTS, MESSAGE_EVENTS, MESSAGE_EVENTS, MESSAGE_EVENTS, CONVERSATIONS, OTHER_EVENTS)

# --- breaking them ------------------------------------------------------------------------------


def _paths(payload: dict) -> list[tuple[str, ...]]:
    """Key paths of a payload's fields, one level into nested objects."""
    paths: list[tuple[str, ...]] = []
    for key, value in payload.items():
        paths.append((key,))
        if isinstance(value, dict):
            paths.extend((key, inner) for inner in value)
    return paths


def _lookalikes(value: Any) -> list[Any]:
    """Values a sloppy sender might put where this one belongs."""
    out: list[Any] = [None, True, False, 0, -1, "", [value], {"value": value}, str(value)]
    if isinstance(value, int) and not isinstance(value, bool):
        as_float = float(value) if abs(value) < 10**300 else float("inf")
        out += [-value - 1, as_float, value * 10**300, f"{value}.0", hex(value)]
    if isinstance(value, str):
        out += [
            value * (200 if len(value) < 300 else 1),
            value.upper(),
            f" {value} ",
            [ord(c) for c in value[:4]],
        ]
    if isinstance(value, dict):
        out += [list(value.values()), {}, json.dumps(value)]
    return out


@st.composite
def mutated(draw: st.DrawFn, payloads: st.SearchStrategy[dict]) -> dict:
    """A callback with up to three fields deleted, retyped, bloated, nested or added."""
    payload = copy.deepcopy(draw(payloads))
    for _ in range(draw(st.integers(0, 3))):
        paths = _paths(payload)
        op = draw(st.sampled_from(["delete", "junk", "lookalike", "huge", "nest", "add"]))
        if op == "add" or not paths:
            parent = payload
            if paths and draw(st.booleans()):
                inner = [p for p in paths if isinstance(payload[p[0]], dict) and len(p) == 1]
                parent = payload[draw(st.sampled_from(inner))[0]] if inner else payload
            parent[draw(st.text(ANY_CHARS, max_size=8))] = draw(JUNK)
            continue
        path = draw(st.sampled_from(paths))
        parent = payload if len(path) == 1 else payload[path[0]]
        key = path[-1]
        if op == "delete":
            del parent[key]
        elif op == "junk":
            parent[key] = draw(JUNK)
        elif op == "lookalike":
            parent[key] = draw(st.sampled_from(_lookalikes(parent[key])))
        elif op == "huge":
            parent[key] = draw(HUGE_STRINGS)
        else:
            parent[key] = draw(NESTED)
    return payload


def encode(payload: Any, style: str) -> bytes:
    """Serialize a payload as JSON, in one of the ways a sender could."""
    if style == "ascii":
        return json.dumps(payload).encode()
    if style == "pretty":
        return json.dumps(payload, indent=2, sort_keys=False).encode()
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    if style == "utf-8":
        return text.encode("utf-8", "surrogatepass")
    if style == "utf-8-bom":
        return b"\xef\xbb\xbf" + text.encode("utf-8", "surrogatepass")
    return text.encode(style, "surrogatepass")


STYLES = st.sampled_from(
    ["ascii", "ascii", "pretty", "utf-8", "utf-8", "utf-8-bom", "utf-16-le", "utf-16-be"]
)
GOOD_BODIES = st.builds(encode, PAYLOADS, STYLES)
MUTATED_JSON = st.builds(encode, mutated(PAYLOADS), STYLES)
JUNK_JSON = st.builds(encode, st.one_of(JUNK, NESTED), STYLES)


@st.composite
def broken(draw: st.DrawFn, bodies: st.SearchStrategy[bytes]) -> bytes:
    """A body cut short, with bytes inserted or overwritten, or garbage around it."""
    body = draw(bodies)
    at = draw(st.integers(0, len(body)))
    junk = draw(
        st.one_of(st.binary(min_size=1, max_size=8), st.sampled_from([b",", b"}", b"]", b'"', b"\\"]))
    )
    how = draw(st.sampled_from(["cut", "insert", "overwrite", "prefix", "suffix"]))
    if how == "cut":
        return body[:at]
    if how == "insert":
        return body[:at] + junk + body[at:]
    if how == "overwrite":
        return body[:at] + junk + body[at + len(junk) :]
    return junk + body if how == "prefix" else body + junk


LITERALS = st.sampled_from(
    [
        b"", b" ", b"null", b"true", b"0", b"-1", b"[]", b"{}", b'""', b'"message"', b"{", b"[",
        b"NaN", b"Infinity", b"\xff\xfe", b"\xef\xbb\xbf", b"\x00" * 8,
        b'{"event": null}', b'{"event": ""}', b'{"event": 1}', b'{"event": ["message"]}',
        b'{"event":"message"}', b'{"event":"conversation_started"}', b'{"event":"failed"}',
        b'{"event":"seen","event":"message"}', b'{"event":"message","message":{"type":"text"}}',
        b'{"event":"message","timestamp":' + b"1" * 5000 + b"}",
        b'{"event":"message","message_token":-' + b"9" * 4301 + b"}",
        b'{"event":"\xed\xa0\x80"}', b'{"event":"\xc3\x28"}', b'{"event":"message"\x00}',
    ]
)  # fmt: skip


def _vote(
    user_id: str = "user-1",
    language: Any = "en",
    timestamp: int | None = None,
    text: str = "yes",
    token: int = 5_100_000_000_000_000_001,
) -> dict:
    """A fresh, well-formed vote (for `yes` by default)."""
    return {
        "event": "message",
        "timestamp": _now_ms(0) if timestamp is None else timestamp,
        "message_token": token,
        "sender": {"id": user_id, "name": "Voter", "language": language},
        "message": {"type": "text", "text": text},
    }


VALID_VOTES = st.builds(
    encode,
    st.builds(
        _vote,
        USER_IDS,
        LANGUAGES,
        st.none(),
        option_texts(sorted(MAIN_OPTIONS)),
        TOKENS,
    ),
    STYLES,
)
"""Fresh votes for `main` with random ids, languages and tokens: each would write if accepted."""


BROKEN_JSON = broken(pick(GOOD_BODIES, MUTATED_JSON, JUNK_JSON))
BODIES = pick(
    *[GOOD_BODIES] * 3,
    *[MUTATED_JSON] * 4,
    *[BROKEN_JSON] * 2,
    JUNK_JSON,
    st.binary(max_size=300),
    LITERALS,
    DEEP,
)
"""Every kind of body: well-formed, mutated, broken, binary, odd literals."""

# --- what the webhook should do with a body ---------------------------------------------------


class Expect(Enum):
    """What a signed body should get, per the callback spec."""

    TOO_LARGE = "413, nothing written"
    INVALID = "400, nothing written"
    IGNORED = "200, nothing written"
    WELCOME = "200 with the welcome, nothing written"
    PROCESSED = "200, only a valid vote's keys written"


def _is_count(value: Any) -> bool:
    """A JSON integer in 0..2**64-1, what Viber sends fits 64 bits (booleans are not integers)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 2**64 - 1


def _has_surrogate(text: str) -> bool:
    """Whether a string holds a lone surrogate (not encodable as UTF-8)."""
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def expect(body: bytes, config: Config, now: float) -> Expect:
    """The outcome Viber's callback format and the service's rules call for."""
    if len(body) > config.max_body_bytes:
        return Expect.TOO_LARGE
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return Expect.INVALID
    if not isinstance(payload, dict):
        return Expect.INVALID
    kind = payload.get("event")
    if not isinstance(kind, str) or not kind:
        return Expect.INVALID
    if kind == "message":
        message = payload.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("type"), str) or not message["type"]:
            return Expect.INVALID
        if message["type"] == "text" and not isinstance(message.get("text"), str):
            return Expect.INVALID
        user = payload.get("sender")
    elif kind == "conversation_started":
        user = payload.get("user")
    else:
        return Expect.IGNORED
    if not (_is_count(payload.get("timestamp")) and _is_count(payload.get("message_token"))):
        return Expect.INVALID
    if not isinstance(user, dict) or not isinstance(user.get("id"), str):
        return Expect.INVALID
    if not 0 < len(user["id"]) <= MAX_ID_CHARS or _has_surrogate(user["id"]):
        return Expect.INVALID
    age_s = now - payload["timestamp"] / 1000
    if not -MAX_CLOCK_SKEW_S <= age_s <= config.max_callback_age_s:
        return Expect.IGNORED
    if kind == "conversation_started":
        return Expect.WELCOME
    return Expect.PROCESSED


STATUS_FOR = {Expect.TOO_LARGE: 413, Expect.INVALID: 400, Expect.IGNORED: 200, Expect.WELCOME: 200}

# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def web(client: FlaskClient) -> FlaskClient:
    """The test client, with uncaught exceptions answered as 500s as under gunicorn."""
    client.application.config["PROPAGATE_EXCEPTIONS"] = False
    return client


def post(web: FlaskClient, body: bytes, signature: str | None) -> tuple[int, Any]:
    """POST a body; assert the answer is never a 500 and every error is JSON with `error`."""
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers[HEADER] = signature
    response = web.post("/viber/webhook", data=body, headers=headers)
    answer = response.get_json(silent=True)
    assert response.status_code in ALLOWED_STATUSES, (response.status_code, response.get_data()[:300])
    if response.status_code != 200:
        assert isinstance(answer, dict) and "error" in answer, response.get_data()[:300]
    return response.status_code, answer


def all_keys(redis: Redis) -> set[bytes]:
    """Every key in the test Redis."""
    return set(redis.keys("*"))


def exchange(
    web: FlaskClient, redis: Redis, body: bytes, signature: str | None
) -> tuple[int, Any, set[bytes]]:
    """POST a body into an empty Redis; return the answer and the keys it wrote, and empty Redis again."""
    try:
        status, answer = post(web, body, signature)
        written = all_keys(redis)
    except BaseException:
        redis.flushall()
        raise
    if written:
        redis.flushall()
    return status, answer, written


# --- properties -------------------------------------------------------------------------------


@settings(HOSTILE, max_examples=5000)
@given(body=BODIES)
@example(body=b'{"event":"failed","timestamp":1700000000000,"message_token":5,"user_id":"x"}')
@example(body=b'{"event":"message","timestamp":"1700000000000","message_token":1,"sender":{"id":"u"}}')
@example(body=_deep("message", 5_000, use_dicts=False))
@example(body=b'{"event":"message","timestamp":1,"message_token":1,"sender":null,"message":{"type":"text"}}')
def test_signed_hostile_body_is_answered_per_spec(
    web: FlaskClient, redis: Redis, config: Config, body: bytes
):
    """Signed bodies: never a 500; invalid ones get 400 and only a fresh message writes to Redis."""
    expected = expect(body, config, time.time())
    event(expected.name)
    status, answer, written = exchange(web, redis, body, sign(BOT_TOKEN, body))
    if expected is Expect.PROCESSED:
        assert status == 200 and answer == {}
        assert written, "a fresh, well-formed message must cast a vote or queue a reply"
        assert all(VOTE_WRITES.fullmatch(key) for key in written), sorted(written)
        return
    assert status == STATUS_FOR[expected], (expected, status, answer)
    assert written == set(), (expected, sorted(written))
    if expected is Expect.WELCOME:
        assert isinstance(answer, dict) and answer.get("text") and answer.get("tracking_data") == "main"


@st.composite
def wrong_signatures(draw: st.DrawFn, body: bytes) -> str | None:
    """A missing, empty or wrong signature header: hex, printable ASCII or obs-text (0x80-0xFF)."""
    good = sign(BOT_TOKEN, body)
    at = draw(st.integers(0, len(good) - 1))
    flipped = good[:at] + ("0" if good[at] != "0" else "1") + good[at + 1 :]
    signature = draw(
        st.one_of(
            st.sampled_from(
                [
                    None,
                    "",
                    "   ",
                    flipped,
                    good[:-1],
                    good + "0",
                    "sha256=" + good,
                    "0" * 64,
                    sign("another-bot-token", body),
                    sign(BOT_TOKEN, body + b" "),
                    sign(BOT_TOKEN, b""),
                    sign(BOT_TOKEN.upper(), body),
                    good[:-1] + "\u00e9",
                    "\u00e9" * 64,
                ]
            ),
            st.binary(min_size=32, max_size=32).map(bytes.hex),
            st.binary(max_size=100).map(lambda raw: bytes(0x20 + b % 0x5F for b in raw).decode()),
            st.binary(max_size=70).map(
                lambda raw: bytes(b if b >= 0x80 else 0x20 + b % 0x5F for b in raw).decode("latin-1")
            ),
        )
    )
    assume(signature is None or signature.strip().lower() != good)
    return signature


@settings(HOSTILE, max_examples=2000)
@given(data=st.data(), body=pick(VALID_VOTES, VALID_VOTES, BODIES))
def test_unsigned_or_wrongly_signed_body_is_403(
    web: FlaskClient, redis: Redis, config: Config, data: st.DataObject, body: bytes
):
    """Without the right signature (obs-text bytes included): 403, or 413 if oversized; Redis untouched."""
    signature = data.draw(wrong_signatures(body), label="signature")
    event("signature header absent" if signature is None else "signature header wrong")
    status, _, written = exchange(web, redis, body, signature)
    assert status == (413 if len(body) > config.max_body_bytes else 403)
    assert written == set()


@st.composite
def vote_sessions(draw: st.DrawFn) -> list[tuple[str, dict]]:
    """Messages from a few voters: votes, re-votes, Viber retries, other texts, other polls."""
    users = draw(st.lists(USER_IDS, min_size=1, max_size=5, unique=True))
    session = []
    for _ in range(draw(st.integers(1, 10))):
        user = draw(st.sampled_from(users))
        message: dict[str, Any] = {"type": draw(st.sampled_from(["text"] * 4 + ["picture", "url"]))}
        message["text"] = draw(TEXTS)
        if draw(st.booleans()):
            message["tracking_data"] = draw(st.one_of(TRACKING, NON_STRINGS))
        sender = {"id": user, "name": draw(st.text(ANY_CHARS, max_size=10))}
        sender["language"] = draw(st.one_of(LANGUAGES, NON_STRINGS))
        payload = {
            "event": "message",
            "timestamp": draw(FRESH_MS),
            "message_token": draw(st.one_of(st.integers(0, 3), TOKENS)),
            "sender": sender,
            "message": message,
        }
        session.append((user, payload))
    return session


def _target_poll(message: dict) -> str:
    """The poll a message votes in: the poll its tracking data names, else the current one."""
    tracking = message.get("tracking_data")
    return tracking if tracking in POLL_IDS else "main"


@settings(HOSTILE, max_examples=700)
@given(session=vote_sessions(), style=STYLES)
def test_each_user_id_is_counted_at_most_once(web: FlaskClient, redis: Redis, session: list, style: str):
    """Claims (and queued votes) in `main` equal the distinct user ids that sent it a valid option."""
    try:
        for _user, payload in session:
            body = encode(payload, style)
            status, _ = post(web, body, sign(BOT_TOKEN, body))
            assert status == 200
        voted = {
            user
            for user, payload in session
            if payload["message"]["type"] == "text"
            and _target_poll(payload["message"]) == "main"
            and payload["message"]["text"].strip().casefold() in MAIN_OPTIONS
        }
        claims = sum(redis.hlen(key) for key in redis.scan_iter("vv:poll:main:voters:*"))
        assert claims == len(voted)
        queued = [entry for _id, entry in redis.xrange("vv:votes") if entry[b"poll"] == b"main"]
        assert len(queued) == len(voted)
        assert not any(redis.scan_iter("vv:poll:past:*")) and not any(redis.scan_iter("vv:poll:future:*"))
        assert all(VOTE_WRITES.fullmatch(key) for key in all_keys(redis))
    finally:
        redis.flushall()


@settings(HOSTILE, max_examples=50)
@given(
    language=st.builds(
        lambda s, rest: s + rest, st.sampled_from(SURROGATES), st.text(SAFE_CHARS, max_size=10)
    ),
    text=st.sampled_from(["yes", "hello"]),
)
@example(language="\udfff", text="yes")
def test_surrogate_in_language_falls_back(web: FlaskClient, redis: Redis, language: str, text: str):
    """A language holding a lone surrogate is a 200 that casts or replies, never a 500."""
    payload = _vote(language=language)
    payload["message"]["text"] = text
    body = json.dumps(payload).encode()
    status, _, written = exchange(web, redis, body, sign(BOT_TOKEN, body))
    assert status == 200 and written
    assert all(VOTE_WRITES.fullmatch(key) for key in written)


@settings(HOSTILE, max_examples=50)
@given(
    user_id=st.builds(
        lambda left, s, right: left + s + right,
        st.text(SAFE_CHARS, max_size=40),
        st.sampled_from(SURROGATES),
        st.text(SAFE_CHARS, max_size=40),
    ),
    kind=st.sampled_from(["message", "conversation_started"]),
    style=st.sampled_from(["ascii", "utf-8"]),
)
@example(user_id="\ud800", kind="message", style="ascii")
def test_surrogate_in_user_id_is_400(web: FlaskClient, redis: Redis, user_id: str, kind: str, style: str):
    """A sender or user id holding a lone surrogate (not UTF-8 text) is a 400, nothing written."""
    payload = _vote(user_id=user_id)
    if kind == "conversation_started":
        payload = {**payload, "event": kind, "user": payload["sender"]}
    body = encode(payload, style)
    status, _, written = exchange(web, redis, body, sign(BOT_TOKEN, body))
    assert status == 400 and written == set()


# --- any text in any text field -------------------------------------------------------------

ANY_TEXT = pick(
    WITH_SURROGATE,
    WITH_SURROGATE,
    COMMAND_TEXTS,
    st.text(ANY_CHARS, max_size=40),
    st.builds(
        lambda unit, times: unit * times, st.text(ANY_CHARS, min_size=1, max_size=3), st.integers(1, 3000)
    ),
)
"""Any Unicode string: most hold a lone surrogate, some are a command followed by anything, some run
to thousands of code points."""
RECEIPT_CODE = re.compile(r"[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}")
"""A receipt code as the bot prints it (Crockford's base32, webhook/core/identity.py)."""
VOTER = {
    "id": "user-1",
    "name": "Voter",
    "language": "en",
    "country": "BY",
    "avatar": "https://a.example/v.jpg",
}
MESSAGES_BY_KIND: dict[str, dict[str, Any]] = {
    "vote": {"type": "text", "text": "yes", "tracking_data": "main"},
    "check": {"type": "text", "text": "check 7K2QX-M9D4T", "tracking_data": "main"},
    "contact": {
        "type": "contact",
        "tracking_data": "phone",
        "contact": {"name": "Voter", "phone_number": "+375291234567", "avatar": "https://a.example/c.jpg"},
    },
    "picture": {
        "type": "picture",
        "text": "caption",
        "media": "https://a.example/p.jpg",
        "thumbnail": "https://a.example/t.jpg",
        "file_name": "p.jpg",
        "tracking_data": "main",
    },
    "location": {"type": "location", "location": {"lat": 53.9, "lon": 27.5, "address": "Minsk"}},
}
"""Well-formed messages of each kind, every text field Viber documents for them in place."""


def _callback(kind: str) -> dict[str, Any]:
    """A fresh, well-formed callback of one kind (a message kind, conversation_started, or another event)."""
    if kind == "conversation_started":
        return {
            "event": kind,
            "timestamp": _now_ms(0),
            "message_token": 1,
            "type": "open",
            "context": "campaign",
            "user": {**VOTER, "api_version": 10},
            "subscribed": False,
        }
    if kind == "failed":
        return {"event": kind, "timestamp": _now_ms(0), "message_token": 1, "user_id": "user-1", "desc": "x"}
    return {
        "event": "message",
        "timestamp": _now_ms(0),
        "message_token": 1,
        "chat_hostname": "SN-CHAT-01_",
        "sender": {**VOTER, "api_version": 10},
        "message": copy.deepcopy(MESSAGES_BY_KIND[kind]),
        "silent": False,
    }


CALLBACK_KINDS = [*MESSAGES_BY_KIND, "conversation_started", "failed"]


def _text_paths(value: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The key path of every string in a callback, at any depth."""
    if isinstance(value, str):
        return [path]
    if isinstance(value, dict):
        return [found for key, inner in value.items() for found in _text_paths(inner, (*path, key))]
    return []


def _put(payload: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set the field at a key path."""
    parent = payload
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value


@st.composite
def any_text_anywhere(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed callback with any Unicode string in one or more of its text fields."""
    payload = _callback(draw(st.sampled_from(CALLBACK_KINDS)))
    payload["message_token"] = draw(TOKENS)
    paths = draw(st.permutations(_text_paths(payload)))
    for path in paths[: draw(st.integers(1, 4))]:
        _put(payload, path, draw(ANY_TEXT))
    return payload


def _with(kind: str, path: tuple[str, ...], value: str) -> dict[str, Any]:
    """A callback of one kind with one text field replaced (for the explicit examples)."""
    payload = _callback(kind)
    _put(payload, path, value)
    return payload


@settings(HOSTILE, max_examples=1500)
@given(payload=any_text_anywhere(), style=STYLES)
@example(payload=_with("check", ("message", "text"), "check \ud800"), style="ascii")
@example(payload=_with("check", ("message", "text"), "/check 7K2QX\udfff"), style="utf-8")
@example(payload=_with("vote", ("message", "tracking_data"), "main\ud800"), style="ascii")
@example(payload=_with("contact", ("message", "contact", "phone_number"), "+37529\ud800"), style="ascii")
@example(payload=_with("vote", ("sender", "language"), "be\udc00"), style="ascii")
@example(payload=_with("conversation_started", ("context",), "\ud800"), style="ascii")
def test_any_text_in_any_field_is_answered_per_spec(
    web: FlaskClient, redis: Redis, config: Config, payload: dict[str, Any], style: str
):
    """Any string, lone surrogates included, in any text field: never a 5xx; a 4xx writes nothing; what
    is queued is readable text, and a queued receipt is a printed code or nothing."""
    if isinstance(payload.get("timestamp"), int):
        payload = {**payload, "timestamp": _now_ms(0)}  # the explicit examples were built at import
    body = encode(payload, style)
    expected = expect(body, config, time.time())
    event(expected.name)
    try:
        status, answer = post(web, body, sign(BOT_TOKEN, body))
        written = all_keys(redis)
        replies = [ReplyEntry.parse(fields) for _id, fields in redis.xrange(keys.OUTBOX_STREAM)]
        votes = [VoteEntry.parse(fields) for _id, fields in redis.xrange(keys.VOTES_STREAM)]
    finally:
        redis.flushall()
    if expected is not Expect.PROCESSED:
        assert status == STATUS_FOR[expected], (expected, status, answer)
        assert written == set(), (expected, sorted(written))
        return
    assert status == 200 and answer == {}
    assert written and all(VOTE_WRITES.fullmatch(key) for key in written), sorted(written)
    assert len(replies) + len(votes) == 1, (replies, votes)
    for reply in replies:
        assert reply.receipt is None or reply.receipt == "" or RECEIPT_CODE.fullmatch(reply.receipt), reply


# --- regressions: 500s the properties above once found ---------------------------------


@settings(NO_SHRINK, max_examples=20)
@given(timestamp=st.integers(10**312, 10**4000), kind=st.sampled_from(["message", "conversation_started"]))
@example(timestamp=10**312, kind="message")
def test_huge_timestamp_is_not_a_500(web: FlaskClient, redis: Redis, timestamp: int, kind: str):
    """A timestamp too big for a float is answered 400 or 200-ignored, nothing written."""
    payload = _vote(timestamp=timestamp)
    if kind == "conversation_started":
        payload = {**payload, "event": kind, "user": payload["sender"]}
    body = json.dumps(payload).encode()
    status, _, written = exchange(web, redis, body, sign(BOT_TOKEN, body))
    assert status in {200, 400} and written == set()


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("\ud800", None),
        ("7K2QX-M9D4\udfff", None),
        ("<b>" + "x" * 55, None),
        ("7k2qx m9d4t", "7K2QX-M9D4T"),
        ("7K2QXM9D4T", "7K2QX-M9D4T"),
    ],
)
def test_check_reply_shows_a_printed_receipt_code_or_nothing_typed(chat, typed: str, shown: str | None):
    """`check` and anything after it: a 200, and a reply naming a printed receipt code, never junk."""
    text = only_text(chat("checker").send(f"check {typed}"))
    if shown is None:
        assert "not a receipt code" in text and typed not in text
    else:
        assert f"Receipt {shown} is not in the count" in text
