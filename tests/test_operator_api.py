"""Operator endpoints in-process: /api/results auth and shape, health checks, Redis outages."""

from __future__ import annotations

import base64

import pytest
from flask.testing import FlaskClient
from redis import Redis

from tests.conftest import OPERATOR_TOKEN, conversation_started, message_event, post_callback
from tests.support.redis_server import free_port
from webhook import create_app
from webhook.runtime import Runtime
from workers import tally

BEARER = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


def cast_and_tally(client: FlaskClient, rt: Runtime, choices: dict[str, str]) -> None:
    """Vote through the webhook (user id -> option text) and run the tally worker."""
    for user, text in choices.items():
        assert post_callback(client, message_event(user, text, tracking_data="main")).status_code == 200
    assert tally.drain(rt, "t") == len(choices)


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="no-header"),
        pytest.param("Bearer wrong-token-0123456789abc", id="wrong-token"),
        pytest.param(f"Bearer {OPERATOR_TOKEN}x", id="token-plus-one-char"),
        pytest.param(f"Bearer {OPERATOR_TOKEN[:-1]}", id="token-minus-one-char"),
        pytest.param(f"Basic {OPERATOR_TOKEN}", id="basic-scheme-raw"),
        pytest.param(
            "Basic " + base64.b64encode(f"op:{OPERATOR_TOKEN}".encode()).decode(), id="basic-scheme"
        ),
        pytest.param(OPERATOR_TOKEN, id="no-scheme"),
        pytest.param("Bearer ", id="empty-bearer"),
    ],
)
def test_results_refuse_without_the_operator_token(
    client: FlaskClient, redis: Redis, authorization: str | None
) -> None:
    """Anything but `Bearer <operator token>` is a 401 with a JSON error and a challenge."""
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.get("/api/results", headers=headers)
    assert response.status_code == 401
    assert response.json["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "poll" not in response.json


def test_results_have_the_exact_shape_and_real_counts(client: FlaskClient, rt: Runtime) -> None:
    """With the token, results are the documented JSON with the tallied counts."""
    cast_and_tally(client, rt, {"op-a": "yes", "op-b": "YES", "op-c": "no"})
    response = client.get("/api/results", headers=BEARER)
    assert response.status_code == 200
    assert response.json == {
        "poll": "main",
        "question": "Do you support negotiations?",
        "status": "open",
        "total": 3,
        "options": [
            {"id": "yes", "label": "Yes", "votes": 2},
            {"id": "no", "label": "No", "votes": 1},
            {"id": "abstain", "label": "Abstain", "votes": 0},
        ],
    }


def test_results_count_only_tallied_votes(client: FlaskClient, rt: Runtime) -> None:
    """Votes still queued are not in the counts until the tally worker ran."""
    assert post_callback(client, message_event("op-q", "no", tracking_data="main")).status_code == 200
    assert client.get("/api/results", headers=BEARER).json["total"] == 0
    assert tally.drain(rt, "t") == 1
    assert client.get("/api/results", headers=BEARER).json["total"] == 1


def test_results_of_another_poll(client: FlaskClient, redis: Redis) -> None:
    """?poll= picks a poll; its status follows its schedule."""
    response = client.get("/api/results?poll=future", headers=BEARER)
    assert response.status_code == 200
    assert response.json["poll"] == "future"
    assert response.json["status"] == "not_open"
    assert response.json["total"] == 0
    assert [o["id"] for o in response.json["options"]] == ["a", "b"]


def test_results_of_an_unknown_poll_is_404(client: FlaskClient, redis: Redis) -> None:
    """An unknown poll id is a JSON 404."""
    response = client.get("/api/results?poll=nope", headers=BEARER)
    assert response.status_code == 404
    assert "nope" in response.json["error"]


def test_health_checks(client: FlaskClient, redis: Redis) -> None:
    """/healthz and /readyz answer 200 with Redis up."""
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json == {"status": "ready"}


@pytest.fixture
def down_client(environ: dict[str, str]) -> FlaskClient:
    """A client of the app configured with a Redis on a port nobody listens on."""
    app = create_app({**environ, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    return app.test_client()


def test_readyz_is_503_when_redis_is_unreachable(down_client: FlaskClient) -> None:
    """Readiness fails with a JSON 503 while the process itself stays healthy."""
    ready = down_client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json["error"]
    assert down_client.get("/healthz").status_code == 200


def test_webhook_is_503_for_a_vote_when_redis_is_unreachable(down_client: FlaskClient) -> None:
    """A signed vote that cannot be stored is a 503 (Viber retries), not a 500."""
    response = post_callback(down_client, message_event("down-user", "yes", tracking_data="main"))
    assert response.status_code == 503
    assert response.json["error"]


def test_welcome_is_503_when_redis_is_unreachable(down_client: FlaskClient) -> None:
    """A conversation_started that cannot read the poll state is a 503, not a 500."""
    response = post_callback(down_client, conversation_started("down-user"))
    assert response.status_code == 503
    assert response.json["error"]
