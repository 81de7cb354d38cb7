"""The public page at /: the question, the live total, results when the poll allows, a way into each bot.

It speaks the visitor's language (Accept-Language) throughout, from the bot's catalogues.

Anyone may load it, so its Redis reads are cached in the process for a few seconds and its
responses are cacheable: a flood of visitors costs Redis at most one read per interval per
web process.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template, request

from webhook.core.i18n import translations
from webhook.core.polls import LANGUAGES
from webhook.public.links import CAMPAIGN, ways_in
from webhook.public.snapshot import Snapshot, SnapshotCache
from webhook.runtime import runtime

log = logging.getLogger(__name__)
bp = Blueprint("public_page", __name__)

CACHE_SECONDS = 5.0
"""How long one process reuses its Redis reads (and how long browsers and proxies may cache)."""
CACHE_CONFIG = "PUBLIC_CACHE_SECONDS"
"""app.config key overriding CACHE_SECONDS for the in-process cache."""
PLURAL_SAMPLES = {"one": 1, "few": 2, "many": 5, "other": 5}
"""A number of each plural category (JavaScript's Intl.PluralRules names), to word the live total."""
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}


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
    catalogue = translations(lang)
    vote_units = {
        category: catalogue.ngettext("vote so far", "votes so far", n)
        for category, n in PLURAL_SAMPLES.items()
    }
    html = render_template(
        "public.html",
        results=public_results(shot, lang),
        poll=shot.poll,
        lang=lang,
        ways=ways_in(runtime().config, campaign()),
        vote_units=vote_units,
        _=catalogue.gettext,
        ngettext=catalogue.ngettext,
        opens_at=shot.poll.opens_at,
        closes_at=shot.poll.closes_at,
    )
    return _cacheable(Response(html, mimetype="text/html"))


@bp.get("/live.json")
def live() -> Response:
    """The public page's numbers, refreshed by its script."""
    return _cacheable(jsonify(public_results(snapshot(), language())))
