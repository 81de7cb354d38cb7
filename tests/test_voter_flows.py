"""Voter conversations: phone verification, languages, schedule, results visibility, receipts."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.conftest import message_event, post_live
from tests.support.viber_chat import only_text
from webhook.core.polls import PollStatus

RECEIPT = re.compile(r"\b([0-9A-Z]{5}-[0-9A-Z]{5})\b")


def counts(rt, poll_id: str) -> dict[str, int]:
    """Counters of a poll."""
    return rt.ballot_box.counts(rt.polls.get(poll_id))


def test_phone_poll_asks_for_the_number_first(chat, rt):
    voter = chat("phone-1")
    [ask] = voter.send("yes", poll="phone")
    assert ask["keyboard"]["Buttons"][0]["ActionType"] == "share-phone"
    assert ask["min_api_version"] >= 3
    assert counts(rt, "phone") == {"yes": 0, "no": 0}


def test_shared_phone_is_accepted_and_the_vote_counted(chat, rt, redis):
    voter = chat("phone-2")
    voter.send("yes", poll="phone")
    [ok] = voter.share_phone("+375 29 123-45-67")
    assert "verified" in ok["text"]
    assert [b["ActionBody"] for b in ok["keyboard"]["Buttons"]] == ["yes", "no"]
    assert "counted" in only_text(voter.send("no", poll="phone"))
    assert counts(rt, "phone") == {"yes": 0, "no": 1}
    dump = b"".join(k + repr(redis.dump(k)).encode() for k in redis.keys("*"))
    assert b"375291234567" not in dump and b"phone-2" not in dump


def test_foreign_number_is_refused(chat, rt):
    voter = chat("phone-3")
    voter.send("yes", poll="phone")
    assert "Sorry" in only_text(voter.share_phone("+48 600 123 456"))
    assert "counted" not in only_text(voter.send("yes", poll="phone"))
    assert counts(rt, "phone") == {"yes": 0, "no": 0}


def test_one_number_from_two_viber_accounts_counts_once(chat, rt):
    first, second = chat("phone-4a"), chat("phone-4b")
    first.send("yes", poll="phone")
    assert "verified" in only_text(first.share_phone("+375291112233"))
    second.send("yes", poll="phone")
    assert "already verified with another account" in only_text(second.share_phone("+375291112233"))
    assert "counted" in only_text(first.send("yes", poll="phone"))
    [again] = second.send("no", poll="phone")
    assert again["keyboard"]["Buttons"][0]["ActionType"] == "share-phone"
    assert counts(rt, "phone") == {"yes": 1, "no": 0}


def test_typed_number_is_not_accepted_as_verified(chat, rt):
    voter = chat("phone-5")
    voter.send("yes", poll="phone")
    voter.send("+375291234567", poll="phone")
    replies = voter.send("yes", poll="phone")
    assert "counted" not in only_text(replies)
    assert counts(rt, "phone") == {"yes": 0, "no": 0}


def test_desktop_client_is_told_to_use_the_phone(chat, rt):
    """Desktop is told apart by api_version alone; a phone client is never told it is one."""
    old_client = chat("phone-6", api_version=2)
    assert "on your phone" in only_text(old_client.send("yes", poll="phone"))
    assert "on your phone" in only_text(old_client.send("yes", poll="phone"))


@pytest.mark.parametrize(
    ("language", "welcome_words", "confirm_words"),
    [
        ("en", "Tap one answer", "is counted"),
        ("ru", "Нажмите один из ответов", "учтён"),
        ("be", "Націсніце адзін з адказаў", "улічаны"),
        ("be-BY", "Націсніце адзін з адказаў", "улічаны"),
        ("de", "Tap one answer", "is counted"),
    ],
)
def test_each_language_welcome_and_confirmation(chat, language, welcome_words, confirm_words):
    voter = chat(f"lang-{language}", language=language)
    assert welcome_words in voter.open()["text"]
    assert confirm_words in only_text(voter.send("yes"))


def test_poll_question_and_labels_in_the_voters_language(chat):
    voter = chat("lang-phone", language="ru")
    voter.send("да", poll="phone")
    [ok] = voter.share_phone("+375291230000")
    assert "Один номер — один голос?" in ok["text"]
    assert "Да" in ok["keyboard"]["Buttons"][0]["Text"]
    assert "учтён" in only_text(voter.send("да", poll="phone"))


def test_poll_not_yet_open_says_when(chat, rt):
    text = only_text(chat("early").send("a", poll="future"))
    assert "not opened yet" in text and "2099-01-01 00:00 UTC" in text
    assert counts(rt, "future") == {"a": 0, "b": 0}


def test_closed_poll_says_so_and_shows_the_final_result(chat, rt):
    text = only_text(chat("late").send("a", poll="past"))
    assert "closed" in text and "Final results" in text and "Total: 0" in text


def test_results_visibility_modes(chat, rt):
    voter = chat("curious")
    voter.send("yes")
    assert "when voting has closed" in only_text(voter.send("results"))
    rt.ballot_box.set_status(rt.polls.get("main"), PollStatus.CLOSED)
    final = only_text(voter.send("results"))
    assert "Final results" in final and "Yes: 1 (100.0%)" in final
    assert "does not publish" in only_text(voter.send("results", poll="secret"))
    live = chat("curious-phone")
    assert "Results so far" in only_text(live.send("results", poll="phone"))


def test_receipt_check_found_and_not_found(chat):
    voter = chat("receipt-1")
    receipt = RECEIPT.search(only_text(voter.send("no"))).group(1)
    found = only_text(voter.send(f"check {receipt}"))
    assert f"Receipt {receipt} is in the count" in found
    assert "No" not in found, "a receipt check must not reveal the choice"
    other = "00000-00000" if receipt != "00000-00000" else "11111-11111"
    assert "is not in the count" in only_text(voter.send(f"check {other}"))
    assert "not a receipt code" in only_text(voter.send("check banana"))
    assert "в подсчёте" in only_text(chat("receipt-ru", language="ru").send(f"проверить {receipt.lower()}"))


def test_phone_and_receipt_conversation_against_the_running_service(stack, fake_viber, redis):
    """The same flows through gunicorn and the Procfile's workers: phone, vote, receipt check, results."""
    user = "live-phone-voter"

    def say(text: str = "", **message: Any) -> dict[str, Any]:
        seen = len(fake_viber.messages_to(user))
        event = message_event(user, text, language="be", tracking_data="phone")
        if message:
            event["message"] = {"tracking_data": "phone", **message}
        assert post_live(stack, event)[0] == 200
        deadline = time.monotonic() + 10
        while len(fake_viber.messages_to(user)) <= seen:
            assert time.monotonic() < deadline, f"no reply to {text or message}"
            time.sleep(0.05)
        return fake_viber.messages_to(user)[seen]

    assert say("так")["keyboard"]["Buttons"][0]["ActionType"] == "share-phone"
    assert "пацверджаны" in say(type="contact", contact={"phone_number": "+375 33 765 43 21"})["text"]
    confirmation = say("так")["text"]
    assert "улічаны" in confirmation
    receipt = RECEIPT.search(confirmation).group(1)
    assert f"Квітанцыя {receipt} улічана ў падліку" in say(f"праверыць {receipt}")["text"]
    assert "Бягучыя вынікі" in say("вынікі")["text"]
    assert redis.hgetall("vv:poll:phone:counts") == {b"yes": b"1"}
