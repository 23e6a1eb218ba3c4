"""The `dualline` command: a Flask CLI group over `web.create_app`.

Each package registers its own commands (records: init; sync: sync, runs, mismatches; web:
serve, demo). Errors users can fix end with a short message and exit code 2, never a traceback.
"""
from __future__ import annotations

import os
import sys

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup
from sqlalchemy.exc import OperationalError, ProgrammingError

from connectors import SourceError
from sync.config import ConfigError


def _set_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        os.environ["DUALLINE_CONFIG"] = value


def _set_log_format(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:  # read by sync.logs wherever a command sets up logging (sync, scheduler, worker)
        os.environ["DUALLINE_LOG_FORMAT"] = value


class DualLineGroup(FlaskGroup):
    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        # The app is loaded here for the first time (FlaskGroup caches it), knowing the command.
        global _routes_wanted
        _routes_wanted = name not in _WITHOUT_ROUTES
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.echo(f"dualline: config: {exc}", err=True)
            sys.exit(2)
        except (OperationalError, ProgrammingError) as exc:
            text = str(exc.orig) if getattr(exc, "orig", None) else str(exc)
            if "no such table" in text or "does not exist" in text or "doesn't exist" in text:
                click.echo("dualline: the database is not initialised: run `dualline init`", err=True)
                sys.exit(2)
            click.echo(f"dualline: database error: {text.splitlines()[0]}", err=True)
            sys.exit(1)
        except SourceError as exc:
            click.echo(f"dualline: source {exc} [{exc.error_class}]", err=True)
            sys.exit(1)
        except (click.exceptions.Exit, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - a bug must still not greet users with a traceback
            if os.environ.get("DUALLINE_DEBUG"):
                raise
            click.echo(f"dualline: internal error: {type(exc).__name__}: {exc} "
                       "(set DUALLINE_DEBUG=1 for the traceback; any run was marked failed)", err=True)
            sys.exit(1)


# Commands that neither serve nor describe the web routes (a scheduled run starts one of these
# per source and per fire): the app they load leaves the routes out (web.create_app `routes`).
_WITHOUT_ROUTES = frozenset({"sync", "init", "runs", "scheduler", "worker", "beat"})
_routes_wanted = True


def _create_app() -> Flask:
    from web import create_app

    return create_app(routes=_routes_wanted)


cli = DualLineGroup(
    create_app=_create_app,
    add_version_option=False,
    load_dotenv=False,
    set_debug_flag=False,
    params=[
        click.Option(["--config"], metavar="PATH", expose_value=False, is_eager=True,
                     callback=_set_config, help="dualline.yaml (default: $DUALLINE_CONFIG or ./dualline.yaml)"),
        click.Option(["--log-format"], type=click.Choice(["human", "json"]), expose_value=False, is_eager=True,
                     callback=_set_log_format,
                     help="Logs as human lines or one JSON object per line (default: $DUALLINE_LOG_FORMAT or human)"),
    ],
    help="dualline: dual-line (双线) integration of business and party records.",
)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def serve_command(host: str, port: int) -> None:
    """Serve the console and API (development server; production: any WSGI server on web:create_app())."""
    current_app.extensions["dualline"].runtime()  # fail early on a bad config
    click.echo(f"serving on http://{host}:{port}/  (Ctrl+C to stop)")
    serve_app(host, port)


def serve_app(host: str, port: int) -> None:
    """Werkzeug's development server, threaded (Flask's app.run refuses to run under its CLI)."""
    from werkzeug.serving import run_simple

    run_simple(host, port, current_app._get_current_object(), threaded=True, use_reloader=False)


def init_app(app: Flask) -> None:
    from web.demo import demo_command

    app.cli.add_command(serve_command)
    app.cli.add_command(demo_command)


def main() -> None:
    cli.main(prog_name="dualline")
