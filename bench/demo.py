"""The demo `make run` plays against the local fakes: a short vote in Viber and Telegram, as a conversation.

Each step waits for the bot's answer before the next one, so the story prints in the order a
voter would see it, and each point the demo proves is checked and printed on one line. Every run
plays with fresh voters, phone numbers, Viber message tokens and Telegram update ids (the service
remembers those for hours), against a store that keeps earlier runs' votes.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import phonenumbers

from tests.support.fake_telegram import FakeTelegram
from tests.support.fake_viber import FakeViber
from tests.support.telegram_chat import SECRET_HEADER, buttons, contact, message_update, tap_update
from tests.support.viber_callbacks import contact_message, conversation_started, message_event
from webhook.channels.viber.signature import HEADER, sign
from webhook.core.polls import Poll, PollBook

REPLY_TIMEOUT_S = 15.0
POLL_S = 0.05
SHOWN_CHARS = 100
"""A bot message is shown on one line, cut to this many characters."""
PHONE_POLL_TOML = """
# Added by make run's demo (bench/demo.py): a phone poll, one vote per number in both messengers.
[[polls]]
id = "phone-demo"
question = "Demo phone poll: one phone number, one vote, in Viber and Telegram together?"
require_phone = true
allowed_country_codes = ["375"]
results = "live"

[[polls.options]]
id = "yes"
label = "Yes"

[[polls.options]]
id = "no"
label = "No"
"""
"""Appended to the default poll file for the demo (var/demo-polls.toml)."""


def belarusian_mobile() -> str:
    """A fresh, valid Belarusian mobile number (+375 29 ...), in E.164."""
    while True:
        number = f"+37529{secrets.randbelow(9) + 1}{secrets.randbelow(10**6):06d}"
        parsed = phonenumbers.parse(number)
        if phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.MOBILE:
            return number


def one_line(text: str) -> str:
    """A message as one line: markup removed, lines joined, cut to SHOWN_CHARS."""
    flat = " / ".join(part.strip() for part in re.sub(r"<[^>]+>", "", text).splitlines() if part.strip())
    return flat if len(flat) <= SHOWN_CHARS else flat[: SHOWN_CHARS - 1] + "…"


def viber_labels(message: dict[str, Any]) -> list[str]:
    """The labels of a Viber message's keyboard buttons."""
    return [
        re.sub(r"<[^>]+>", "", b.get("Text", "")) for b in (message.get("keyboard") or {}).get("Buttons", [])
    ]


def button_data(message: dict[str, Any], index: int) -> str:
    """The callback data of a Telegram message's index-th inline button (what tapping it sends)."""
    shown = [button for row in buttons(message) for button in row]
    return str(shown[index].get("callback_data", "")) if index < len(shown) else ""


def telegram_labels(message: dict[str, Any]) -> list[str]:
    """The labels of a Telegram message's buttons (inline or reply keyboard)."""
    return [str(button.get("text", "")) for row in buttons(message) for button in row]


