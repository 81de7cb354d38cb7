"""One person, one vote in a phone poll: a shared contact card never becomes an extra vote.

A vote claims the messenger account and the phone number it is bound to, in one atomic step; an
account binds to its first accepted number for good; a number binds to one account per messenger;
Viber's account country must agree with the number's.
"""

from __future__ import annotations

import threading
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis

from tests.conftest import VOTER_ID_SECRET, post_live
from tests.faults.conftest import pipeline_idle, wait_until
from tests.support.viber_chat import Chat, contact_message, only_text
from webhook.core.identity import IdentityKind, voter_key
from webhook.core.ledger import recount
from webhook.store import keys

POLL = "phone"
NUMBERS = [f"+3752912{i:05d}" for i in range(50)]
"""Valid Belarusian mobile numbers (+375 29 ...)."""


def total(rt: Any) -> int:
    """Votes counted in the phone poll."""
    return sum(rt.ballot_box.counts(rt.polls.get(POLL)).values())


def counted(replies: list[dict[str, Any]]) -> bool:
    """Whether one of the replies confirms a counted vote."""
    return any("is counted" in r["text"] for r in replies)


def test_one_account_many_contact_cards_and_taps_count_once(chat, rt, redis) -> None:
    """(a) N cards with made-up numbers, each followed by a tap: exactly one vote."""
    voter = chat("card-collector")
    confirmations = 0
    for number in NUMBERS[:20]:
        voter.share_phone(number)
        confirmations += counted(voter.send("yes", poll=POLL))
    assert confirmations == 1
    assert total(rt) == 1
    stats = redis.hgetall(keys.STATS)
    assert stats[keys.refused_contact_stat("viber", "other_number").encode()] == b"19"


def test_a_new_number_after_voting_is_refused(chat, rt) -> None:
    """(b) Vote, then share another number and tap: refused with a clear message, total unchanged."""
    voter = chat("switcher")
    voter.share_phone(NUMBERS[0])
    assert counted(voter.send("no", poll=POLL))
    refusal = only_text(voter.share_phone(NUMBERS[1]))
    assert "already verified with another number" in refusal
    assert "already voted" in only_text(voter.send("yes", poll=POLL))
    assert total(rt) == 1


def test_two_accounts_one_number_vote_once_in_either_order(chat, rt) -> None:
    """(c) The number binds to the first account; the second is refused and cannot vote with it."""
    first, second = chat("owner"), chat("taker")
    assert "verified" in only_text(second.share_phone(NUMBERS[2]))
    assert "already verified with another account" in only_text(first.share_phone(NUMBERS[2]))
    assert counted(second.send("yes", poll=POLL))
    [ask] = first.send("yes", poll=POLL)
    assert ask["keyboard"]["Buttons"][0]["ActionType"] == "share-phone"
    assert total(rt) == 1


def test_account_country_must_match_the_number(chat, rt, redis) -> None:
    """(d) Viber says the account is Russian; a +375 number is someone else's: refused."""
    voter = chat("from-russia", country="RU")
    text = only_text(voter.share_phone(NUMBERS[3]))
    assert "not the one your account is registered with" in text
    [ask] = voter.send("yes", poll=POLL)
    assert ask["keyboard"]["Buttons"][0]["ActionType"] == "share-phone"
    no_country = chat("no-country", country="")
    assert "not the one your account" in only_text(no_country.share_phone(NUMBERS[4]))
    assert total(rt) == 0
    assert redis.hget(keys.STATS, keys.refused_contact_stat("viber", "country_mismatch")) == b"2"


def test_invalid_and_foreign_numbers_are_refused(chat, rt, redis) -> None:
    """(e) Too short, impossible, a landline, a foreign mobile: refused, and each explained."""
    voter = chat("bad-numbers")
    for number in ("+3751", "+375000000000", "+375 17 123-45-67", "not a number"):
        assert "not a valid mobile phone number" in only_text(voter.share_phone(number)), number
    poland = chat("poland", country="PL")
    assert "only phone numbers of the countries" in only_text(poland.share_phone("+48 600 123 456"))
    assert total(rt) == 0
    assert redis.hget(keys.STATS, keys.refused_contact_stat("viber", "invalid_number")) == b"4"
    assert redis.hget(keys.STATS, keys.refused_contact_stat("viber", "country_not_allowed")) == b"1"


def test_a_tap_before_sharing_brings_the_share_button_back_each_time(chat) -> None:
    """(g) A phone client is asked for its number at every tap, never told it is a computer."""
    voter = chat("impatient")
    for _ in range(3):
        [ask] = voter.send("yes", poll=POLL)
        assert ask["keyboard"]["Buttons"][0]["ActionType"] == "share-phone"
        assert "on your phone" not in ask["text"]


def test_a_retried_contact_is_counted_once_in_the_refusals(chat, redis) -> None:
    """Viber's retry of a refused contact (same token) gets no second reply and no second count."""
    voter = chat("retrier", country="RU")
    event = voter.event(poll=POLL, **contact_message(NUMBERS[5]))
    voter.post(event)
    voter.post(event)
    assert len(voter.replies()) == 1
    assert redis.hget(keys.STATS, keys.refused_contact_stat("viber", "country_mismatch")) == b"1"


