"""The public page at /: the question, the live total, results when the poll allows, a link into Viber.

Anyone may load it, so its Redis reads are cached in the process for a few seconds and its
responses are cacheable: a flood of visitors costs Redis at most one read per interval per
web process.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import segno
from flask import Blueprint, Response, current_app, jsonify, render_template, request
from markupsafe import Markup
from redis.exceptions import RedisError

from webhook.channels.viber import VIBER
from webhook.core.polls import LANGUAGES, Poll, PollStatus
from webhook.runtime import Runtime, runtime

log = logging.getLogger(__name__)
bp = Blueprint("public_page", __name__)

CACHE_SECONDS = 5.0
"""How long one process reuses its Redis reads (and how long browsers and proxies may cache)."""
CACHE_CONFIG = "PUBLIC_CACHE_SECONDS"
"""app.config key overriding CACHE_SECONDS for the in-process cache."""
CAMPAIGN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
"""What ?c= may hold; it is passed to the bot as the deep link's context."""
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}


@dataclass(frozen=True)
class Snapshot:
    """What the page shows of a poll, as read from Redis at one moment."""

    poll: Poll
    status: PollStatus
    counts: dict[str, int]

    @property
    def total(self) -> int:
        """Votes counted so far."""
        return sum(self.counts.values())

    @property
    def results_visible(self) -> bool:
        """Whether the poll's results policy lets the public see per-option results now."""
        return self.poll.results_visible(self.status)


class SnapshotCache:
    """Per-process cache of poll snapshots; one reader refills an expired entry at a time.

    If Redis cannot be read, the last snapshot is served again (and retried an interval later).
    """

    def __init__(self) -> None:
        """An empty cache."""
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Snapshot]] = {}

    def get(self, rt: Runtime, poll: Poll, ttl_s: float) -> Snapshot:
        """The poll's snapshot, read from Redis only when the cached one is older than ttl_s."""
        with self._lock:
            cached = self._entries.get(poll.id)
            now = time.monotonic()
            if cached is not None and cached[0] > now:
                return cached[1]
            try:
                snapshot = Snapshot(poll, rt.ballot_box.status(poll), rt.ballot_box.counts(poll))
            except RedisError:
                if cached is None:
                    raise
                log.warning("redis unavailable: the public page shows its last numbers")
                snapshot = cached[1]
            self._entries[poll.id] = (now + ttl_s, snapshot)
            return snapshot


def snapshot() -> Snapshot:
    """The current poll's snapshot through this app's cache."""
    rt = runtime()
    cache = current_app.extensions.setdefault("public_page_cache", SnapshotCache())
    ttl_s = float(current_app.config.get(CACHE_CONFIG, CACHE_SECONDS))
    return cache.get(rt, rt.polls.current(time.time()), ttl_s)


def campaign() -> str | None:
    """The ?c= campaign tag if it is well-formed, else None (ignored, never echoed)."""
    value = request.args.get("c", "")
    return value if CAMPAIGN.match(value) else None


@functools.lru_cache(maxsize=256)
def qr_svg(link: str) -> Markup:
    """The link as a QR code, an inline SVG (drawn by segno; no user text is embedded)."""
    code = segno.make(link, error="m")
    svg = code.svg_inline(scale=5, border=2, dark="#111111", light="#ffffff", svgclass="qr", omitsize=True)
    return Markup(svg.replace("<svg ", '<svg role="img" aria-label="QR code: vote in Viber" ', 1))


def language() -> str:
    """The visitor's preferred poll language (Accept-Language), else English."""
    return request.accept_languages.best_match(LANGUAGES, default="en") or "en"


def public_results(shot: Snapshot, lang: str) -> dict[str, Any]:
    """The JSON a visitor may see: per-option results only when the policy allows."""
    total = shot.total
    options = None
    if shot.results_visible:
        options = [
            {
                "id": option.id,
                "label": option.label_in(lang),
                "votes": shot.counts[option.id],
                "percent": round(100 * shot.counts[option.id] / total, 1) if total else 0.0,
            }
            for option in shot.poll.options
        ]
    return {
        "poll": shot.poll.id,
        "question": shot.poll.question_in(lang),
        "status": shot.status.value,
        "total": total,
        "options": options,
        "results_policy": shot.poll.results.value,
    }


def _cacheable(response: Response) -> Response:
    """Let browsers and proxies keep the response for CACHE_SECONDS."""
    response.headers["Cache-Control"] = f"public, max-age={int(CACHE_SECONDS)}"
    response.vary.add("Accept-Language")
    response.headers.update(SECURITY_HEADERS)
    return response


@bp.get("/")
def page() -> Response:
    """The public landing page of the current poll."""
    shot = snapshot()
    lang = language()
    link = VIBER.entry_link(runtime().config, campaign()).url
    html = render_template(
        "public.html",
        results=public_results(shot, lang),
        poll=shot.poll,
        lang=lang,
        link=link,
        qr=qr_svg(link),
        opens_at=shot.poll.opens_at,
        closes_at=shot.poll.closes_at,
    )
    return _cacheable(Response(html, mimetype="text/html"))


@bp.get("/live.json")
def live() -> Response:
    """The public page's numbers, refreshed by its script."""
    return _cacheable(jsonify(public_results(snapshot(), language())))
