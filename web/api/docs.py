"""The API's docs page, `GET /api/v1/docs`: Swagger UI over `/api/v1/openapi.json`.

Every asset is served from this package (web/api/static/vendor/swagger-ui, swagger-ui-dist
vendored unmodified with its licence): an intranet box has no CDN (DESIGN: intranet-ready). The
page holds no inline script — the CSP says script-src 'self' — so `docs-init.js` starts Swagger UI
and reads the document's URL from a data attribute. Like the OpenAPI document, the page is public:
it describes shapes, never data; "Try it out" asks for a bearer token.
"""
from __future__ import annotations

from flask import Blueprint, render_template, url_for

bp = Blueprint("api_docs", __name__, url_prefix="/api/v1", static_folder="static",
               static_url_path="/static", template_folder="templates")


@bp.route("/docs")
def docs() -> str:
    return render_template("api/docs.html", spec_url=url_for("api-docs.openapi_json"))
