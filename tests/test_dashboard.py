"""Operators' dashboard and the public page, in-process: login, live state, CSRF, audit, caching."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from redis import Redis
from rq import Worker

from tests.conftest import OPERATOR_TOKEN, message_event, operator_token, post_callback
from tests.support.redis_server import RedisServer
from webhook import create_app
from webhook.config import Config
from webhook.core.polls import PollStatus
from webhook.operator.journal import AUDIT_KEY
from webhook.runtime import Runtime
from webhook.store import keys
from workers import tally

BEARER = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
SESSION_COOKIE = "vv_dashboard"


def login_form_csrf(client: FlaskClient) -> str:
    """Load the login form and return its CSRF token."""
    page = client.get("/dashboard/login")
    assert page.status_code == 200
    found = CSRF_INPUT.search(page.text)
    assert found, page.text
    return found.group(1)


def account_token(client: FlaskClient, name: str) -> str:
    """The token of operator account `name` (made on first use; "bootstrap": OPERATOR_TOKEN)."""
    return operator_token(client.application.extensions["viber_vote"].redis, name)


def login(client: FlaskClient, name: str = "Alice", next_url: str | None = None) -> str:
    """Log in through the form as an operator account; returns the session's CSRF token for later POSTs."""
    data = {"name": name, "token": account_token(client, name), "csrf_token": login_form_csrf(client)}
    if next_url is not None:
        data["next"] = next_url
    response = client.post("/dashboard/login", data=data)
    assert response.status_code == 303, response.text
    page = client.get("/dashboard/")
    assert page.status_code == 200
    found = CSRF_META.search(page.text)
    assert found
    return found.group(1)


def vote(client: FlaskClient, user: str, text: str, poll: str = "main") -> None:
    """One vote through the signed webhook."""
    assert post_callback(client, message_event(user, text, tracking_data=poll)).status_code == 200


def rejected_bad_signatures() -> int:
    """This process's count of callbacks refused for a bad signature."""
    value = REGISTRY.get_sample_value("viber_vote_callbacks_rejected_total", {"reason": "bad_signature"})
    return int(value or 0)


def data_commands(redis: Redis) -> dict[str, int]:
    """Redis commands called since the last CONFIG RESETSTAT, without the test's own INFO/CONFIG."""
    stats = redis.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if not name.startswith(("cmdstat_info", "cmdstat_config"))
    }


# --- login, sessions, cookies -------------------------------------------------------------


def test_dashboard_redirects_to_login_when_logged_out(client: FlaskClient) -> None:
    """The page sends a visitor without a session to the login form."""
    response = client.get("/dashboard/?poll=main")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/dashboard/login?next=")
    assert client.get("/dashboard/api/state").status_code == 401


@pytest.mark.parametrize(
    "wrong",
    [
        pytest.param(lambda token: "wrong-token-0123456789abcdef", id="wrong"),
        pytest.param(lambda token: token + "x", id="plus-one-char"),
        pytest.param(lambda token: token[:-1], id="minus-one-char"),
        pytest.param(lambda token: "", id="empty"),
        pytest.param(lambda token: OPERATOR_TOKEN, id="bootstrap-token-once-an-account-exists"),
    ],
)
def test_wrong_token_is_refused(client: FlaskClient, redis: Redis, wrong: Any) -> None:
    """A wrong operator token gets 401, no session, and nothing in the audit log."""
    csrf = login_form_csrf(client)
    token = wrong(account_token(client, "Mallory"))
    response = client.post("/dashboard/login", data={"name": "Mallory", "token": token, "csrf_token": csrf})
    assert response.status_code == 401
    assert "Wrong operator name or token" in response.text
    assert client.get("/dashboard/").status_code == 302
    assert redis.llen(AUDIT_KEY) == 0


def test_login_needs_the_forms_csrf_token(client: FlaskClient) -> None:
    """A login POST without the form's token (a login-CSRF attempt) is refused."""
    client.get("/dashboard/login")
    data = {"name": "A", "token": account_token(client, "A"), "csrf_token": "x"}
    response = client.post("/dashboard/login", data=data)
    assert response.status_code == 400
    assert client.get("/dashboard/").status_code == 302


