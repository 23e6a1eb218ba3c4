"""The generic `soap` connector against the local HrmService fake: calls, results, hardened
parsing (DTDs and entities refused), faults and transport errors classified, WS-Security."""
from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors import get_connector_class
from connectors.base import SourceError
from connectors.soap import SoapConnector, looks_like_auth_refusal
from sync.config import ConfigError, parse_config
from tests.fakes.weaver_soap import WeaverSoapFake, build_wsdl, sample_org

USERS_OP = {"operation": "getHrmUserInfo", "args": ["", "", "", "", "", ""],
            "incremental_arg": 5, "cursor_field": "lastChangdate"}


@pytest.fixture
def fake() -> Iterator[WeaverSoapFake]:
    with WeaverSoapFake(**sample_org()) as server:
        yield server


def connector(wsdl: str, operations: dict[str, Any], base_dir: Path | None = None,
              **extra: Any) -> SoapConnector:
    block = {"connector": "soap", "wsdl": wsdl, "provides": list(operations),
             "operations": operations, "retries": {"max_attempts": 2, "backoff": 0}, **extra}
    config = parse_config({"sources": {"erp": block}}, path=None)
    cls = get_connector_class("soap")
    return cls("erp", config.sources["erp"].block, base_dir=base_dir)


def read_all(conn: SoapConnector, kind: str, since: str | None = None) -> list[dict[str, Any]]:
    return [record for page in conn.read(kind, since=since) for record in page.records]


def test_positional_and_named_args_give_plain_records(fake: WeaverSoapFake) -> None:
    conn = connector(fake.wsdl_url, {
        "staff": USERS_OP,
        "org_units": {"operation": "getHrmSubcompanyInfo", "args": {"in0": "10.0.0.1"}},
    })
    staff = read_all(conn, "staff")
    assert [u["workcode"] for u in staff] == ["E001", "E002", "E003"]
    assert type(staff[0]) is dict and staff[0]["policy"] == "中共党员"
    assert staff[0]["telephone"] is None  # xsi:nil arrives as None
    [page] = conn.read("org_units")
    assert [s["subcompanyid"] for s in page.records] == ["1", "2"]
    assert fake.calls[-1] == ("getHrmSubcompanyInfo", ["10.0.0.1"])
    conn.close()


def test_incremental_arg_and_cursor(fake: WeaverSoapFake) -> None:
    conn = connector(fake.wsdl_url, {"staff": USERS_OP})
    assert conn.is_incremental("staff")
    [page] = conn.read("staff", since="2024-03-01")
    assert fake.calls[-1][1][5] == "2024-03-01"
    assert [u["workcode"] for u in page.records] == ["E001", "E002"]
    assert page.cursor == "2024-04-01"


def test_result_path_into_the_result(fake: WeaverSoapFake) -> None:
    conn = connector(fake.wsdl_url, {"staff": {**USERS_OP, "result_path": "1"}})
    [record] = read_all(conn, "staff")  # a single object is one record
    assert record["workcode"] == "E002"
    missing = connector(fake.wsdl_url, {"staff": {**USERS_OP, "result_path": "UserBeans"}})
    with pytest.raises(SourceError) as err:
        read_all(missing, "staff")
    assert err.value.error_class == "protocol" and "UserBeans" in err.value.message


@pytest.mark.parametrize("mode", ["empty", "empty_array"])
def test_empty_answer_is_no_records_unless_declared_an_error(fake: WeaverSoapFake, mode: str) -> None:
    fake.mode = mode
    assert read_all(connector(fake.wsdl_url, {"staff": USERS_OP}), "staff") == []
    strict = connector(fake.wsdl_url, {"staff": {**USERS_OP, "empty_is_error": True}})
    with pytest.raises(SourceError) as err:
        read_all(strict, "staff")
    assert err.value.error_class == "empty"


def test_response_with_dtd_and_external_entity_is_refused(fake: WeaverSoapFake) -> None:
    fake.mode = "dtd"
    with pytest.raises(SourceError) as err:
        read_all(connector(fake.wsdl_url, {"staff": USERS_OP}), "staff")
    assert err.value.error_class == "protocol"
    assert "DTD" in err.value.message and "forbidden" in err.value.message
    assert "root:" not in str(err.value.detail)  # /etc/passwd never read


