"""`dualline init`: create or upgrade the database (idempotent)."""
from __future__ import annotations

import click
from flask import Flask, current_app

from records.db import upgrade


@click.command("init")
def init_command() -> None:
    """Create or upgrade the database to the newest schema."""
    runtime = current_app.extensions["dualline"].runtime()
    upgrade(runtime.engine)
    click.echo(f"database ready: {runtime.engine.url.render_as_string(hide_password=True)}")


def init_app(app: Flask) -> None:
    app.cli.add_command(init_command)
