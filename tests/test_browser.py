"""The dashboard and the public page in a real headless Chromium, against the running Procfile stack."""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from tests.conftest import message_event, operator_token, post_live
from tests.support.redis_server import free_port
from tests.support.stack import ROOT, Stack
from webhook.channels.viber.signature import HEADER
from webhook.store import keys

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"
LIVE_UPDATE_S = 2.0
"""A tallied vote must show on an open dashboard within this time."""


def require_browser() -> None:
    """Skip without Chromium or Playwright, except under CI, where that is a failure."""
    reason = None
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: apt-get install -y chromium"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "playwright is not installed: pip install -r requirements-dev.txt"
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser test cannot run under CI: {reason}")
        pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Debian Chromium driven by Playwright (no browser download)."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def live_stack(environ: dict[str, str], redis: Redis, tmp_path: Path) -> Iterator[Stack]:
    """The Procfile stack with two gunicorn workers and the session cookie allowed over http."""
    env = {**environ, "DASHBOARD_INSECURE_COOKIE": "1", "WEB_CONCURRENCY": "2"}
    with Stack(env, tmp_path / "logs", port=free_port(), counts={"web": 1}) as running:
        yield running


def post_badly_signed(stack: Stack, count: int) -> None:
    """Send callbacks with a wrong signature, each on its own connection (any web worker)."""
    for _ in range(count):
        request = urllib.request.Request(
            f"{stack.base_url}/viber/webhook", data=b"{}", headers={HEADER: "0" * 64}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        refused.value.close()
        assert refused.value.code == 403


def no_horizontal_scroll(page: Any) -> bool:
    """Whether the page fits the viewport's width."""
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def collect_problems(page: Any) -> list[str]:
    """Console errors and failed requests (a CSP violation or a missing file shows here)."""
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    return problems


def test_operator_watches_votes_arrive_and_closes_the_poll(
    browser: Any, live_stack: Stack, redis: Redis
) -> None:
    """Log in, see votes cast through the webhook within 2 s, close the poll via the confirm dialog."""
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{live_stack.base_url}/dashboard/")
    assert "/dashboard/login" in page.url

    token = operator_token(redis, "Olga")  # `flask --app wsgi operator add Olga`
    page.fill("#name", "Olga")
    page.fill("#token", "not-the-token-0123456789")
    page.click("button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("Wrong operator name or token.")
    problems = collect_problems(page)  # from here on (the refused login above answered 401)
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_stack.base_url}/dashboard/")

    expect(page.locator("#question")).to_have_text("Do you support negotiations?")
    expect(page.locator("#status")).to_have_text("open")
    expect(page.locator("#total")).to_have_text("0")
    expect(page.locator('#pipeline dd[data-key="workers"]')).to_have_text("2")  # tally and send

    accepted_at: list[float] = []

    def cast() -> None:
        for user, choice in [("b-1", "yes"), ("b-2", "no"), ("b-3", "yes")]:
            status, _ = post_live(live_stack, message_event(user, choice, tracking_data="main"))
            assert status == 200
            accepted_at.append(time.monotonic())
            time.sleep(0.1)

    voter = threading.Thread(target=cast)
    voter.start()
    voter.join(timeout=10)
    assert len(accepted_at) == 3
    yes = page.locator('#bars li[data-option="yes"]')
    expect(yes.locator(".votes")).to_have_text("2", timeout=LIVE_UPDATE_S * 1000)
    expect(page.locator("#total")).to_have_text("3", timeout=LIVE_UPDATE_S * 1000)
    assert time.monotonic() - accepted_at[-1] <= LIVE_UPDATE_S
    expect(yes.locator(".percent")).to_have_text("66.7%")
    assert yes.locator(".fill").evaluate("e => e.style.width") == "66.7%"
    expect(page.locator('#bars li[data-option="no"] .percent')).to_have_text("33.3%")
    expect(page.locator("#chart")).to_have_attribute("data-total", "3")
    assert page.locator("#chart rect").count() >= 1

    post_badly_signed(live_stack, 6)  # spread over both gunicorn workers; the page must sum them
    expect(page.locator('#pipeline dd[data-key="invalid_signatures"]')).to_have_text("6")

    dialogs: list[str] = []
    page.once("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.click("#btn-closed")
    page.wait_for_timeout(500)
    assert redis.get(keys.state("main")) is None  # dismissed: nothing sent
    expect(page.locator("#status")).to_have_text("open")

    page.once("dialog", lambda d: (dialogs.append(d.message), d.accept()))
    page.click("#btn-closed")
    expect(page.locator("#status")).to_have_text("closed")
    assert dialogs == ["Close the poll now? Voters will be told it is closed."] * 2
    assert redis.get(keys.state("main")) == b"closed"
    expect(page.locator("#audit li").first).to_contain_text("Olga · close · main")
    expect(page.locator("#btn-closed")).to_be_disabled()
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(100)
    assert no_horizontal_scroll(page)
    page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)

    page.goto(f"{live_stack.base_url}/dashboard/rq/")
    expect(page.locator("body")).to_contain_text("tally")
    assert problems == []


def test_public_page_on_a_phone(browser: Any, live_stack: Stack, redis: Redis) -> None:
    """A visitor's phone shows the question, the total, a Viber button and QR code carrying the campaign."""
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    status, _ = post_live(live_stack, message_event("pub-1", "yes", tracking_data="main"))
    assert status == 200
    deadline = time.monotonic() + 10
    while redis.hget(keys.counts("main"), "yes") != b"1":
        assert time.monotonic() < deadline, "the vote was not tallied"
        time.sleep(0.05)
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, device_scale_factor=2)
    problems = collect_problems(page)
    page.goto(f"{live_stack.base_url}/?c=tv-spring")
    expect(page.locator("#question")).to_have_text("Do you support negotiations?")
    expect(page.locator("#total")).to_have_text("1")
    expect(page.locator("#results-note")).to_contain_text("when voting closes")
    button = page.locator("#open-viber")
    assert button.get_attribute("href") == "viber://pa?chatURI=viber-vote&context=tv-spring"
    qr = page.locator("svg.qr").bounding_box()
    assert qr is not None and qr["width"] >= 150 and qr["height"] == pytest.approx(qr["width"], abs=1)
    assert no_horizontal_scroll(page)
    page.screenshot(path=str(ARTIFACTS / "public.png"), full_page=True)
    assert problems == []
