"""API tokens: `dualline token create|list|revoke`, stored hashed, audited, enforced at once."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from records.db import make_engine, session_factory, upgrade
from records.models import ApiToken, AuditLog, PartyOrg
from tests.conftest import TEST_SECRET
from web import create_app
from web.cli import cli
from web.tokens import TokenError, create_token, effective_scopes, hash_token, normalize_scopes


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'tokens.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with session_factory(engine)() as s, s.begin():
        s.add(PartyOrg(code="P01", name="第一党支部", kind="branch"))
    engine.dispose()
    config = tmp_path / "dualline.yaml"
    config.write_text(f"database: {url}\nsources: {{}}\n", encoding="utf-8")
    monkeypatch.setenv("DUALLINE_CONFIG", str(config))
    monkeypatch.setenv("DUALLINE_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("DUALLINE_DATABASE_URL", url)
    return url


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _rows(url: str) -> list[ApiToken]:
    engine = make_engine(url)
    try:
        with session_factory(engine)() as s:
            return list(s.scalars(select(ApiToken).order_by(ApiToken.id)))
    finally:
        engine.dispose()


def test_create_prints_token_alone_on_last_line_and_stores_only_its_hash(db_url: str) -> None:
    result = invoke("token", "create", "warehouse", "--scope", "read", "--scope", "read:sensitive", "--org", "P01")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    token = lines[-1]
    assert token.startswith("dl_") and " " not in token and len(token) > 40
    assert len(lines) >= 2 and token not in "\n".join(lines[:-1])

    [row] = _rows(db_url)
    assert row.name == "warehouse" and row.scopes == ["read", "read:sensitive"] and row.party_org_code == "P01"
    assert row.token_hash == hash_token(token) and token.startswith(row.prefix)
    # The plaintext is nowhere in the database file, in any table.
    engine = make_engine(db_url)
    with engine.connect() as conn:
        for (table,) in conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'")):
            for r in conn.execute(text(f'SELECT * FROM "{table}"')):
                assert token not in json.dumps([str(v) for v in r], ensure_ascii=False)
        audit = conn.execute(text("SELECT action, target_id FROM audit_log")).all()
    engine.dispose()
    assert ("token.create", "warehouse") in audit


def test_comma_separated_scopes_and_bad_usage(db_url: str) -> None:
    assert invoke("token", "create", "portal", "--scope", "read,write:resolutions").exit_code == 0
    assert _rows(db_url)[0].scopes == ["read", "write:resolutions"]
    assert invoke("token", "create", "portal", "--scope", "read").exit_code == 2  # name taken
    assert invoke("token", "create", "x", "--scope", "admin").exit_code == 2  # unknown scope
    assert invoke("token", "create", "y", "--scope", "read", "--org", "NOPE").exit_code == 2
    assert invoke("token", "create", "z").exit_code == 2  # a scope is required
    assert [t.name for t in _rows(db_url)] == ["portal"]


def test_list_and_revoke(db_url: str) -> None:
    token = invoke("token", "create", "bi", "--scope", "read").output.strip().splitlines()[-1]
    listed = json.loads(invoke("token", "list", "--json").output)
    [item] = listed["items"]
    assert item["name"] == "bi" and item["revoked_at"] is None and item["prefix"] in token
    assert token not in invoke("token", "list").output and token not in json.dumps(listed)

    app = create_app()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/runs", headers=headers).status_code == 200
    assert _rows(db_url)[0].last_used_at is not None

    assert invoke("token", "revoke", "bi").exit_code == 0
    response = client.get("/api/v1/runs", headers=headers)
    assert response.status_code == 401 and "invalid_token" in response.headers["WWW-Authenticate"]
    assert json.loads(invoke("token", "list", "--json").output)["items"][0]["revoked_at"]
    assert invoke("token", "revoke", "nobody").exit_code == 2

    engine = make_engine(db_url)
    with session_factory(engine)() as s:
        actions = [a.action for a in s.scalars(select(AuditLog).order_by(AuditLog.id))]
    engine.dispose()
    assert actions == ["token.create", "token.revoke"]


def test_scope_rules() -> None:
    assert normalize_scopes(["write:resolutions read", "read"]) == ("read", "write:resolutions")
    with pytest.raises(TokenError):
        normalize_scopes(["read:everything"])
    assert effective_scopes(["read:sensitive"]) == {"read", "read:sensitive"}
    assert effective_scopes(["write:resolutions"]) == {"write:resolutions"}


def test_tokens_are_unique_and_unguessable(db_engine) -> None:
    with session_factory(db_engine)() as s, s.begin():
        secrets = {create_token(s, f"t{i}", ["read"]).secret for i in range(20)}
    assert len(secrets) == 20 and all(len(t) >= 50 for t in secrets)
