"""`dualline demo`: the fictional SOE of examples/demo, end to end on embedded SQLite.

Creates an instance folder (database + a generated secret key), syncs every demo source,
prints what the dual-line checks found, then serves the console.
"""
from __future__ import annotations

import os
from pathlib import Path

import click
from flask import current_app

from records.crypto import generate_secret
from records.db import upgrade
from sync.cli import print_summary
from sync.config import load_config
from sync.engine import SyncEngine
from sync.runtime import Runtime

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "demo"


def _instance_dir() -> Path:
    path = Path(os.environ.get("DUALLINE_INSTANCE") or "instance").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _secret(instance: Path) -> str:
    key_file = instance / "secret_key"
    if not key_file.exists():
        key_file.write_text(generate_secret(), encoding="utf-8")
        key_file.chmod(0o600)
    return key_file.read_text(encoding="utf-8").strip()


@click.command("demo")
@click.option("--no-serve", is_flag=True, help="Sync and print the summary, then stop.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def demo_command(no_serve: bool, host: str, port: int) -> None:
    """Run the demo enterprise: init, sync, print a summary, serve the console."""
    instance = _instance_dir()
    config = load_config(EXAMPLES / "dualline.yaml")
    config.database = os.environ.get("DUALLINE_DATABASE_URL") or f"sqlite:///{instance / 'demo.db'}"
    config.secret_key = os.environ.get("DUALLINE_SECRET_KEY") or _secret(instance)
    runtime = Runtime(config)
    current_app.extensions["dualline"]._runtime = runtime
    upgrade(runtime.engine)
    click.echo(f"demo enterprise: {EXAMPLES}")
    click.echo(f"database: {config.database}")
    result = SyncEngine(runtime).run(approve=True, actor="demo")
    print_summary(result)
    if result.status != "succeeded":
        raise SystemExit(1)
    click.echo("see them all: dualline --config "
               f"{EXAMPLES / 'dualline.yaml'} mismatches   (with DUALLINE_DATABASE_URL and the key above)")
    if no_serve:
        return
    click.echo(f"console: http://{host}:{port}/  (Ctrl+C to stop)")
    current_app.run(host=host, port=port, debug=False, use_reloader=False)
