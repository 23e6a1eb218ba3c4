"""The connector registry: builtins register themselves; third parties plug in through the
`dualline.connectors` entry point group; the config is validated by the connector's schema."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from marshmallow import fields

import connectors.registry as registry
from connectors import Connector, Page, available, get_connector_class
from connectors.base import BaseSourceSchema
from sync.config import ConfigError, parse_config


class AcmeSchema(BaseSourceSchema):
    api_key = fields.String(required=True)


class AcmeConnector(Connector):
    """What a third-party package would ship."""

    type_name = "acme-hr"
    config_schema = AcmeSchema
    secret_fields = ("api_key",)

    def read(self, kind: str, *, since: str | None = None) -> Iterator[Page]:
        yield Page([{"employee_no": "A1", "name": "测试"}])


class FakeEntryPoint:
    name = "acme-hr"

    def load(self) -> type[Connector]:
        return AcmeConnector


@pytest.fixture
def plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "entry_points", lambda group: [FakeEntryPoint()] if group == "dualline.connectors" else [])


def test_builtins_are_registered() -> None:
    assert {"rest", "file"} <= set(available())
    with pytest.raises(KeyError, match="available: .*file.*rest"):
        get_connector_class("nope")


def test_entry_point_plugin_is_usable_from_config(plugin: None) -> None:
    assert get_connector_class("acme-hr") is AcmeConnector
    config = parse_config({"sources": {"hr": {"connector": "acme-hr", "provides": ["staff"], "api_key": "k"}}}, path=None)
    assert config.sources["hr"].connector == "acme-hr"
    with pytest.raises(ConfigError, match="sources.hr.api_key"):
        parse_config({"sources": {"hr": {"connector": "acme-hr", "provides": ["staff"]}}}, path=None)
