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
from web.cli import serve_app
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


def _demo_admin(runtime: Runtime, instance: Path) -> str:
    """An admin for the demo console, its password generated once into the instance folder."""
    from sqlalchemy import select

    from records.db import session_factory
    from records.models import User
    from web.auth import hash_password

    password_file = instance / "admin_password"
    if not password_file.exists():
        password_file.write_text(generate_secret()[:16], encoding="utf-8")
        password_file.chmod(0o600)
    password = password_file.read_text(encoding="utf-8").strip()
    with session_factory(runtime.engine)() as s, s.begin():
        user = s.scalar(select(User).where(User.username == "admin"))
        if user is None:
            s.add(User(username="admin", password_hash=hash_password(password), role="admin"))
    return password


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
    current_app.extensions["dualline"].set_runtime(runtime)
    upgrade(runtime.engine)
    click.echo(f"demo enterprise: {EXAMPLES}")
    click.echo(f"database: {config.database}")
    result = SyncEngine(runtime).run(approve=True, actor="demo")
    print_summary(result)
    if result.status != "succeeded":
        raise SystemExit(1)
    if no_serve:
        return
    password = _demo_admin(runtime, instance)
    click.echo(f"console: http://{host}:{port}/  user admin, password {password}  (Ctrl+C to stop)")
    serve_app(host, port)
