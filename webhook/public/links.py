"""The public page's ways into the bots: a deep link and a QR code per configured channel.

A campaign tag (?c=) rides along in each link and QR code. Drawing a QR code costs ~10 ms of CPU,
so a flood of made-up campaigns could make every request expensive: the codes drawn are cached,
and new ones are drawn at most QR_DRAWS_PER_MINUTE times a minute per process; past that, an
unknown campaign's page shows the plain code (its button link still carries the campaign).
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import segno
from markupsafe import Markup

from webhook.channels import registry
from webhook.channels.base import EntryLink
from webhook.config import Config

CAMPAIGN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
"""What ?c= may hold; it is passed to the bot as the deep link's context / start payload."""
QR_DRAWS_PER_MINUTE = 30
QR_CACHE_SIZE = 256


@dataclass(frozen=True)
class WayIn:
    """One channel's button and QR code on the public page."""

    link: EntryLink
    qr: Markup


class DrawBudget:
    """At most `per_minute` new QR codes drawn a minute (a token bucket); thread-safe."""

    def __init__(self, per_minute: int) -> None:
        """A full bucket."""
        self.per_minute = per_minute
        self._tokens = float(per_minute)
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Whether one more code may be drawn now."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.per_minute, self._tokens + (now - self._at) * self.per_minute / 60)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


class QrCodes:
    """Drawn QR codes, the most recent QR_CACHE_SIZE kept; new ones only within the draw budget."""

    def __init__(self, budget: DrawBudget, size: int = QR_CACHE_SIZE) -> None:
        """An empty cache."""
        self.budget, self.size = budget, size
        self._drawn: OrderedDict[str, Markup] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, link: EntryLink, plain: EntryLink) -> Markup:
        """The link's code: cached, or drawn within the budget, else the plain link's (no campaign)."""
        with self._lock:
            if link.url in self._drawn:
                self._drawn.move_to_end(link.url)
                return self._drawn[link.url]
            if link.url != plain.url and not self.budget.take():
                link = plain
                if link.url in self._drawn:
                    return self._drawn[link.url]
        code = draw(link)
        with self._lock:
            self._drawn[link.url] = code
            while len(self._drawn) > self.size:
                self._drawn.popitem(last=False)
        return code


QR_CODES = QrCodes(DrawBudget(QR_DRAWS_PER_MINUTE))


def draw(link: EntryLink) -> Markup:
    """The link as a QR code, an inline SVG (drawn by segno; no user text is embedded)."""
    code = segno.make(link.url, error="m")
    svgclass = "qr" if link.channel == "viber" else f"qr-{link.channel}"
    svg = code.svg_inline(
        scale=5, border=2, dark="#111111", light="#ffffff", svgclass=svgclass, omitsize=True
    )
    return Markup(svg.replace("<svg ", f'<svg role="img" aria-label="QR code: vote in {link.label}" ', 1))


def ways_in(config: Config, campaign: str | None) -> list[WayIn]:
    """A button and a QR code for each channel this deployment runs."""
    ways = []
    for channel in registry.configured(config):
        link = channel.entry_link(config, campaign)
        ways.append(WayIn(link, QR_CODES.of(link, channel.entry_link(config, None))))
    return ways