def test_a_link_from_an_older_version_stays_the_first_binding(chat, rt, redis) -> None:
    """Upgrade: a phone link the older version wrote (a 30-day STRING) is the account's first binding."""
    account = voter_key(VOTER_ID_SECRET, IdentityKind.VIBER, "old-timer")
    phone = voter_key(VOTER_ID_SECRET, IdentityKind.PHONE, NUMBERS[6])
    redis.set(keys.legacy_phone_link(account), phone, ex=30 * 24 * 3600)
    voter = chat("old-timer")
    assert "already verified with another number" in only_text(voter.share_phone(NUMBERS[7]))
    assert redis.ttl(keys.legacy_phone_link(account)) == -2, "adopted into the permanent binding"
    # That version kept no country with the link: a poll with allowed countries asks for the number
    # once more, and only the first one is taken.
    [ask] = voter.send("yes", poll=POLL)
    assert ask["keyboard"]["Buttons"][0]["ActionType"] == "share-phone"
    assert "verified" in only_text(voter.share_phone(NUMBERS[6]))
    assert counted(voter.send("yes", poll=POLL))
    assert "already verified with another account" in only_text(chat("newcomer").share_phone(NUMBERS[6]))
    assert total(rt) == 1


def test_refused_contacts_show_in_metrics_and_dashboard(chat, client, redis) -> None:
    """Operators see refusals by reason: a rising bound_elsewhere is a take-over in progress."""
    chat("holder").share_phone(NUMBERS[8])
    chat("grabber").share_phone(NUMBERS[8])
    chat("ru", country="RU").share_phone(NUMBERS[9])
    headers = {"Authorization": "Bearer test-operator-token-0123456789"}
    page = client.get("/metrics", headers=headers).get_data(as_text=True)
    assert 'viber_vote_contacts_refused_total{reason="bound_elsewhere"} 1.0' in page
    assert 'viber_vote_contacts_refused_total{reason="country_mismatch"} 1.0' in page
    assert 'viber_vote_contacts_refused_total{reason="other_number"} 0.0' in page
    state = client.get("/dashboard/api/state", headers=headers).json
    assert state["contacts_refused"]["bound_elsewhere"] == 1
    assert state["contacts_refused"]["invalid_number"] == 0


def test_concurrent_contacts_and_taps_from_one_account_count_once(stack, fake_viber, redis) -> None:
    """(f) 20 contact+tap pairs with 20 numbers, all at once, through gunicorn's threads: one vote."""
    user = "parallel-attacker"
    chat = Chat(None, None, fake_viber, None, user)
    start = threading.Barrier(20)
    statuses: list[int] = []

    def attack(number: str) -> None:
        start.wait()
        statuses.append(post_live(stack, chat.event(poll=POLL, **contact_message(number)))[0])
        statuses.append(post_live(stack, chat.event("yes", poll=POLL))[0])

    threads = [threading.Thread(target=attack, args=(n,)) for n in NUMBERS[10:30]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 40
    wait_until(lambda: pipeline_idle(redis), 20, "the pipeline to drain")
    assert redis.hgetall(keys.counts(POLL)) in ({b"yes": b"1"},), "exactly one vote"
    assert sum("is counted" in m["text"] for m in fake_viber.messages_to(user)) == 1


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("contact"), st.integers(0, 3), st.integers(0, 2)),
            st.tuples(st.just("tap"), st.integers(0, 3), st.just(0)),
        ),
        min_size=1,
        max_size=24,
    )
)
def test_no_interleaving_gives_more_votes_than_people(chat, rt, redis: Redis, fake_viber, steps) -> None:
    """Random orders of contacts and taps from 4 accounts over 3 numbers: votes <= min(bound accounts,
    bound numbers), and every counted vote has its own account and its own number."""
    redis.flushall()
    fake_viber.clear()
    voters = [chat(f"mix-{i}") for i in range(4)]
    for op, who, number in steps:
        voter = voters[who]
        if op == "contact":
            voter.post(voter.event(poll=POLL, **contact_message(NUMBERS[40 + number])))
        else:
            voter.post(voter.event("yes", poll=POLL))
    for voter in voters:
        voter.replies()
    confirmed = [
        v for v in voters if any("is counted" in m["text"] for m in fake_viber.messages_to(v.user_id))
    ]
    accounts = [voter_key(VOTER_ID_SECRET, IdentityKind.VIBER, v.user_id) for v in voters]
    bindings = {a: rt.ballot_box.phone_of("viber", a) for a in accounts}
    bound = {a: binding.phone if binding else None for a, binding in bindings.items()}
    bound_accounts = [a for a, phone in bound.items() if phone is not None]
    bound_numbers = {phone for phone in bound.values() if phone is not None}
    votes = total(rt)
    assert votes == len(confirmed) <= min(len(bound_accounts), len(bound_numbers))
    numbers_of_voters = [bound[voter_key(VOTER_ID_SECRET, IdentityKind.VIBER, v.user_id)] for v in confirmed]
    assert len(set(numbers_of_voters)) == len(numbers_of_voters)
    ledger = recount(redis, rt.polls.get(POLL))
    assert ledger.matches and ledger.accounts_claimed == ledger.voters_claimed == votes