def test_login_sets_a_hardened_session_and_is_audited(client: FlaskClient, redis: Redis) -> None:
    """The right token starts a session whose cookie is HttpOnly, SameSite=Strict, /dashboard only."""
    csrf = login_form_csrf(client)
    response = client.post(
        "/dashboard/login",
        data={"name": "Alice", "token": account_token(client, "Alice"), "csrf_token": csrf},
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/dashboard/"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/dashboard" in cookie
    assert "Secure" not in cookie  # the test app is in testing mode: plain http
    page = client.get("/dashboard/")
    assert page.status_code == 200
    assert "Do you support negotiations?" in page.text
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page.text
    assert page.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    entry = json.loads(redis.lindex(AUDIT_KEY, 0))
    assert (entry["who"], entry["what"], entry["poll"]) == ("Alice", "log in", None)
    assert CSRF_META.search(page.text).group(1) != csrf  # a new token once logged in


def test_session_cookie_is_secure_unless_allowed(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside tests the cookie is Secure; DASHBOARD_INSECURE_COOKIE=1 allows plain http."""
    app.testing = False
    monkeypatch.delenv("DASHBOARD_INSECURE_COOKIE", raising=False)
    secure = app.test_client().get("/dashboard/login").headers["Set-Cookie"]
    assert "; Secure" in secure
    monkeypatch.setenv("DASHBOARD_INSECURE_COOKIE", "1")
    insecure = app.test_client().get("/dashboard/login").headers["Set-Cookie"]
    assert "Secure" not in insecure


def test_every_worker_accepts_the_session_and_a_new_token_ends_it(
    config: Config, environ: dict[str, str], redis: Redis
) -> None:
    """Two processes built from one config share the login (in Redis); another bootstrap token ends it."""
    first, second = create_app(config), create_app(config)
    first.testing = second.testing = True
    browser = first.test_client()
    login(browser, "bootstrap")
    cookie = browser.get_cookie(SESSION_COOKIE, path="/dashboard")
    assert cookie is not None
    other_worker = second.test_client()
    other_worker.set_cookie(SESSION_COOKIE, cookie.value, path="/dashboard")
    assert other_worker.get("/dashboard/").status_code == 200
    rotated = create_app({**environ, "OPERATOR_TOKEN": "a-brand-new-operator-token-42"})
    rotated.testing = True
    after_rotation = rotated.test_client()
    after_rotation.set_cookie(SESSION_COOKIE, cookie.value, path="/dashboard")
    assert after_rotation.get("/dashboard/").status_code == 302


@pytest.mark.parametrize(
    ("wanted", "landing"),
    [
        ("/dashboard/rq/", "/dashboard/rq/"),
        ("https://evil.example/", "/dashboard/"),
        ("//evil.example/dashboard/", "/dashboard/"),
        ("/dashboard/\\evil.example", "/dashboard/"),
    ],
)
def test_login_redirects_only_inside_the_dashboard(client: FlaskClient, wanted: str, landing: str) -> None:
    """?next= may only point at a dashboard page (no open redirect)."""
    csrf = login_form_csrf(client)
    data = {"name": "Alice", "token": account_token(client, "Alice"), "csrf_token": csrf, "next": wanted}
    response = client.post("/dashboard/login", data=data)
    assert response.status_code == 303
    assert response.headers["Location"] == landing


def test_logout_needs_csrf_and_ends_the_session(client: FlaskClient, redis: Redis) -> None:
    """Logging out is a CSRF-checked POST; afterwards the dashboard asks for a login again."""
    csrf = login(client, "Bob")
    assert client.post("/dashboard/logout", data={}).status_code == 403
    assert client.get("/dashboard/").status_code == 200
    assert client.post("/dashboard/logout", data={"csrf_token": csrf}).status_code == 303
    assert client.get("/dashboard/").status_code == 302
    assert json.loads(redis.lindex(AUDIT_KEY, 0))["what"] == "log out"


# --- the live state --------------------------------------------------------------------------


def test_state_has_the_exact_numbers_after_votes(client: FlaskClient, rt: Runtime, redis: Redis) -> None:
    """Counts, percentages, votes per minute and pipeline figures match what happened."""
    bad_before = rejected_bad_signatures()
    for user, text in {"d-a": "yes", "d-b": "Yes", "d-c": "no"}.items():
        vote(client, user, text)
    vote(client, "d-a", "no")  # a second vote by d-a: a duplicate
    bad = client.post("/viber/webhook", data=b"{}", headers={"X-Viber-Content-Signature": "00"})
    assert bad.status_code == 403
    assert tally.drain(rt, "t") == 3
    redis.rpush(keys.OUTBOX_DEAD, b"a dead-lettered reply")
    Worker(["tally"], connection=redis, name="dash-test-worker").register_birth()
    login(client)
    state = client.get("/dashboard/api/state?poll=main").json
    assert state["poll"] == {
        "id": "main",
        "question": "Do you support negotiations?",
        "status": "open",
        "results_policy": "after_close",
        "opens_at": None,
        "closes_at": None,
        "closes_in_s": None,
        "opens_in_s": None,
    }
    assert state["total"] == 3
    assert state["options"] == [
        {"id": "yes", "label": "Yes", "votes": 2, "percent": 66.7},
        {"id": "no", "label": "No", "votes": 1, "percent": 33.3},
        {"id": "abstain", "label": "Abstain", "votes": 0, "percent": 0.0},
    ]
    minutes = state["minutes"]
    assert len(minutes) == 60
    assert minutes[-1][0] == int(state["now"]) // 60
    assert [m[0] for m in minutes] == list(range(minutes[0][0], minutes[0][0] + 60))
    assert sum(votes for _, votes in minutes) == 3
    assert sum(votes for _, votes in minutes[-2:]) == 3  # all cast within the last minute or two
    pipeline = state["pipeline"]
    assert pipeline["duplicates_rejected"] == 1
    assert pipeline["invalid_signatures"] == bad_before + 1
    assert pipeline["votes_queued"] == 0
    assert pipeline["jobs_queued"] == {"tally": 1, "send": 1}  # kicks no worker ran (drain ran in-process)
    assert pipeline["queue_depth"] == 2
    assert pipeline["confirmations_pending"] == 4  # 3 receipts + 1 "already voted", none sent yet
    assert pipeline["dead_letters"] == 1
    assert pipeline["workers"] == 1
    assert [e["what"] for e in state["audit"]] == ["log in"]


def test_state_shows_time_left_and_other_polls(
    client: FlaskClient, tmp_path: Path, environ: dict[str, str]
) -> None:
    """A scheduled poll shows the seconds until it opens; an unknown poll is a 404."""
    login(client)
    future = client.get("/dashboard/api/state?poll=future").json["poll"]
    assert future["status"] == "not_open"
    opens_at = datetime(2099, 1, 1, tzinfo=UTC).timestamp()
    assert future["opens_in_s"] == pytest.approx(opens_at - time.time(), abs=5)
    assert future["closes_in_s"] is None
    assert client.get("/dashboard/api/state?poll=past").json["poll"]["status"] == "closed"
    assert client.get("/dashboard/api/state?poll=nope").status_code == 404
    page = client.get("/dashboard/?poll=past").text
    assert 'id="poll-select"' in page
    assert '<option value="past" selected>' in page


def test_bearer_token_reads_the_json_endpoints_and_changes_nothing(client: FlaskClient, redis: Redis) -> None:
    """API clients read with a Bearer token instead of a session; a token (a scraper's, a script's)
    cannot close a poll or export: changes need a logged-in operator, who is audited by name."""
    assert client.get("/dashboard/api/state", headers=BEARER).json["poll"]["id"] == "main"
    wrong = {"Authorization": "Bearer not-the-operator-token-000"}
    assert client.get("/dashboard/api/state", headers=wrong).status_code == 401
    refused = client.post("/dashboard/api/polls/main/status", json={"status": "closed"}, headers=BEARER)
    assert refused.status_code == 403
    assert client.get("/dashboard/export/main/receipts.csv", headers=BEARER).status_code == 403
    assert (
        client.post("/dashboard/api/polls/main/status", json={"status": "open"}, headers=wrong).status_code
        == 401
    )
    assert redis.get(keys.state("main")) is None
    assert redis.llen(AUDIT_KEY) == 0


@pytest.mark.parametrize(
    "headers",
    [pytest.param({}, id="no-token"), pytest.param({"X-CSRF-Token": "forged"}, id="forged-token")],
)
def test_status_change_needs_the_csrf_token(
    client: FlaskClient, redis: Redis, headers: dict[str, str]
) -> None:
    """A logged-in browser's POST without its CSRF token changes nothing."""
    login(client)
    response = client.post("/dashboard/api/polls/main/status", data={"status": "closed"}, headers=headers)
    assert response.status_code == 403
    assert redis.get(keys.state("main")) is None
    assert [json.loads(e)["what"] for e in redis.lrange(AUDIT_KEY, 0, -1)] == ["log in"]


def test_close_and_open_take_effect_and_are_audited(client: FlaskClient, rt: Runtime, redis: Redis) -> None:
    """Closing stops votes, reopening accepts them; each action is in the audit log, newest first."""
    csrf = login(client, "Carol")
    url = "/dashboard/api/polls/main/status"
    before = time.time()
    closed = client.post(
        url, data={"status": "closed"}, headers={"X-CSRF-Token": csrf, "Accept": "application/json"}
    )
    assert closed.status_code == 200
    assert closed.json["poll"]["status"] == "closed"
    assert rt.ballot_box.status(rt.polls.get("main")) is PollStatus.CLOSED
    vote(client, "late-voter", "yes")
    assert redis.hget(keys.STATS, "vote_closed") == b"1"
    opened = client.post(
        url, data={"status": "open", "csrf_token": csrf}, headers={"Accept": "application/json"}
    )
    assert opened.json["poll"]["status"] == "open"
    following = client.post(url, data={"status": "schedule", "csrf_token": csrf})  # a plain form post
    assert following.status_code == 303
    assert following.headers["Location"] == "/dashboard/?poll=main"
    assert redis.get(keys.state("main")) is None
    entries = client.get("/dashboard/api/state").json["audit"]
    assert [(e["who"], e["what"], e["poll"]) for e in entries] == [
        ("Carol", "follow schedule", "main"),
        ("Carol", "open", "main"),
        ("Carol", "close", "main"),
        ("Carol", "log in", None),
    ]
    assert all(before - 1 <= e["when"] <= time.time() + 1 for e in entries)


def test_status_change_refuses_bad_requests(client: FlaskClient, redis: Redis) -> None:
    """An unknown status is a 400 and an unknown poll a 404; neither is audited."""
    csrf = {"X-CSRF-Token": login(client)}
    bad = client.post("/dashboard/api/polls/main/status", json={"status": "not_open"}, headers=csrf)
    assert bad.status_code == 400
    missing = client.post("/dashboard/api/polls/nope/status", json={"status": "open"}, headers=csrf)
    assert missing.status_code == 404
    assert [json.loads(e)["what"] for e in redis.lrange(AUDIT_KEY, 0, -1)] == ["log in"]


def test_exports_download_with_login_and_are_audited(client: FlaskClient, rt: Runtime, redis: Redis) -> None:
    """Results, ballots and receipts download as attachments, for operators only."""
    vote(client, "e-a", "yes")
    vote(client, "e-b", "abstain")
    assert tally.drain(rt, "t") == 2
    assert client.get("/dashboard/export/main/results.csv").status_code == 401
    login(client, "Dan")
    results = client.get("/dashboard/export/main/results.csv")
    assert results.status_code == 200
    assert results.mimetype == "text/csv"
    assert results.headers["Content-Disposition"] == 'attachment; filename="main-results.csv"'
    assert "yes" in results.text and "abstain" in results.text
    ballots = client.get("/dashboard/export/main/ballots.json")
    assert sorted(row["option"] for row in ballots.json) == ["abstain", "yes"]
    receipts = client.get("/dashboard/export/main/receipts.csv").text.split()
    assert len(receipts) == 3  # a header and two codes
    assert client.get("/dashboard/export/main/voters.csv").status_code == 404
    assert client.get("/dashboard/export/main/results.xml").status_code == 404
    assert [json.loads(e)["what"] for e in redis.lrange(AUDIT_KEY, 0, 2)] == [
        "export receipts csv",
        "export ballots json",
        "export results csv",
    ]


# --- rq-dashboard ----------------------------------------------------------------------------


def test_rq_dashboard_is_behind_the_login(client: FlaskClient, rt: Runtime) -> None:
    """rq-dashboard works with this rq and Flask, but only for logged-in operators."""
    vote(client, "rq-a", "yes")  # kicks a tally job onto the `tally` queue
    Worker(["tally", "send"], connection=rt.redis, name="rq-dash-worker").register_birth()
    assert client.get("/dashboard/rq/").status_code == 302
    assert client.get("/dashboard/rq/0/data/queues.json").status_code == 401
    assert client.get("/dashboard/rq/0/data/queues.json", headers=BEARER).status_code == 200
    login(client)
    overview = client.get("/dashboard/rq/")
    assert overview.status_code == 200
    assert overview.headers["X-Frame-Options"] == "DENY"
    queues = {q["name"]: q["count"] for q in client.get("/dashboard/rq/0/data/queues.json").json["queues"]}
    assert queues["tally"] == 1
    workers = client.get("/dashboard/rq/0/data/workers.json").json["workers"]
    assert [w["name"] for w in workers] == ["rq-dash-worker"]
    jobs = client.get("/dashboard/rq/0/data/jobs/tally/queued/8/asc/1.json").json
    assert "workers.tally.drain_votes" in jobs["jobs"][0]["description"]
    job_id = jobs["jobs"][0]["id"]
    forged = client.post(f"/dashboard/rq/job/{job_id}/delete")  # no X-Requested-With: a cross-site form
    assert forged.status_code == 403
    elsewhere = {"X-Requested-With": "XMLHttpRequest", "Origin": "https://evil.example"}
    assert client.post(f"/dashboard/rq/job/{job_id}/delete", headers=elsewhere).status_code == 403
    assert client.get("/dashboard/rq/requeue/tally").status_code == 405
    ajax = {"X-Requested-With": "XMLHttpRequest", "Origin": "https://localhost"}  # TLS ends at a proxy
    deleted = client.post(f"/dashboard/rq/job/{job_id}/delete", headers=ajax)
    assert deleted.json == {"status": "OK"}
    assert client.get("/dashboard/rq/0/data/queues.json").json["queues"][0]["count"] == 0


# --- the public page -------------------------------------------------------------------------


def public_app(environ: dict[str, str], tmp_path: Path, results: str, **extra: str) -> Flask:
    """An app whose current poll has this results policy."""
    poll_file = tmp_path / "public.toml"
    poll_file.write_text(
        "[[polls]]\n"
        'id = "pub"\n'
        f'results = "{results}"\n'
        'question = { en = "Public question?", ru = "Публичный вопрос?" }\n'
        '[[polls.options]]\nid = "yes"\nlabel = { en = "Yes", ru = "Да" }\n'
        '[[polls.options]]\nid = "no"\nlabel = "No"\n'
    )
    app = create_app({**environ, "POLL_FILE": str(poll_file), **extra})
    app.testing = True
    return app


def cast_public(app: Flask, votes: dict[str, str]) -> None:
    """Vote in the `pub` poll and tally."""
    client = app.test_client()
    for user, text in votes.items():
        vote(client, user, text, poll="pub")
    assert tally.drain(app.extensions["viber_vote"], "t") == len(votes)


@pytest.mark.parametrize(
    ("results", "status", "visible"),
    [
        ("live", PollStatus.OPEN, True),
        ("after_close", PollStatus.OPEN, False),
        ("after_close", PollStatus.CLOSED, True),
        ("hidden", PollStatus.CLOSED, False),
    ],
)
def test_public_page_shows_results_only_as_the_policy_allows(
    environ: dict[str, str], tmp_path: Path, redis: Redis, results: str, status: PollStatus, visible: bool
) -> None:
    """Question and total always; per-option counts only when poll.results_visible(status)."""
    app = public_app(environ, tmp_path, results)
    cast_public(app, {"p-a": "yes", "p-b": "yes", "p-c": "no"})
    app.extensions["viber_vote"].ballot_box.set_status(app.extensions["viber_vote"].polls.get("pub"), status)
    page = app.test_client().get("/")
    assert page.status_code == 200
    assert "Public question?" in page.text
    assert '<span id="total">3</span>' in page.text
    assert ('<span class="votes">2</span>' in page.text) is visible
    assert ("66.7%" in page.text) is visible
    live = app.test_client().get("/live.json").json
    assert live["total"] == 3
    if visible:
        assert live["options"] == [
            {"id": "yes", "label": "Yes", "votes": 2, "percent": 66.7},
            {"id": "no", "label": "No", "votes": 1, "percent": 33.3},
        ]
    else:
        assert live["options"] is None
        assert 'id="results-note"' in page.text


def test_public_page_speaks_the_visitors_language(
    environ: dict[str, str], tmp_path: Path, redis: Redis
) -> None:
    """The question and labels follow Accept-Language, and the response varies on it."""
    app = public_app(environ, tmp_path, "live")
    page = app.test_client().get("/", headers={"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.5"})
    assert "Публичный вопрос?" in page.text
    assert ">Да<" in page.text
    assert "Accept-Language" in page.headers["Vary"]


@pytest.mark.parametrize(
    ("query", "context"),
    [
        ("", None),
        ("?c=spring_2025-tv", "spring_2025-tv"),
        ("?c=" + "a" * 32, "a" * 32),
        ("?c=" + "a" * 33, None),
        ("?c=%3Cscript%3Ealert(1)%3C/script%3E", None),
        ("?c=a%26b%3Dc", None),
    ],
)
def test_public_page_links_to_the_bot_with_the_campaign(
    environ: dict[str, str], tmp_path: Path, redis: Redis, query: str, context: str | None
) -> None:
    """The button and QR code open viber://pa?chatURI=<uri>&context=<campaign>; bad campaigns are dropped."""
    app = public_app(environ, tmp_path, "live", VIBER_CHAT_URI="myvotebot")
    page = app.test_client().get(f"/{query}").text
    expected = "viber://pa?chatURI=myvotebot" + (f"&amp;context={context}" if context else "")
    assert f'id="open-viber" href="{expected}"' in page
    assert page.count("context=") == (1 if context else 0)
    assert "<script>alert" not in page
    assert re.search(r'<svg role="img" aria-label="QR code: vote in Viber" [^>]*class="qr"', page)


def test_qr_code_changes_with_the_campaign(environ: dict[str, str], tmp_path: Path, redis: Redis) -> None:
    """Each campaign gets its own QR code (the context is inside the code, not only in the button)."""
    client = public_app(environ, tmp_path, "live").test_client()
    qr = re.compile(r'<svg role="img".*?</svg>', re.S)
    codes = {qr.search(client.get(f"/{q}").text).group(0) for q in ("", "?c=tv", "?c=radio")}
    assert len(codes) == 3


def test_public_page_is_cacheable_and_cookie_free(client: FlaskClient) -> None:
    """Browsers and proxies may keep it 5 s; it sets no cookie, so a shared cache can hold it."""
    for path in ("/", "/live.json"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "public, max-age=5"
        assert "Set-Cookie" not in response.headers


def test_a_flood_of_visitors_reads_redis_once_per_interval(client: FlaskClient, redis: Redis) -> None:
    """After one request has read the poll, 200 more within 5 s send Redis no command at all."""
    redis.config_resetstat()
    assert client.get("/").status_code == 200
    first = data_commands(redis)
    assert first.get("get") == 1 and first.get("hgetall") == 1  # the override and the counts
    redis.config_resetstat()
    for i in range(100):
        assert client.get("/").status_code == 200
        assert client.get(f"/live.json?n={i}").status_code == 200
    assert data_commands(redis) == {}


def test_public_numbers_refresh_after_the_cache_interval(
    app: Flask, client: FlaskClient, rt: Runtime, redis: Redis
) -> None:
    """A vote shows up once the cached read expires, not before."""
    app.config["PUBLIC_CACHE_SECONDS"] = 0.3
    assert client.get("/live.json").json["total"] == 0
    vote(client, "c-a", "yes")
    assert tally.drain(rt, "t") == 1
    assert client.get("/live.json").json["total"] == 0  # still the cached read
    time.sleep(0.35)
    assert client.get("/live.json").json["total"] == 1


def test_dashboard_page_lists_controls_and_downloads(client: FlaskClient) -> None:
    """The page has the poll's bars, the open/close forms with CSRF fields, and export links."""
    csrf = login(client)
    page = client.get("/dashboard/").text
    for option in ("yes", "no", "abstain"):
        assert f'<li data-option="{option}">' in page
    assert page.count(f'name="csrf_token" value="{csrf}"') == 4  # open, close, schedule, log out
    assert 'data-confirm="Close the poll now?' in page
    assert 'href="/dashboard/export/main/ballots.csv"' in page
    assert 'href="/dashboard/rq/"' in page


def test_public_page_keeps_its_last_numbers_while_redis_is_down(
    environ: dict[str, str], tmp_path: Path
) -> None:
    """A Redis outage after a good read serves the last numbers; with no read yet it is a 503."""
    with RedisServer(tmp_path / "own-redis") as own:
        own.client().hset(keys.counts("main"), mapping={"yes": 4, "no": 1})
        app = create_app({**environ, "REDIS_URL": own.url})
        app.testing = True
        app.config["PUBLIC_CACHE_SECONDS"] = 0.05
        assert app.test_client().get("/live.json").json["total"] == 5
    time.sleep(0.1)
    assert app.test_client().get("/live.json").json["total"] == 5
    page = app.test_client().get("/")
    assert page.status_code == 200
    assert '<span id="total">5</span>' in page.text
    cold = create_app({**environ, "REDIS_URL": own.url})
    assert cold.test_client().get("/live.json").status_code == 503
