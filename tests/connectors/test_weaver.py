"""The Weaver presets: weaver-soap against the local HrmService fake, weaver-rest against a
`responses` fake of the E9 REST API; both through the builtin `weaver` mapping."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
import responses

from connectors import get_connector_class
from connectors.base import Connector, SourceError
from connectors.vendors.weaver import DEFAULT_REST_PATHS, _hex_digest, weaver_gender
from mappings.base import MappingContext, MappingError
from mappings.loader import load_mapping
from sync.config import ConfigError, parse_config
from tests.fakes.weaver_soap import WeaverSoapFake, sample_org

BASE = "http://oa.example.com"
CONFIG_KEY = "weaver-config-key"
NOW = 1_717_000_000.123  # fixed clock → ts "1717000000123"


@pytest.fixture
def fake() -> Iterator[WeaverSoapFake]:
    with WeaverSoapFake(**sample_org()) as server:
        yield server


def build(connector: str, clock: Any = None, **block: Any) -> Connector:
    block = {"connector": connector, "provides": ["org_units", "staff"],
             "retries": {"max_attempts": 1}, **block}
    loaded = parse_config({"sources": {"oa": block}}, path=None).sources["oa"].block
    cls = get_connector_class(connector)
    return cls("oa", loaded, clock=clock) if clock else cls("oa", loaded)


def canonical(conn: Connector, kind: str, since: str | None = None) -> list[dict[str, Any]]:
    mapping = load_mapping(conn.default_mapping)
    return [mapping.map(kind, raw, MappingContext()).data
            for page in conn.read(kind, since=since) for raw in page.records]


def by(records: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {r[key]: r for r in records}


# --------------------------------------------------------------------------- weaver-soap


def test_soap_org_units_form_one_tree_with_prefixed_subcompanies(fake: WeaverSoapFake) -> None:
    units = by(canonical(build("weaver-soap", url=fake.wsdl_url), "org_units"), "code")
    assert set(units) == {"S1", "S2", "11", "12", "21", "22"}
    assert units["S1"] == {"code": "S1", "name": "某某集团有限公司", "parent_code": None,
                           "kind": "company", "status": "active"}
    assert units["S2"]["parent_code"] == "S1"
    assert units["11"]["parent_code"] == "S1"  # top department hangs under its subcompany
    assert units["12"]["parent_code"] == "11"  # sub-department under its department
    assert units["21"]["parent_code"] == "S2" and units["21"]["kind"] == "department"
    assert units["22"]["status"] == "dissolved"


def test_soap_staff_canonical_with_party_fields(fake: WeaverSoapFake) -> None:
    conn = build("weaver-soap", url=fake.wsdl_url)
    staff = by(canonical(conn, "staff"), "employee_no")
    assert staff["E001"] == {
        "employee_no": "E001", "name": "张伟", "gender": "1", "birth_date": "1980-01-01",
        "ethnicity": "01", "education": "20", "id_number": "110105198001010016",
        "mobile": "13800000001", "org_unit_code": "11", "position": "23",
        "employment_status": "active", "hired_on": "2005-07-01", "political_status": "01",
        "party_joined_on": "2003-06-15"}
    assert staff["E002"]["gender"] == "2"  # Weaver sex "1" is female
    assert (staff["E002"]["political_status"], staff["E002"]["party_joined_on"]) == ("02", "2024-01-10")
    assert staff["E002"]["employment_status"] == "probation"
    assert staff["E003"]["employment_status"] == "left" and staff["E003"]["party_joined_on"] is None


@pytest.mark.parametrize("code,status", [("0", "probation"), ("1", "active"), ("2", "temporary"),
                                         ("3", "probation"), ("4", "dismissed"), ("5", "left"),
                                         ("6", "retired"), ("7", "invalid")])
def test_status_codes(code: str, status: str) -> None:
    raw = {"workcode": "E9", "lastname": "某", "status": code}
    assert load_mapping("weaver").map("staff", raw, MappingContext()).data["employment_status"] == status


def test_unknown_status_quarantines() -> None:
    with pytest.raises(MappingError):
        load_mapping("weaver").map("staff", {"workcode": "E9", "lastname": "某", "status": "8"},
                                   MappingContext())


@pytest.mark.parametrize("sex,gender", [("1", "2"), ("0", "1"), ("2", "1"), ("女", "2"), ("男", "1"),
                                        ("", None), (None, None)])
def test_weaver_sex_differs_from_the_national_code(sex: Any, gender: str | None) -> None:
    assert weaver_gender(sex) == gender


@pytest.mark.parametrize("mode", ["empty", "empty_array"])
def test_soap_empty_answer_is_an_error_naming_the_allow_list(fake: WeaverSoapFake, mode: str) -> None:
    fake.mode = mode
    conn = build("weaver-soap", url=fake.wsdl_url)
    for kind in ("staff", "org_units"):
        with pytest.raises(SourceError) as err:
            list(conn.read(kind))
        assert err.value.error_class == "empty" and err.value.kind == kind
        assert "returned nothing" in err.value.message and "IP allow-list" in err.value.message


def test_soap_incremental_staff(fake: WeaverSoapFake) -> None:
    conn = build("weaver-soap", url=fake.wsdl_url)
    assert conn.is_incremental("staff") and not conn.is_incremental("org_units")
    [page] = conn.read("staff", since="2024-03-01 08:30:00")
    assert fake.calls[-1] == ("getHrmUserInfo", [None, None, None, None, None, "2024-03-01"])
    assert [u["workcode"] for u in page.records] == ["E001", "E002"]
    assert page.cursor == "2024-04-01"
    # Nothing changed since: no page, and no error because the OA still answers.
    assert list(conn.read("staff", since="2024-05-01")) == []
    fake.mode = "empty"  # refused: the probe tells it apart from "nothing changed"
    with pytest.raises(SourceError) as err:
        list(conn.read("staff", since="2024-05-01"))
    assert err.value.error_class == "empty"


def test_soap_filters_are_sent_as_validated_id_lists(fake: WeaverSoapFake) -> None:
    conn = build("weaver-soap", url=fake.wsdl_url, subcompany_ids=[2], department_ids=["21", 22])
    staff = canonical(conn, "staff")
    assert fake.calls[-1][1][2:4] == ["2", "21,22"]
    assert [s["employee_no"] for s in staff] == ["E002"]
    codes = {u["code"] for u in canonical(conn, "org_units")}
    assert fake.calls[-1] == ("getHrmDepartmentInfo", [None, "2"])
    assert codes == {"S2", "21", "22"}


@pytest.mark.parametrize("ids", [["1) or 1=1 --"], "1,2", [0], [-3], [True], [1.5], ["１"]])
def test_id_filters_refuse_anything_but_positive_integers(ids: Any) -> None:
    with pytest.raises(ConfigError, match="subcompany_ids"):
        build("weaver-soap", url="http://oa/services/HrmService?wsdl", subcompany_ids=ids)


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="provides"):
        build("weaver-soap", url="http://oa/x?wsdl", provides=["party_orgs"])
    with pytest.raises(ConfigError, match="client_ip"):
        build("weaver-soap", url="http://oa/x?wsdl", client_ip="oa.example.com")
    with pytest.raises(ConfigError, match="config_key"):
        build("weaver-rest", base_url=BASE)


def test_education_levels_translate_oa_ids(fake: WeaverSoapFake) -> None:
    fake.users[0]["educationlevel"] = "6"
    conn = build("weaver-soap", url=fake.wsdl_url, education_levels={"6": "本科"})
    assert by(canonical(conn, "staff"), "employee_no")["E001"]["education"] == "20"


# --------------------------------------------------------------------------- weaver-rest


def rest_items() -> dict[str, list[dict[str, Any]]]:
    """sample_org() as E9 REST answers it: own field names, 男/女, "" for unknown."""
    org = sample_org()

    def text(value: Any) -> str:
        return "" if value is None else str(value)

    subcompanies = [{"id": s["subcompanyid"], "subcompanyname": s["shortname"],
                     "subcompanydesc": s["fullname"], "supsubcomid": s["supsubcompanyid"],
                     "canceled": text(s["canceled"]), "modified": s["lastChangdate"] + " 09:00:00"}
                    for s in org["subcompanies"]]
    departments = [{"id": d["departmentid"], "departmentmark": d["shortname"],
                    "departmentname": d["fullname"], "subcompanyid1": d["subcompanyid"],
                    "supdepid": d["supdepartmentid"], "canceled": d["canceled"]}
                   for d in org["departments"]]
    users = [{"id": u["userid"], "sex": "女" if u["sex"] == "1" else "男",
              "companystartdate": u["startdate"], "modified": u["lastChangdate"] + " 12:00:00",
              "created": "2020-01-01 00:00:00",
              **{k: text(u.get(k)) for k in ("workcode", "lastname", "loginid", "status",
                                             "subcompanyid1", "departmentid", "jobtitle", "managerid",
                                             "mobile", "email", "certificatenum", "folk", "birthday",
                                             "bepartydate", "policy", "educationlevel")}}
             for u in org["users"]]
    return {"users": users, "departments": departments, "subcompanies": subcompanies}


class RestFake:
    """A `responses` callback per endpoint: checks the token, pages `dataList` by curpage /
    pagesize, filters by `modified` ≥, answers the E9 envelope."""

    def __init__(self, items: dict[str, list[dict[str, Any]]], algorithm: str = "md5") -> None:
        self.items = items
        self.algorithm = algorithm
        self.params: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.announce_extra = 0
        self.answer: dict[str, Any] | None = None

    def register(self, rsps: responses.RequestsMock) -> None:
        for which, path in DEFAULT_REST_PATHS.items():
            rsps.add_callback("POST", BASE + path, callback=lambda req, w=which: self.serve(w, req))

    def serve(self, which: str, request: Any) -> tuple[int, dict[str, str], str]:
        ts, key = request.headers["ts"], request.headers["key"]
        self.headers.append({"ts": ts, "key": key})
        expected = (hashlib.md5 if self.algorithm == "md5" else lambda d: hashlib.new("sm3", d))(
            (CONFIG_KEY + ts).encode()).hexdigest().upper()
        if key != expected:
            return 200, {}, json.dumps({"code": "-1", "msg": "token校验失败"}, ensure_ascii=False)
        if self.answer is not None:
            return 200, {}, json.dumps(self.answer, ensure_ascii=False)
        params = json.loads(parse_qs(request.body)["params"][0])
        self.params.append(params)
        rows = [r for r in self.items[which] if r.get("modified", "") >= params.get("modified", "")]
        page, size = int(params["curpage"]), int(params["pagesize"])
        body = {"code": "1", "data": {"totalSize": len(rows) + self.announce_extra, "page": page,
                                      "pageSize": size, "dataList": rows[(page - 1) * size: page * size]}}
        return 200, {"Content-Type": "application/json"}, json.dumps(body, ensure_ascii=False)


@pytest.fixture
def rest() -> Iterator[RestFake]:
    fake = RestFake(rest_items())
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake.register(rsps)
        rsps.add_passthru("http://127.0.0.1")  # the SOAP fake is a real local server
        yield fake


def rest_conn(**block: Any) -> Connector:
    return build("weaver-rest", clock=lambda: NOW, base_url=BASE, config_key=CONFIG_KEY, **block)


def test_rest_token_header_is_uppercase_md5_of_key_and_ms_timestamp(rest: RestFake) -> None:
    canonical(rest_conn(), "staff")
    assert rest.headers[0] == {"ts": "1717000000123",
                               "key": hashlib.md5(b"weaver-config-key1717000000123").hexdigest().upper()}


def test_rest_sm3_token(rest: RestFake) -> None:
    # GB/T 32905 test vector: SM3("abc").
    assert _hex_digest("sm3", b"abc") == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    rest.algorithm = "sm3"
    assert len(canonical(rest_conn(token_algorithm="sm3"), "staff")) == 3


def test_rest_wrong_key_is_reported_with_the_vendor_message(rest: RestFake) -> None:
    conn = build("weaver-rest", base_url=BASE, config_key="wrong")
    with pytest.raises(SourceError) as err:
        list(conn.read("staff"))
    assert err.value.error_class == "auth" and "token校验失败" in err.value.message


def test_rest_error_code_is_a_source_error(rest: RestFake) -> None:
    rest.answer = {"code": "0", "errMsg": "参数错误"}
    with pytest.raises(SourceError) as err:
        list(rest_conn().read("org_units"))
    assert err.value.error_class == "protocol" and "参数错误" in err.value.message


def test_rest_gives_the_same_canonical_records_as_soap(rest: RestFake, fake: WeaverSoapFake) -> None:
    soap, rest_c = build("weaver-soap", url=fake.wsdl_url), rest_conn()
    for kind, key in (("org_units", "code"), ("staff", "employee_no")):
        assert by(canonical(rest_c, kind), key) == by(canonical(soap, kind), key)


def test_rest_pages_by_curpage_and_checks_total(rest: RestFake) -> None:
    base = rest.items["users"][0]
    rest.items["users"] = [{**base, "workcode": f"E{n:03d}", "certificatenum": ""} for n in range(5)]
    pages = list(rest_conn(pagesize=2).read("staff"))
    assert [len(p.records) for p in pages] == [2, 2, 1]
    assert [(p["curpage"], p["pagesize"]) for p in rest.params] == [(1, 2), (2, 2), (3, 2)]
    rest.announce_extra = 3
    with pytest.raises(SourceError) as err:
        list(rest_conn(pagesize=2).read("staff"))
    assert err.value.error_class == "truncated"


def test_rest_incremental_sends_modified_and_moves_cursor(rest: RestFake) -> None:
    pages = list(rest_conn().read("staff", since="2024-03-01 12:00:00"))
    assert rest.params[-1]["modified"] == "2024-03-01 12:00:00"
    assert sorted(u["workcode"] for p in pages for u in p.records) == ["E001", "E002"]
    assert pages[-1].cursor == "2024-04-01 12:00:00"


def test_rest_empty_full_pull_is_an_error(rest: RestFake) -> None:
    rest.items["users"] = []
    with pytest.raises(SourceError) as err:
        list(rest_conn().read("staff"))
    assert err.value.error_class == "empty"
    assert list(rest_conn().read("staff", since="2024-01-01")) != []  # pages with the cursor only


def test_rest_paths_overridable_and_key_secret() -> None:
    conn = rest_conn(paths={"users": "/proxy/users"})
    assert conn.config["paths"]["users"] == "/proxy/users"
    assert conn.config["paths"]["departments"] == DEFAULT_REST_PATHS["departments"]
    assert "config_key" in conn.secret_fields
