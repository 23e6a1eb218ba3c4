"""The API docs page `/api/v1/docs`: Swagger UI from local assets only, under the strict CSP."""
from __future__ import annotations

import re

import pytest

from sync.config import parse_config
from web import create_app


@pytest.fixture(scope="module")
def client():
    config = parse_config({"database": "sqlite://"}, path=None)
    return create_app(test_config={"DUALLINE_CONFIG_OBJECT": config, "TESTING": True}).test_client()


def test_docs_page_loads_only_local_assets(client) -> None:
    page = client.get("/api/v1/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    # No inline script (the CSP allows script-src 'self' only) and no asset from another host.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert not re.search(r"""(?:src|href)=["'](?:https?:)?//""", html)
    assert 'data-spec-url="/api/v1/openapi.json"' in html
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert {a.rsplit("/", 1)[-1] for a in assets} == {"swagger-ui.css", "docs.css", "swagger-ui-bundle.js", "docs-init.js"}
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200 and response.get_data(), asset
        response.close()
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


def test_docs_init_points_at_the_document_and_never_at_the_online_validator(client) -> None:
    script = client.get("/api/v1/static/docs-init.js").get_data(as_text=True)
    assert "data-spec-url" in script and "validatorUrl: null" in script
    assert "http://" not in script and "https://" not in script
    spec = client.get("/api/v1/openapi.json")
    assert spec.status_code == 200 and spec.get_json()["openapi"].startswith("3.")


def test_vendored_swagger_ui_keeps_its_licence(client) -> None:
    licence = client.get("/api/v1/static/vendor/swagger-ui/LICENSE")
    assert licence.status_code == 200 and b"Apache License" in licence.get_data()
    licence.close()
