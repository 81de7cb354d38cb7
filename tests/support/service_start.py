"""Start the service where only some distributions are installed (`-m tests.support.service_start JSON`).

JSON is the list of distributions (canonical names) that may be imported; an import of any other fails
as if it were not installed, so a package the service needs but requirements.txt does not install
shows up as ModuleNotFoundError. Imports every module of webhook/ and workers/, builds the app as
`gunicorn wsgi:app` does, and prints the top-level modules that loaded (JSON).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import json
import pkgutil
import re
import sys
from collections.abc import Sequence
from importlib import metadata
from types import ModuleType

SETTINGS = {
    "VIBER_AUTH_TOKEN": "token",
    "TELEGRAM_BOT_TOKEN": "123456789:service-start-token-0123456789",
    "TELEGRAM_WEBHOOK_SECRET": "service-start-secret-0123456789",
    "REDIS_URL": "redis://127.0.0.1:1/0",
    "VOTER_ID_SECRET": "Zq8-voter-secret-for-service-start-Kx2",
    "OPERATOR_TOKEN": "Wp4-operator-token-for-service-start-Jm7",
}
"""Enough configuration to build the app with both channels (Redis is connected lazily, so never reached)."""


class NotInstalled(importlib.abc.MetaPathFinder):
    """Refuses the top-level modules of distributions that are not allowed."""

    def __init__(self, hidden: set[str]) -> None:
        """Hide these top-level modules."""
        self.hidden = hidden

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        """Fail for a hidden module; let the other finders look for the rest."""
        if name.split(".")[0] in self.hidden:
            raise ModuleNotFoundError(
                f"No module named {name!r} (requirements.txt does not install it)", name=name
            )
        return None


def main(allowed: set[str]) -> None:
    """Hide what is not allowed, start the service, print what it loaded."""
    hidden = {
        module
        for module, dists in metadata.packages_distributions().items()
        if module not in sys.modules and not {re.sub(r"[-_.]+", "-", d).lower() for d in dists} & allowed
    }
    sys.meta_path.insert(0, NotInstalled(hidden))
    before = set(sys.modules)
    import webhook
    import workers

    for package in (webhook, workers):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(module.name)
    webhook.create_app(SETTINGS)
    print(json.dumps(sorted({name.split(".")[0] for name in set(sys.modules) - before})))


if __name__ == "__main__":
    main(set(json.loads(sys.argv[1])))
