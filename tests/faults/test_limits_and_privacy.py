"""A flooded chat, Viber timing out, and what a run leaves in Redis, its files and the logs."""

from __future__ import annotations

import json
import time
import urllib.request

from redis import Redis

from tests.conftest import (
    BOT_TOKEN,
    OPERATOR_TOKEN,
    TELEGRAM_SECRET,
    TELEGRAM_TOKEN,
    VOTER_ID_SECRET,
    message_event,
    opened,
    post_callback,
    post_live,
)
from tests.faults.conftest import pipeline_idle, wait_until
from tests.support.fake_telegram import FakeTelegram
from tests.support.fake_viber import FakeViber
from tests.support.redis_server import RedisServer
from tests.support.stack import Stack
from tests.support.telegram_chat import SECRET_HEADER, message_update, tap_update
from tests.support.telegram_chat import contact as telegram_contact
from webhook.channels.base import ChannelSender
from webhook.channels.viber import ViberSender
from webhook.channels.viber.client import AsyncViberClient
from webhook.core.sealing import SEAL_PREFIX
from webhook.runtime import Runtime
from webhook.store import keys
from workers import sender, tally


def outbox_receivers(redis: Redis) -> list[str]:
    """Receivers of the replies waiting in the outbox."""
    return [opened(fields[b"receiver"]) for _, fields in redis.xrange(keys.OUTBOX_STREAM)]


def test_flooding_one_chat_cannot_crowd_out_others(
    client, rt: Runtime, redis: Redis, fake_viber: FakeViber, senders: dict[str, ChannelSender]
):
    """200 texts from one voter queue at most REPLY_RATE_LIMIT replies; another voter is served at once."""
    for _ in range(200):
        assert post_callback(client, message_event("flooder", "hello?")).status_code == 200
    assert outbox_receivers(redis).count("flooder") == rt.config.reply_rate_limit
    assert int(redis.hget(keys.STATS, "reply_limited")) == 200 - rt.config.reply_rate_limit
    assert post_callback(client, message_event("neighbour", "yes")).status_code == 200
    assert tally.drain(rt, "t") == 1
    sender.drain(rt, senders, "t")
    assert "is counted" in fake_viber.messages_to("neighbour")[0]["text"]
    assert len(fake_viber.messages_to("flooder")) == rt.config.reply_rate_limit


def test_viber_timing_out_is_retried_later_and_the_vote_stays_counted(
    client, rt: Runtime, redis: Redis, fake_viber: FakeViber
):
    """Three answers slower than the read timeout park the confirmation; it goes out on the retry."""
    viber = AsyncViberClient(rt.config.viber_api_url, rt.config.viber_auth_token, read_timeout_s=0.3)
    senders = {"viber": ViberSender(viber, rt.config.bot_name)}
    fake_viber.fail_next(3, http_status=200, delay_s=1.0)
    assert post_callback(client, message_event("slow-api", "no")).status_code == 200
    assert tally.drain(rt, "t") == 1
    with viber:
        assert sender.drain(rt, senders, "t") == {"retry": 1}
        [(parked, _)] = redis.zrange(keys.OUTBOX_RETRY, 0, -1, withscores=True)
        assert b"Timeout" in parked and b'"attempts": "1"' in parked
        assert rt.ballot_box.counts(rt.polls.get("main"))["no"] == 1
        assert rt.outbox.move_due_retries(now=time.time() + sender.RETRY_DELAYS_S[0]) == 1
        assert sender.drain(rt, senders, "t") == {"sent": 1}
    assert redis.zcard(keys.OUTBOX_RETRY) == 0
    assert rt.ballot_box.counts(rt.polls.get("main")) == {"yes": 0, "no": 1, "abstain": 0}


