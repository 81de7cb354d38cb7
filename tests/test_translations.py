"""The message catalogues: complete, current with the code, and valid format strings."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from webhook.core.i18n import TRANSLATIONS_DIR

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def extracted_ids(tmp_path: Path) -> set[str]:
    """Message ids in the code now, extracted as `make translations` does."""
    pot = tmp_path / "messages.pot"
    pybabel = Path(sys.executable).parent / "pybabel"
    subprocess.run(
        [
            str(pybabel),
            "-q",
            "extract",
            "-F",
            "babel.cfg",
            "--no-location",
            "--omit-header",
            "-o",
            str(pot),
            ".",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    with pot.open("rb") as f:
        return {m.id for m in read_po(f) if m.id}


@pytest.mark.parametrize("language", ["ru", "be"])
def test_every_message_is_translated(language: str, tmp_path: Path) -> None:
    with (TRANSLATIONS_DIR / language / "LC_MESSAGES" / "messages.po").open("rb") as f:
        catalog = {m.id: m.string for m in read_po(f) if m.id}
    missing = extracted_ids(tmp_path) - {k for k, v in catalog.items() if v and all(forms(v))}
    assert not missing, f"run `make translations` and translate: {sorted(missing, key=str)}"
    for message_id, text in catalog.items():
        for form in forms(text):  # a plural message: every form keeps the placeholders
            assert set(PLACEHOLDER.findall(forms(message_id)[0])) == set(PLACEHOLDER.findall(form)), (
                message_id
            )


def forms(message: str | tuple[str, ...]) -> tuple[str, ...]:
    """A message's text, or each of a plural message's forms."""
    return message if isinstance(message, tuple) else (message,)
