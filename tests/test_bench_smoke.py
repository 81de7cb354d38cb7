"""Smoke runs of the benchmark harness (bench/): its own checks pass on a tiny load, and can fail."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from redis import Redis

from bench import distant
from bench.baselines import create_minimal_app
from bench.loadgen import Kind, Plan
from bench.memory import measure
from bench.run import Observed, Settings, measure_pipeline, verify, write_section
from tests.conftest import signed

SMOKE_VOTERS = 300
MEMORY_VOTES = 20_000
MAX_SMOKE_BYTES_PER_VOTE = 400
"""At 20,000 votes nearly every voter opens two new buckets (claims, ballots) of 65,536 each,
so per-key overhead dominates (~280 bytes/vote); at 1,000,000 it is spread over ~15 voters."""


def test_pipeline_smoke_run_passes_its_checks(tmp_path: Path) -> None:
    settings = Settings(workdir=tmp_path, processes=1, connections=2, verbose=False)
    run = measure_pipeline(settings, "smoke", SMOKE_VOTERS)
    assert [c.line() for c in run.checks if not c.passed] == []
    assert {c.name for c in run.checks} >= {
        "counters total == distinct voters sent",
        "every voter received exactly one confirmation",
        "no duplicates counted",
    }
    assert run.load.count == len(run.plan.items()) > SMOKE_VOTERS
    assert run.drained_at is not None and run.end_to_end_rate is not None
    assert len(run.confirm_latency_s) == SMOKE_VOTERS
    assert all(0 < latency < 30 for latency in run.confirm_latency_s)


def _faithful(plan: Plan) -> Observed:
    """What a correct pipeline leaves after a plan: one ballot, confirmation and count per voter."""
    first: dict[str, str] = {}
    already: Counter[str] = Counter()
    for voter, option, _, kind in plan.items():
        first.setdefault(plan.receiver(voter), plan.options[option])
        if kind is Kind.DUPLICATE:
            already[plan.receiver(voter)] += 1
    counts = Counter(first.values())
    return Observed(
        counts=dict(counts),
        ballots=dict(counts),
        recount_matches=True,
        confirmed={who: [option] for who, option in first.items()},
        already=already,
        queues={"votes": 0, "outbox": 0, "retry": 0, "dead": 0},
    )


def test_checks_fail_on_a_double_count_a_lost_confirmation_and_leftovers() -> None:
    plan = Plan(50, duplicate_share=0.2, retry_share=0.2, seed=7)
    statuses = {200: len(plan.items())}
    assert all(c.passed for c in verify(plan, statuses, _faithful(plan)))

    broken = _faithful(plan)
    broken.counts["yes"] += 1  # a duplicate counted
    lost, doubled = plan.receiver(3), plan.receiver(4)
    del broken.confirmed[lost]
    broken.confirmed[doubled] = broken.confirmed[doubled] * 2
    broken.queues["dead"] = 1
    failed = {c.name for c in verify(plan, {200: len(plan.items()) - 1, 500: 1}, broken) if not c.passed}
    assert failed == {
        "every callback answered 200",
        "counters total == distinct voters sent",
        "every voter received exactly one confirmation",
        "no duplicates counted",
        "queues empty",
    }


def test_plan_sends_duplicates_with_a_new_token_and_retries_with_the_same() -> None:
    plan = Plan(200, duplicate_share=0.5, retry_share=0.5, seed=3)
    items = plan.items()
    firsts = {voter: (option, token) for voter, option, token, kind in items if kind is Kind.FIRST}
    assert len(firsts) == 200
    for voter, option, token, kind in items:
        if kind is Kind.RETRY:
            assert (option, token) == firsts[voter]
        elif kind is Kind.DUPLICATE:
            assert token % 4096 != firsts[voter][1] % 4096
    kinds = Counter(kind for *_, kind in items)
    assert 60 < kinds[Kind.DUPLICATE] < 140 and 60 < kinds[Kind.RETRY] < 140


def test_write_section_replaces_its_own_section_only(tmp_path: Path) -> None:
    report = tmp_path / "BENCHMARKS.md"
    write_section(report, "Throughput", "old throughput")
    write_section(report, "Memory", "memory figures")
    write_section(report, "Throughput", "new throughput")
    text = report.read_text()
    assert "new throughput" in text and "memory figures" in text and "old throughput" not in text
    assert text.index("## Throughput") < text.index("## Memory")


def test_memory_smoke_counts_bytes_per_vote(tmp_path: Path) -> None:
    result = measure(MEMORY_VOTES, tmp_path, processes=1, say=False)
    assert result.accepted == result.counted == MEMORY_VOTES
    assert 0 < result.bytes_per_vote < MAX_SMOKE_BYTES_PER_VOTE
    assert set(result.by_family) >= {
        "vv:poll:negotiations-2021:voters:*",
        "vv:poll:negotiations-2021:ballots:*",
    }


def test_distant_clients_smoke_run_answers_every_callback(tmp_path: Path) -> None:
    """bench.distant runs the web process with the workers asked for and counts answered callbacks."""
    case = distant.Case("sync workers", distant.SYNC_ARGS, rtt_s=0.01, keepalive=True, baseline=True)
    result = distant.measure(case, clients=2, seconds=0.5, workdir=tmp_path)
    assert result.errors == 0 and result.rate > 0
    assert result.worker_class == "sync"
    assert distant.rows([result])[0][5] == "1.00"


def test_minimal_vote_path_claims_each_voter_once_and_queues_the_vote(
    environ: dict[str, str], redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    plan = Plan(20, duplicate_share=0.5, retry_share=0.5, seed=3)
    for variant, streamed in (("full", 20), ("no-stream", 0), ("no-redis", 0)):
        redis.flushdb()
        client = create_minimal_app(variant).test_client()
        for voter, option, token, _ in plan.items():
            body, headers = signed(plan.body(voter, option, token, int(time.time() * 1000)))
            assert client.post("/viber/webhook", data=body, headers=headers).status_code == 200
        claims = sum(redis.hlen(key) for key in redis.scan_iter("vv:minimal:voters:*"))
        assert claims == (0 if variant == "no-redis" else 20), variant
        assert redis.xlen("vv:minimal:votes") == streamed, variant
        body, headers = signed(plan.body(0, 0, 1, 0), token="not-the-bot-token-0123456789")
        assert client.post("/viber/webhook", data=body, headers=headers).status_code == 403
