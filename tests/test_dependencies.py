"""The declared dependencies: consistent (pip check), complete (nothing imported undeclared), all used."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).parent.parent
FIRST_PARTY = {"webhook", "workers", "tests", "bench", "wsgi", "__future__"}
RUNTIME_CODE = ("webhook", "workers", "wsgi.py", "gunicorn.conf.py")
DEV_CODE = ("tests", "bench")
COMMANDS = {
    "gunicorn": ("Procfile", "gunicorn"),
    "honcho": ("bench/localstack.py", '"honcho"'),
    "ruff": ("Makefile", "/ruff "),
    "import-linter": ("Makefile", "/lint-imports "),
    "pytest-xdist": ("Makefile", "pytest -q -n "),
}
"""Dependencies used as a command, never imported: where the project runs each."""


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(path: Path) -> set[str]:
    """The distributions a requirements file names, following its -r includes."""
    names: set[str] = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            names |= declared(path.parent / line[3:].strip())
        elif line:
            names.add(canonical(re.split(r"[=<>!~\[; ]", line, maxsplit=1)[0]))
    return names


def distributions_of(modules: set[str]) -> set[str]:
    """The installed distributions that provide these top-level modules (stdlib and ours left out)."""
    providers = metadata.packages_distributions()
    found: set[str] = set()
    for module in modules - FIRST_PARTY - set(sys.stdlib_module_names):
        found |= {canonical(dist) for dist in providers.get(module, [])}
    return found


def imported_by(*places: str) -> set[str]:
    """Top-level modules named by any import statement in these files or folders (lazy imports too)."""
    files = [
        p
        for place in places
        for p in ([ROOT / place] if place.endswith(".py") else (ROOT / place).rglob("*.py"))
    ]
    modules: set[str] = set()
    for file in files:
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules


def with_requirements(names: set[str]) -> set[str]:
    """These distributions and everything they require, transitively (extras left out)."""
    closure, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in closure:
            continue
        closure.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for requirement in requires:
            if not re.search(r"extra\s*==", requirement):
                todo.append(canonical(re.split(r"[=<>!~\[;( ]", requirement, maxsplit=1)[0]))
    return closure


def loaded_by_the_service() -> set[str]:
    """The distributions the service loads when only requirements.txt (with what it requires) is installed."""
    installed = with_requirements(declared(ROOT / "requirements.txt"))
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.service_start", json.dumps(sorted(installed))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return distributions_of(set(json.loads(result.stdout)))


def test_pip_check_finds_no_broken_requirement() -> None:
    """Every installed distribution has the dependencies it declares, in versions it accepts."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_package_the_code_imports_is_declared() -> None:
    """The service imports only what requirements.txt declares; tests and benchmarks, requirements-dev.txt."""
    runtime = declared(ROOT / "requirements.txt")
    dev = declared(ROOT / "requirements-dev.txt")
    assert distributions_of(imported_by(*RUNTIME_CODE)) - runtime == set()
    assert distributions_of(imported_by(*DEV_CODE)) - dev == set()


def test_every_package_the_service_loads_is_declared_or_required_by_a_declared_one() -> None:
    """What the service's modules load at import (a dependency's own imports included) is installed by
    requirements.txt: rq-dashboard imports six without declaring it, so six must be declared here."""
    assert loaded_by_the_service() <= with_requirements(declared(ROOT / "requirements.txt"))


def test_every_declared_package_is_used() -> None:
    """Nothing is declared that no code imports or loads and no command runs."""
    for name, (place, mention) in COMMANDS.items():
        assert mention in (ROOT / place).read_text(), f"{name}: {place} no longer runs it"
    used = distributions_of(imported_by(*RUNTIME_CODE, *DEV_CODE)) | loaded_by_the_service() | set(COMMANDS)
    assert declared(ROOT / "requirements-dev.txt") - used == set()
