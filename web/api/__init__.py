"""REST API `/api/v1` for other systems (party platform, portal, data warehouse), on flask-smorest.

`GET /api/v1/openapi.json` is generated from the marshmallow schemas in web.api.schemas and is
public (it describes shapes, never data). `GET /api/v1/docs` shows it in Swagger UI served from
local assets (web.api.docs); flask-smorest's own Swagger/ReDoc pages stay off, because they load
their assets from a CDN and start with an inline script.

Settings (Flask config, defaults below): API_RATE_LIMIT_PER_SECOND (0 disables) and
API_RATE_LIMIT_BURST — an in-process token bucket per API token.
"""
from __future__ import annotations

from flask import Flask
from flask_smorest import Api
from werkzeug.exceptions import HTTPException

from web.api.errors import render_error
from web.api.schemas import ErrorSchema

API_VERSION = "1"


class DualLineApi(Api):
    """flask-smorest's Api with the project's error shape (documented and served)."""

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException):  # type: ignore[override]
        # Registered app-wide by flask-smorest: the console keeps its own (HTML) errors.
        return render_error(error)


def init_app(app: Flask) -> DualLineApi:
    from web.api.docs import bp as docs_bp
    from web.api.resources import bp
    import web.api.indicators  # noqa: F401  (GET /party-orgs/<id>/indicators on the same blueprint)

    app.config.setdefault("API_TITLE", "dualline")
    app.config.setdefault("API_VERSION", API_VERSION)
    app.config.setdefault("OPENAPI_VERSION", "3.0.3")
    app.config.setdefault("OPENAPI_URL_PREFIX", "/api/v1")
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    # Not flask-smorest's Swagger UI / ReDoc / RapiDoc: CDN assets (DESIGN: intranet-ready) and
    # inline scripts (CSP); web.api.docs serves Swagger UI from local files instead.
    for key in ("OPENAPI_SWAGGER_UI_PATH", "OPENAPI_REDOC_PATH", "OPENAPI_RAPIDOC_PATH"):
        app.config.setdefault(key, None)
    app.config.setdefault("API_SPEC_OPTIONS", {
        "info": {"description": "Unified records of dualline: persons, org units, party orgs, memberships, "
                                "performance, mismatches, runs and the change feed. Authenticate with "
                                "`Authorization: Bearer <token>` (`dualline token create`)."},
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
    })
    app.config.setdefault("API_RATE_LIMIT_PER_SECOND", 20.0)
    app.config.setdefault("API_RATE_LIMIT_BURST", 100)
    api = DualLineApi(app)
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "description": "A token from `dualline token create`."})
    api.register_blueprint(bp)
    app.register_blueprint(docs_bp)
    return api
