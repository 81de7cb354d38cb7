"""The layout holds: the import contracts (pyproject.toml) pass, fail on a violation, and jobs resolve."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rq.utils import import_attribute

from webhook.store.pipeline import PROGRESS_JOB, SWEEP_JOB, Stage

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
MAX_MODULE_LINES = 300
"""The layout issue's bound on a module of the service (webhook/, workers/)."""


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter on a checkout (its pyproject.toml names the contracts)."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_import_contracts_hold() -> None:
    """`make test` runs the same check; this is it from pytest, with the output on failure."""
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("webhook/core/polls.py", "import flask", "import no channel, no Flask"),
        ("webhook/core/ballot_box.py", "import webhook.channels.viber.render", "import no channel"),
        ("webhook/store/keys.py", "import webhook.operator.metrics", "import no channel"),
        ("webhook/channels/viber/render.py", "import webhook.operator.state", "Arrows point down"),
        ("webhook/store/pipeline.py", "import workers.tally", "never imports worker code"),
    ],
)
def test_a_deliberate_violation_breaks_the_build(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    """A copy of the tree with one forbidden import fails lint-imports, naming the broken contract."""
    for part in ("webhook", "workers"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / module).open("a") as source:
        source.write(f"\n{line}  # a deliberate violation\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and contract in result.stdout.replace("\n", " ")


@pytest.mark.parametrize("path", [*(stage.job for stage in Stage), SWEEP_JOB, PROGRESS_JOB])
def test_every_job_the_web_side_queues_is_a_worker_function(path: str) -> None:
    """The dotted paths named in webhook/store/pipeline.py are functions in workers/."""
    assert path.startswith("workers.")
    assert callable(import_attribute(path))


def test_no_module_of_the_service_is_over_the_bound() -> None:
    """Small modules whose names say what they hold: none in webhook/ or workers/ over ~300 lines."""
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
        for folder in ("webhook", "workers")
        for path in (ROOT / folder).rglob("*.py")
    }
    assert {path: n for path, n in sizes.items() if n > MAX_MODULE_LINES} == {}
