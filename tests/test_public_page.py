"""The public page offers every configured bot, in the visitor's language, and bounds its QR-drawing work."""

from __future__ import annotations

import re

from flask import Flask
from redis import Redis

from webhook import create_app
from webhook.public import links

QR = re.compile(r'<svg role="img" aria-label="QR code: vote in (\w+)".*?</svg>', re.S)


def app_with(environ: dict[str, str], **extra: str) -> Flask:
    """The app with these settings added or removed (a value of "" removes the setting)."""
    settings = {**environ, **extra}
    app = create_app({k: v for k, v in settings.items() if v})
    app.testing = True
    return app


def test_both_bots_are_offered_with_the_campaign(environ: dict[str, str], redis: Redis) -> None:
    """A button and a QR code per channel; the campaign rides in Viber's context and Telegram's start."""
    page = app_with(environ, VIBER_CHAT_URI="votebot", TELEGRAM_BOT_USERNAME="vote_bot").test_client()
    html = page.get("/?c=tv-spring").text
    assert 'id="open-viber" href="viber://pa?chatURI=votebot&amp;context=tv-spring"' in html
    assert 'id="open-telegram" href="https://t.me/vote_bot?start=tv-spring"' in html
    assert [m.group(1) for m in QR.finditer(html)] == ["Viber", "Telegram"]
    assert "placeholder" not in html


def test_only_the_configured_channels_are_offered(environ: dict[str, str], redis: Redis) -> None:
    """A Viber-only deployment shows no Telegram button (and the other way round)."""
    viber_only = (
        app_with(environ, TELEGRAM_BOT_TOKEN="", TELEGRAM_WEBHOOK_SECRET="").test_client().get("/").text
    )
    assert "open-viber" in viber_only and "open-telegram" not in viber_only
    telegram_only = app_with(environ, VIBER_AUTH_TOKEN="").test_client().get("/").text
    assert "open-telegram" in telegram_only and "open-viber" not in telegram_only


def test_a_placeholder_link_says_so(environ: dict[str, str], redis: Redis) -> None:
    """Without VIBER_CHAT_URI / TELEGRAM_BOT_USERNAME the links are placeholders, and the page says so."""
    html = app_with(environ).test_client().get("/").text
    assert 'id="placeholder-viber"' in html and 'id="placeholder-telegram"' in html


def test_the_page_speaks_belarusian_throughout(environ: dict[str, str], redis: Redis) -> None:
    """Accept-Language: be translates the status, the total's unit (with its plural), buttons and notes."""
    html = app_with(environ).test_client().get("/", headers={"Accept-Language": "be"}).text
    for words in (
        "Галасаванне адкрытае",
        "галасоў на гэты момант",
        'data-one="голас на гэты момант"',
        'data-few="галасы на гэты момант"',
        "Галасаваць у Viber",
        "Галасаваць у Telegram",
        "Навядзіце камеру тэлефона",
        "Адзін чалавек — адзін голас",
        "Вынікі па варыянтах будуць апублікаваныя",
    ):
        assert words in html, words
    for english in ("votes so far", "Vote in", "Scan with", "One vote per person", "Results by option"):
        assert english not in html, english


def test_made_up_campaigns_cannot_make_every_request_draw_a_qr_code(
    environ: dict[str, str], redis: Redis, monkeypatch
) -> None:
    """100 new campaigns: at most the draw budget of them get codes of their own; the rest show the plain
    code (their button still carries the campaign), so a flood of made-up ?c= values costs cache hits."""
    monkeypatch.setattr(links, "QR_CODES", links.QrCodes(links.DrawBudget(links.QR_DRAWS_PER_MINUTE)))
    client = app_with(environ, TELEGRAM_BOT_TOKEN="", TELEGRAM_WEBHOOK_SECRET="").test_client()
    codes = set()
    for i in range(100):
        html = client.get(f"/?c=flood{i}").text
        assert f"context=flood{i}" in html
        codes.add(QR.search(html).group(0))
    assert len(codes) <= links.QR_DRAWS_PER_MINUTE + 1
    assert QR.search(client.get("/").text).group(0) in codes, "the rest show the plain code"
