"""The web side of dualline: the Flask app factory, the console, the API, and the `dualline` CLI.

`create_app()` is the WSGI entry point (`web:create_app()`); it reads dualline.yaml lazily, so
that a bad config gives a clear message from the command that needs it instead of a traceback.
"""
from __future__ import annotations

import os
from typing import Any

from flask import Flask

from sync.config import Config, ConfigError, load_config
from sync.runtime import Runtime


class DualLine:
    """Per-app holder of the config and runtime (database engine, cipher), built on first use."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._runtime: Runtime | None = None

    def config(self) -> Config:
        return self.runtime().config

    def runtime(self) -> Runtime:
        if self._runtime is None:
            given = self.app.config.get("DUALLINE_CONFIG_OBJECT")
            config = given if given is not None else load_config(
                self.app.config.get("DUALLINE_CONFIG_PATH"),
                required=self.app.config.get("DUALLINE_CONFIG_REQUIRED", True),
            )
            self.set_runtime(Runtime(config))
        assert self._runtime is not None
        return self._runtime

    def set_runtime(self, runtime: Runtime) -> None:
        self._runtime = runtime
        if runtime.config.secret_key and not self.app.secret_key:
            # The session cookie is signed with a key derived from the dualline secret.
            self.app.secret_key = runtime.cipher.keyed_hash("flask-session-signing-key")


def create_app(config_path: str | None = None, test_config: dict[str, Any] | None = None,
               *, routes: bool = True) -> Flask:
    """The dualline app: the CLI's commands and, unless `routes` is false, the console, API, SCIM
    and health routes. Commands that serve nothing (a sync, a worker) leave the routes out: the
    CLI loads this app for every command, and registering ~400 routes costs ~0.13 s of each
    command's start-up (flask-smorest's OpenAPI paths, a compiled URL builder per rule)."""
    app = Flask(__name__, instance_path=os.environ.get("DUALLINE_INSTANCE") or None)
    app.config.from_mapping(
        DUALLINE_CONFIG_PATH=config_path or os.environ.get("DUALLINE_CONFIG"),
        JSON_AS_ASCII=False,
    )
    if test_config:
        app.config.update(test_config)
    app.extensions["dualline"] = DualLine(app)

    from records import cli as records_cli
    from sync import cli as sync_cli
    from web import api, auth, console, health, scim, tokens
    from web import cli as web_cli

    records_cli.init_app(app)
    sync_cli.init_app(app)
    web_cli.init_app(app)
    auth.init_app(app)
    tokens.init_app(app)
    if routes:
        health.init_app(app)
        console.init_app(app)
        api.init_app(app)
        scim.init_app(app)
    try:
        app.extensions["dualline"].runtime()  # also sets the session key
    except ConfigError:
        pass  # reported by the command or page that needs the config, not at import time
    return app


__all__ = ["ConfigError", "create_app"]
