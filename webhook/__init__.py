"""viber-vote: anonymous public votes through messenger bots (Viber, Telegram)."""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from webhook.config import Config
from webhook.core.errors import ConfigError
from webhook.runtime import EXTENSION, Runtime


def create_app(config: Config | Mapping[str, str] | None = None) -> Flask:
    """Build the Flask app from a Config, a mapping of settings, or the environment."""
    if not isinstance(config, Config):
        config = Config.from_environ(config)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    if config.trust_proxy:
        # One proxy in front (deploy/nginx.conf) sets X-Forwarded-For/-Proto: the client's address
        # (for the login throttle) and scheme come from there. Without the flag they are ignored,
        # so a client talking to gunicorn directly cannot pick the address it is throttled as.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)  # type: ignore[method-assign]
    app.extensions[EXTENSION] = Runtime.build(config)

    from webhook import http_errors, public
    from webhook.channels import registry
    from webhook.operator import api, cli, dashboard

    http_errors.init_app(app)
    for channel in registry.configured(config):
        channel.init_app(app)  # its webhook and its commands
    app.register_blueprint(api.bp)
    app.register_blueprint(public.bp)
    dashboard.init_app(app)  # the login throttle, /dashboard, /dashboard/rq
    cli.init_app(app)
    return app


def create_cli_app() -> Flask:
    """The app of `flask --app wsgi COMMAND`: the service's app when every setting is given.

    Otherwise an app with every channel's and operator's command and no runtime: each command
    reads what it needs when it runs (results needs only REDIS_URL; set-webhook, the whole
    configuration), so `--help` always lists them and a missing setting is one line.
    """
    try:
        return create_app()
    except ConfigError:
        pass
    from webhook.channels import registry
    from webhook.operator import cli

    app = Flask(__name__)
    for channel in registry.CHANNELS.values():
        channel.init_app(app)
    cli.init_app(app)
    return app
