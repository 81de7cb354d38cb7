"""The bot's languages: gettext catalogues (webhook/translations/*/LC_MESSAGES/messages.po)."""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

from webhook.core.polls import LANGUAGES

TRANSLATIONS_DIR = Path(__file__).parent.parent / "translations"
DOMAIN = "messages"
DEFAULT_LANGUAGE = "en"


def language_of(tag: str | None) -> str:
    """The bot language for a messenger's language tag ("ru", "be-BY", "be_BY"); English if unknown."""
    primary = (tag or "").replace("_", "-").split("-")[0].strip().lower()
    return primary if primary in LANGUAGES else DEFAULT_LANGUAGE


@functools.cache
def translations(language: str) -> NullTranslations:
    """The compiled catalogue of a language (read from its .po file once per process)."""
    path = TRANSLATIONS_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if language == DEFAULT_LANGUAGE or not path.exists():
        return NullTranslations()
    with path.open("rb") as po:
        catalog = read_po(po, locale=language)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def translator(language: str) -> Callable[[str], str]:
    """gettext for one language."""
    return translations(language).gettext
