"""A first vote through the webhook and the tally and send stages, in-process."""

import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import conversation_started, message_event, post_callback, post_live
from tests.support.redis_server import free_port
from tests.support.stack import Stack
from webhook.core.ledger import recount
from workers import sender, tally


def test_vote_is_counted_and_confirmed(client, rt, fake_viber, senders):
    welcome = post_callback(client, conversation_started("user-1"))
    assert welcome.status_code == 200
    assert [b["ActionBody"] for b in welcome.json["keyboard"]["Buttons"]] == ["yes", "no", "abstain"]
    response = post_callback(client, message_event("user-1", "yes", tracking_data="main"))
    assert response.status_code == 200
    assert tally.drain(rt, "test") == 1
    assert sender.drain(rt, senders, "test")["sent"] == 1
    [message] = fake_viber.messages_to("user-1")
    assert "counted" in message["text"]
    assert rt.ballot_box.counts(rt.polls.get("main")) == {"yes": 1, "no": 0, "abstain": 0}
    assert recount(rt.redis, rt.polls.get("main")).matches


def niceness(pid: int) -> int:
    """A process's nice value, from /proc (field 19 of its stat line)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def worker_pids(stack, name: str) -> list[int]:  # type: ignore[no-untyped-def]
    """The Procfile process's own pid and its children's (the worker under workers.keepalive)."""
    pids = [process.pid for process in stack.processes[name]]
    for pid in list(pids):
        children = Path(f"/proc/{pid}/task/{pid}/children")
        pids += [int(child) for child in children.read_text().split()] if children.exists() else []
    return pids


def test_stack_counts_and_confirms_a_vote(stack, redis, fake_viber):
    status, _ = post_live(stack, message_event("user-live", "no"))
    assert status == 200
    [message] = fake_viber.wait_for_messages(1)
    assert message["receiver"] == "user-live"
    assert redis.hgetall("vv:poll:main:counts") == {b"no": b"1"}
    assert {niceness(pid) for name in ("web", "tally") for pid in worker_pids(stack, name)} == {0}


def test_the_send_worker_yields_the_cpu_by_default(environ, tmp_path):
    """Confirmations yield the CPU to intake (SEND_NICE, 10 unless set); the web and tally run at 0."""
    settings = {k: v for k, v in environ.items() if k != "SEND_NICE"}
    stack = Stack(settings, tmp_path / "logs", port=free_port())
    try:
        stack.log_dir.mkdir(parents=True)
        stack.start_process("send")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the worker under workers.keepalive, once it niced itself
            send = worker_pids(stack, "send")
            if len(send) == 2 and niceness(send[-1]) != 0:
                break
            time.sleep(0.1)
        assert len(send) == 2 and niceness(send[-1]) == 10
    finally:
        stack.stop()


def test_stack_metrics_sum_every_web_process(stack, redis, environ):
    for i in range(6):
        assert post_live(stack, message_event(f"m-{i}", "yes"))[0] == 200
    request = urllib.request.Request(
        f"{stack.base_url}/metrics", headers={"Authorization": f"Bearer {environ['OPERATOR_TOKEN']}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
    accepted = [
        s.value for s in families["viber_vote_webhook_votes"].samples if s.labels.get("outcome") == "accepted"
    ]
    assert sum(accepted) == 6
    assert families["viber_vote_webhook_seconds"].samples