@dataclass
class Demo:
    """One run of the demo against a running stack and its fake messenger APIs."""

    base_url: str
    viber: FakeViber
    telegram: FakeTelegram
    viber_token: str
    telegram_secret: str
    operator_token: str
    polls: PollBook
    out: TextIO = sys.stdout
    run: str = field(default_factory=lambda: secrets.token_hex(3))
    points: list[tuple[bool, str]] = field(default_factory=list)
    _viber_tokens: Iterator[int] = field(init=False, repr=False)
    _update_ids: Iterator[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """Fresh Viber message tokens and Telegram update ids (the service remembers earlier runs')."""
        self._viber_tokens = iter(range(secrets.randbelow(2**62), 2**63))
        self._update_ids = iter(range(10**8 + secrets.randbelow(2 * 10**9), 2**62))

    # Output

    def say(self, who: str, what: str) -> None:
        """A line of the conversation: who (messenger and voter, or the bot) and what happened."""
        print(f"{who:<22} {what}", file=self.out, flush=True)

    def bot(self, messages: list[dict[str, Any]], labels: Callable[[dict[str, Any]], list[str]]) -> None:
        """The bot's messages, each on one line with its buttons."""
        for message in messages:
            shown = labels(message)
            self.say(
                "  bot", one_line(message.get("text", "")) + (f"  [{' | '.join(shown)}]" if shown else "")
            )

    def check(self, ok: bool, point: str, failure: str = "") -> None:
        """One point the demo proves: OK, or FAILED with what happened instead."""
        self.points.append((ok, point))
        self.say("  OK" if ok else "  FAILED", point + ("" if ok else f"  ({failure})"))

    # Talking to the service

    def viber_post(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """POST a signed callback as Viber does: (HTTP status, JSON answer)."""
        body = json.dumps(payload).encode()
        return self._post("/viber/webhook", body, {HEADER: sign(self.viber_token, body)})

    def telegram_post(self, update: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """POST an update as Telegram does, with a fresh update_id: (HTTP status, JSON answer)."""
        body = json.dumps({**update, "update_id": next(self._update_ids)}).encode()
        return self._post("/telegram/webhook", body, {SECRET_HEADER: self.telegram_secret})

    def _post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """POST JSON to the web process."""
        request = urllib.request.Request(
            self.base_url + path, data=body, headers={**headers, "Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, {}

    def results(self, poll_id: str) -> dict[str, int]:
        """Votes per option label of a poll, from GET /api/results."""
        request = urllib.request.Request(
            f"{self.base_url}/api/results?poll={poll_id}",
            headers={"Authorization": f"Bearer {self.operator_token}"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            answer = json.loads(response.read())
        return {option["label"]: option["votes"] for option in answer["options"]}

    def replies(
        self, sent: Callable[[], list[dict[str, Any]]], before: int, n: int = 1
    ) -> list[dict[str, Any]]:
        """Wait for n more messages to one voter (sent() lists them all); return the new ones."""
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while len(sent()) < before + n and time.monotonic() < deadline:
            time.sleep(POLL_S)
        return sent()[before:]

    def viber_voter(self, name: str) -> Callable[[], list[dict[str, Any]]]:
        """The messages the bot sent one Viber voter of this run."""
        return lambda: self.viber.messages_to(f"{name}-{self.run}")

    def telegram_voter(self, chat_id: int) -> Callable[[], list[dict[str, Any]]]:
        """The messages the bot sent one Telegram chat."""
        return lambda: self.telegram.messages_to(chat_id)

    # The story

    def play(self) -> bool:
        """Play the whole demo; True when every point was shown."""
        account_poll = self.polls.current(time.time())
        phone_poll = next((p for p in self.polls.polls if p.require_phone), None)
        before = {p.id: self.results(p.id) for p in (account_poll, phone_poll) if p is not None}
        kept = ", ".join(f"{sum(votes.values())} in {poll_id}" for poll_id, votes in before.items())
        print(f"\n=== the demo (run {self.run}): votes kept from earlier runs: {kept} ===", file=self.out)
        started = time.monotonic()
        self.account_votes_in_viber(account_poll)
        self.account_vote_in_telegram(account_poll)
        first, second = (option.label for option in account_poll.options[:2])
        # anna's vote (the second option), boris's and chrystsina's (the first)
        added = {account_poll.id: Counter([second, first, first])}
        if phone_poll is None or "BY" not in (phone_poll.allowed_countries or ("BY",)):
            self.say(
                "(no phone poll)",
                "no open phone poll for +375 numbers: the one-vote-per-number part is skipped",
            )
        else:
            self.one_number_in_both_messengers(phone_poll)
            added[phone_poll.id] = Counter({phone_poll.options[0].label: 1})
        self.counted_once(before, added)
        shown = sum(ok for ok, _ in self.points)
        print(
            f"=== the demo: {shown} of {len(self.points)} points shown in {time.monotonic() - started:.1f} s"
            f" (fresh voters, numbers and message ids each run; the votes stay) ===\n",
            file=self.out,
            flush=True,
        )
        return shown == len(self.points)

    def account_votes_in_viber(self, poll: Poll) -> None:
        """A Viber voter opens the bot, votes, is retried, taps again; another writes text, then votes."""
        anna, boris = f"anna-{self.run}", f"boris-{self.run}"
        first, second = poll.options[:2]  # a reply button sends its option's id
        to_anna, to_boris = self.viber_voter("anna"), self.viber_voter("boris")
        self.say("Viber · anna", "opens the bot")
        welcome = self.viber_post(conversation_started(anna, token=next(self._viber_tokens)))[1]
        self.bot([welcome], viber_labels)
        tap = message_event(anna, second.id, token=next(self._viber_tokens), tracking_data=poll.id)
        self.say("Viber · anna", f'taps "{second.label}"')
        self.viber_post(tap)
        confirmation = self.replies(to_anna, 0)
        self.bot(confirmation, viber_labels)
        self.check(
            any("counted" in m.get("text", "") for m in confirmation),
            "a tap is a vote: counted, and confirmed with a receipt code",
            "no confirmation",
        )
        status = self.viber_post(tap)[0]
        self.say("Viber · anna", f"(Viber delivers the same tap again, same message_token: HTTP {status})")
        self.say("Viber · anna", f'taps "{first.label}"')
        self.viber_post(message_event(anna, first.id, token=next(self._viber_tokens), tracking_data=poll.id))
        again = self.replies(to_anna, len(confirmation))
        self.bot(again, viber_labels)
        texts = [m.get("text", "") for m in to_anna()]
        self.check(
            status == 200 and len(texts) == 2,
            "Viber's retry was acknowledged (200) and ignored: no second confirmation went out",
            f"HTTP {status}, {len(texts)} messages to anna",
        )
        self.check(
            len(texts) == 2 and "already voted" in texts[1],
            'a second tap is answered "already voted", after the confirmation it follows',
            f"anna got {[one_line(t)[:40] for t in texts]}",
        )
        self.say("Viber · boris", 'writes "hello?"')
        self.viber_post(message_event(f"{boris}", "hello?", token=next(self._viber_tokens)))
        prompt = self.replies(to_boris, 0)
        self.bot(prompt, viber_labels)
        self.check(
            len(prompt) == 1 and len(viber_labels(prompt[0])) > 1,
            "free text is not a vote: the bot asks the question again, with its buttons",
            f"{len(prompt)} replies",
        )
        self.say("Viber · boris", f'taps "{first.label}"')
        self.viber_post(message_event(boris, first.id, token=next(self._viber_tokens), tracking_data=poll.id))
        self.bot(self.replies(to_boris, len(prompt)), viber_labels)

    def account_vote_in_telegram(self, poll: Poll) -> None:
        """A Telegram voter sends /start (answered in the webhook's HTTP answer) and taps an option."""
        chrystsina = 10**9 + secrets.randbelow(10**9)
        sent = self.telegram_voter(chrystsina)
        self.say("Telegram · chrystsina", "sends /start")
        start = self.telegram_post(message_update(chrystsina, text="/start"))[1]
        self.bot([start], telegram_labels)
        self.say("Telegram · chrystsina", f'taps "{poll.options[0].label}"')
        answer = self.telegram_post(tap_update(chrystsina, button_data(start, 0)))[1]
        confirmation = self.replies(sent, 0)
        self.bot(confirmation, telegram_labels)
        self.check(
            answer.get("method") == "answerCallbackQuery"
            and any("counted" in m["text"] for m in confirmation),
            "Telegram: /start and the tap are answered in the webhook's HTTP answer, the vote is confirmed",
            f"answer {answer.get('method')}, {len(confirmation)} messages",
        )

    def one_number_in_both_messengers(self, poll: Poll) -> None:
        """One number votes in Viber; shared again in Telegram, it is verified but refused a second vote."""
        first, second = poll.options[:2]
        number, dzmitry_viber = belarusian_mobile(), f"dzmitry-{self.run}"
        dzmitry_telegram = 10**9 + secrets.randbelow(10**9)
        to_viber, to_telegram = self.viber_voter("dzmitry"), self.telegram_voter(dzmitry_telegram)
        self.say("Viber · dzmitry", f"shares his number {number} (his Viber account's country: BY)")
        share = message_event(dzmitry_viber, "", token=next(self._viber_tokens))
        self.viber_post({**share, "message": contact_message(number)})
        verified = self.replies(to_viber, 0)
        self.bot(verified, viber_labels)
        self.say("Viber · dzmitry", f'taps "{first.label}" in the phone poll')
        self.viber_post(
            message_event(dzmitry_viber, first.id, token=next(self._viber_tokens), tracking_data=poll.id)
        )
        counted = self.replies(to_viber, len(verified))
        self.bot(counted, viber_labels)
        self.check(
            any("verified" in m["text"] for m in verified) and any("counted" in m["text"] for m in counted),
            "a phone poll: a Belarusian mobile number shared from a BY account is verified, then votes",
            f"{len(verified)} + {len(counted)} replies",
        )
        self.say(
            "Telegram · dzmitry", f"shares the same number ({number[1:]}) with Telegram's contact button"
        )
        self.telegram_post(message_update(dzmitry_telegram, **contact(number[1:], dzmitry_telegram)))
        verified_again = self.replies(to_telegram, 0)
        self.bot(verified_again, telegram_labels)
        self.say("Telegram · dzmitry", f'taps "{second.label}"')
        tap = button_data(verified_again[-1], 1) if verified_again else ""
        self.telegram_post(tap_update(dzmitry_telegram, tap))
        refused = self.replies(to_telegram, len(verified_again))
        self.bot(refused, telegram_labels)
        self.check(
            any("already voted" in m["text"] for m in refused),
            'one vote per number across messengers: in Telegram the same number is told "already voted"',
            f"{[one_line(m['text'])[:40] for m in refused]}",
        )

    def counted_once(self, before: dict[str, dict[str, int]], added: dict[str, dict[str, int]]) -> None:
        """The results grew by exactly this run's votes, on top of what earlier runs left."""
        exact = True
        for poll_id, votes_before in before.items():
            now = self.results(poll_id)
            grew = {label: now[label] - votes_before.get(label, 0) for label in now}
            expected = {label: added.get(poll_id, {}).get(label, 0) for label in now}
            exact = exact and grew == expected
            shown = ", ".join(f"{label} {votes} ({grew[label]:+d})" for label, votes in now.items())
            self.say("GET /api/results", f"{poll_id}: {shown}")
        self.check(exact, "every vote of this run counted exactly once, on top of the kept ones", "see above")
