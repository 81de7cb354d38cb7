"""Entry points: `gunicorn wsgi:app` serves the service, `flask --app wsgi COMMAND` runs an operator command.

gunicorn gets the service's app, built from every setting and refusing to start without one.
Flask's CLI imports this module to find the commands; it gets an app whose commands each read
only the settings they need (webhook.create_cli_app), so `--help` works with nothing set.
"""

import click
from flask.cli import ScriptInfo

from webhook import create_app, create_cli_app
from webhook.channels import registry
from webhook.runtime import runtime


def _imported_by_flask_cli() -> bool:
    """Whether Flask's CLI is loading the app: it imports this module inside its click context."""
    context = click.get_current_context(silent=True)
    return context is not None and context.find_object(ScriptInfo) is not None


if _imported_by_flask_cli():
    app = create_cli_app()
else:
    app = create_app()
    with app.app_context():
        for channel in registry.configured(runtime().config):
            channel.warm()  # in gunicorn's master (preload_app): each worker is forked ready
