"""Viber ids sealed while a reply waits: round trip, wrong secret, damage, and the sender's answer."""

from __future__ import annotations

import json

import pytest
from redis import Redis

from tests.conftest import VOTER_ID_SECRET, message_event, next_token, post_callback
from tests.support.fake_viber import FakeViber
from webhook.channels.base import ChannelSender
from webhook.core.errors import UnreadableReceiver
from webhook.core.outbox import ReplyKind, ReplyLimits
from webhook.core.sealing import SEAL_PREFIX, ReceiverSeal, SealedReceiver
from webhook.runtime import Runtime
from webhook.store import keys
from webhook.store.streams import ReplyEntry
from workers import sender

VIBER_ID = "9bJG3D0bA2JhEl0UGqPxbw=="


def queue_help(rt: Runtime, receiver: SealedReceiver) -> None:
    """Queue a help reply to a stored receiver, as the webhook does for text that names no option."""
    entry = ReplyEntry(
        channel="viber", kind=ReplyKind.HELP.value, receiver=receiver, poll="main", language="en"
    )
    limits = ReplyLimits(rate_limit=5, rate_window_s=60, seen_ttl_s=3600)
    rt.outbox.queue_reply(entry, voter=receiver.encode()[-12:], token=next_token(), limits=limits)


def test_sealed_id_opens_to_itself_and_hides_it() -> None:
    """A sealed id is marked, does not contain the id, differs every time, and opens again."""
    seal = ReceiverSeal(VOTER_ID_SECRET)
    first, second = seal.seal(VIBER_ID), seal.seal(VIBER_ID)
    assert first.startswith(SEAL_PREFIX) and first.isascii()
    assert VIBER_ID not in first and VIBER_ID[:8] not in first
    assert first != second
    assert seal.open(first) == seal.open(second) == VIBER_ID
    assert seal.open(seal.seal("ид-юнікод")) == "ид-юнікод"


def test_id_sealed_under_another_secret_or_damaged_is_refused() -> None:
    """Only the service's own secret opens a sealed id, and a changed byte is noticed."""
    sealed = ReceiverSeal("another-secret-0123456789").seal(VIBER_ID)
    seal = ReceiverSeal(VOTER_ID_SECRET)
    with pytest.raises(UnreadableReceiver):
        seal.open(sealed)
    mine = seal.seal(VIBER_ID)
    middle = len(mine) // 2
    flipped = mine[:middle] + ("A" if mine[middle] != "A" else "B") + mine[middle + 1 :]
    for damaged in (flipped, mine[:-6], SEAL_PREFIX, SEAL_PREFIX + "!!!"):
        with pytest.raises(UnreadableReceiver):
            seal.open(damaged)


def test_reply_queued_before_sealing_still_reaches_its_voter(
    rt: Runtime, senders: dict[str, ChannelSender], fake_viber: FakeViber
) -> None:
    """A reply that a version storing ids in clear queued is sent to that id after an upgrade."""
    assert ReceiverSeal(VOTER_ID_SECRET).open(VIBER_ID) == VIBER_ID
    queue_help(rt, SealedReceiver("legacy-voter"))  # the id in clear, as the older web process left it
    assert sender.drain(rt, senders, "t") == {"sent": 1}
    [message] = fake_viber.messages_to("legacy-voter")
    assert "To vote" in message["text"]


def test_webhook_stores_only_sealed_ids(client, redis: Redis) -> None:  # type: ignore[no-untyped-def]
    """The vote waiting for its tally and the help reply waiting to be sent both hold a sealed id."""
    assert post_callback(client, message_event("seal-voter", "yes", tracking_data="main")).status_code == 200
    assert (
        post_callback(client, message_event("seal-helped", "maybe", tracking_data="main")).status_code == 200
    )
    stored = [f[b"receiver"] for _, f in redis.xrange(keys.VOTES_STREAM) + redis.xrange(keys.OUTBOX_STREAM)]
    assert len(stored) == 2 and all(s.startswith(SEAL_PREFIX.encode()) for s in stored)
    assert [ReceiverSeal(VOTER_ID_SECRET).open(s.decode()) for s in stored] == ["seal-voter", "seal-helped"]


def test_unreadable_receiver_is_dead_lettered_not_sent(
    rt: Runtime, redis: Redis, senders: dict[str, ChannelSender], fake_viber: FakeViber
) -> None:
    """A reply whose id no longer opens (the secret was changed) is parked as a dead letter, saying why."""
    queue_help(rt, ReceiverSeal("the-secret-before-rotation-000").seal("rotated-voter"))
    assert redis.xlen(keys.OUTBOX_STREAM) == 1
    assert sender.drain(rt, senders, "t") == {"dead": 1}
    assert fake_viber.requests == []
    [dead] = redis.lrange(keys.OUTBOX_DEAD, 0, -1)
    assert json.loads(dead)["why"].startswith("receiver unreadable")
