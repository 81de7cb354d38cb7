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
    missing = extracted_ids(tmp_path) - {k for k, v in catalog.items() if v}
    assert not missing, f"run `make translations` and translate: {sorted(missing)}"
    for message_id, text in catalog.items():
        assert set(PLACEHOLDER.findall(message_id)) == set(PLACEHOLDER.findall(text)), message_id