def redis_dump(redis: Redis) -> bytes:
    """Every key with every value it holds, as bytes."""
    dump = []
    for key in redis.scan_iter(count=1000):
        kind = redis.type(key)
        if kind == b"string":
            value = repr(redis.get(key))
        elif kind == b"hash":
            value = repr(redis.hgetall(key))
        elif kind == b"list":
            value = repr(redis.lrange(key, 0, -1))
        elif kind == b"set":
            value = repr(redis.smembers(key))
        elif kind == b"zset":
            value = repr(redis.zrange(key, 0, -1, withscores=True))
        elif kind == b"stream":
            value = repr(redis.xrange(key))
        else:
            value = repr(redis.dump(key))
        dump.append(key + b" " + value.encode())
    return b"\n".join(dump)


def post_telegram(stack: Stack, update: dict) -> int:
    """POST a Telegram update with the webhook secret to the running web process; the status."""
    request = urllib.request.Request(
        f"{stack.base_url}/telegram/webhook",
        data=json.dumps(update).encode(),
        headers={SECRET_HEADER: TELEGRAM_SECRET, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def test_no_id_phone_or_token_in_redis_its_files_or_logs(
    aof_stack: Stack, aof_redis: RedisServer, fake_viber: FakeViber, fake_telegram: FakeTelegram
):
    """After votes in both messengers, phone verifications, replies and a dead letter: Redis, its
    append-only file and every log hold only keyed hashes and sealed ids."""
    stack, redis = aof_stack, aof_redis.client(socket_timeout=5)
    voters = [f"privacy-voter-{i:03d}" for i in range(20)]
    for voter in voters:
        assert post_live(stack, message_event(voter, "yes"))[0] == 200
    assert post_live(stack, message_event(voters[0], "no"))[0] == 200
    phone_user, phone = "privacy-phone-user", "+375291234567"
    assert post_live(stack, message_event(phone_user, "yes", tracking_data="phone"))[0] == 200
    contact = message_event(phone_user, "", tracking_data="phone")
    contact["message"] = {"type": "contact", "contact": {"phone_number": phone}, "tracking_data": "phone"}
    assert post_live(stack, contact)[0] == 200
    assert post_live(stack, message_event(phone_user, "yes", tracking_data="phone"))[0] == 200
    telegram_user, telegram_phone = 9876543210123, "375447654321"
    for update in (
        message_update(telegram_user, **telegram_contact(telegram_phone, telegram_user)),
        tap_update(telegram_user, "phone:0"),
    ):
        assert post_telegram(stack, update) == 200
    fake_telegram.wait_for_messages(2, timeout_s=20)
    fake_viber.wait_for_messages(len(voters) + 4, timeout_s=20)
    wait_until(lambda: pipeline_idle(redis), 20, "the pipeline to drain")
    fake_viber.fail_next(1, viber_status=3)
    assert post_live(stack, message_event("privacy-dead-letter", "no"))[0] == 200
    wait_until(lambda: redis.llen(keys.OUTBOX_DEAD) == 1, 20, "the reply to be dead-lettered")

    files = [p for p in aof_redis.directory.rglob("*") if p.is_file() and not p.name.endswith(".log")]
    on_disk = b"\n".join(p.read_bytes() for p in files)
    assert b"XADD" in on_disk and keys.VOTES_STREAM.encode() in on_disk, (
        "the append-only file holds the votes"
    )
    logs = b"\n".join(p.read_bytes() for p in stack.log_dir.glob("*.log"))
    everything = b"\n".join([redis_dump(redis), on_disk, logs])
    assert b"privacy-voter" in b"".join(str(m).encode() for m in fake_viber.sent_messages())
    secrets = [*voters, "privacy-dead-letter", phone_user, phone, phone[1:], BOT_TOKEN, OPERATOR_TOKEN]
    secrets += [str(telegram_user), telegram_phone, TELEGRAM_TOKEN, TELEGRAM_SECRET]
    leaked = [s for s in [*secrets, VOTER_ID_SECRET] if s.encode() in everything]
    assert leaked == [], f"found in Redis, its files or logs: {leaked}"
    assert SEAL_PREFIX.encode() in on_disk
    assert redis.hgetall(keys.counts("phone")) == {b"yes": b"2"}
    [dead] = redis.lrange(keys.OUTBOX_DEAD, 0, -1)
    assert opened(json.loads(dead)["receiver"]) == "privacy-dead-letter"
    redis.close()