def test_wsdl_with_dtd_is_refused(fake: WeaverSoapFake) -> None:
    fake.mode = "wsdl_dtd"
    with pytest.raises(SourceError) as err:
        read_all(connector(fake.wsdl_url, {"staff": USERS_OP}), "staff")
    assert err.value.error_class == "protocol" and "DTD" in err.value.message
    assert fake.calls == []


def test_soap_fault_is_protocol_error_and_not_retried(fake: WeaverSoapFake) -> None:
    fake.mode = "fault"
    with pytest.raises(SourceError) as err:
        read_all(connector(fake.wsdl_url, {"staff": USERS_OP}), "staff")
    assert (err.value.error_class, err.value.retryable) == ("protocol", False)
    assert "NullPointerException" in err.value.message
    assert (err.value.source, err.value.kind) == ("erp", "staff")
    assert len(fake.calls) == 1


def test_soap_fault_about_credentials_is_auth(fake: WeaverSoapFake) -> None:
    fake.mode = "fault"
    fake.fault_string = "IP 不在白名单中, 非法访问"
    with pytest.raises(SourceError) as err:
        read_all(connector(fake.wsdl_url, {"staff": USERS_OP}), "staff")
    assert err.value.error_class == "auth"
    assert looks_like_auth_refusal("wsse:FailedAuthentication") and not looks_like_auth_refusal("NPE")


def test_http_500_is_retried_then_http_error(fake: WeaverSoapFake) -> None:
    fake.mode = "http500"
    with pytest.raises(SourceError) as err:
        read_all(connector(fake.wsdl_url, {"staff": USERS_OP}), "staff")
    assert (err.value.error_class, err.value.retryable) == ("http", True)
    assert len(fake.calls) == 2  # retries.max_attempts


def test_connection_refused_is_transport() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(SourceError) as err:
        read_all(connector(f"http://127.0.0.1:{port}/services/HrmService?wsdl", {"staff": USERS_OP}), "staff")
    assert (err.value.error_class, err.value.retryable) == ("transport", True)


def test_wsdl_file_relative_to_config_and_endpoint_override(fake: WeaverSoapFake, tmp_path: Path) -> None:
    # A saved WSDL naming an address that does not answer: `endpoint` says where the service is.
    (tmp_path / "HrmService.wsdl").write_text(build_wsdl("http://127.0.0.1:9/services/HrmService"),
                                              encoding="utf-8")
    conn = connector("HrmService.wsdl", {"staff": USERS_OP}, endpoint=fake.address, base_dir=tmp_path)
    assert len(read_all(conn, "staff")) == 3


def test_wsse_username_token_is_sent_and_password_is_secret(fake: WeaverSoapFake) -> None:
    conn = connector(fake.wsdl_url, {"staff": USERS_OP}, wsse={"username": "sync", "password": "s3cret"})
    read_all(conn, "staff")
    body = fake.bodies[-1].decode()
    assert "UsernameToken" in body and "<wsse:Username>sync</wsse:Username>" in body and "s3cret" in body
    assert "wsse.password" in SoapConnector.secret_fields


def test_config_errors_name_the_key(fake: WeaverSoapFake) -> None:
    with pytest.raises(ConfigError, match="operations"):
        parse_config({"sources": {"erp": {"connector": "soap", "wsdl": fake.wsdl_url,
                                          "provides": ["staff", "org_units"],
                                          "operations": {"staff": USERS_OP}}}}, path=None)
    with pytest.raises(ConfigError, match="incremental_arg"):
        connector(fake.wsdl_url, {"staff": {**USERS_OP, "incremental_arg": "in5"}})
    unknown = connector(fake.wsdl_url, {"staff": {**USERS_OP, "operation": "dropAll"}})
    with pytest.raises(SourceError) as err:
        read_all(unknown, "staff")
    assert err.value.error_class == "config" and "dropAll" in err.value.message
