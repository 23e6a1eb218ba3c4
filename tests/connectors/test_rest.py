"""The generic REST connector: config, every pagination style, truncation and loop detection, a page's cursor."""
from __future__ import annotations

import json
from typing import Any

import pytest
import responses
from marshmallow import ValidationError

from connectors.base import SourceError
from connectors.registry import get_connector_class
from connectors.rest import RestConnector, RestSourceSchema, _later, _latest
from tests.fakes.http_source import PagedApi, make_people

BASE = "http://hr.example.com/api"
STAFF = f"{BASE}/staff"


def make_connector(endpoint: dict[str, Any] | None = None, **block: Any) -> RestConnector:
    config = {"connector": "rest", "url": BASE, "provides": ["staff"],
              "endpoints": {"staff": {"path": "/staff", **(endpoint or {})}}, **block}
    return RestConnector("hr", RestSourceSchema().load(config))


def serve(api: PagedApi, method: str = "GET", url: str = STAFF) -> PagedApi:
    responses.add_callback(method, url, callback=api)
    return api


def read_all(connector: RestConnector, kind: str = "staff", **kwargs: Any) -> list:
    return list(connector.read(kind, **kwargs))


def workcodes(pages: list) -> list[str]:
    return [r["workcode"] for page in pages for r in page.records]


WEAVER_PAGING = {"type": "page_number", "page_param": "page", "size_param": "page_size",
                 "page_size": 20, "total_records_path": "data.totalSize"}


# --------------------------------------------------------------------------- config


def test_design_example_config_loads_and_is_registered():
    config = RestSourceSchema().load({
        "connector": "rest", "url": BASE, "auth": {"type": "bearer", "token": "t"},
        "provides": ["org_units", "staff"], "mapping": "canonical",
        "endpoints": {"org_units": {"path": "/org_units", "records_path": "data"},
                      "staff": {"path": "/staff", "records_path": "data",
                                "incremental_param": "modified_since"}},
        "pagination": {"type": "page_number", "page_param": "page", "size_param": "page_size",
                       "page_size": 500, "start": 1, "total_pages_path": "total_pages"},
    })
    assert config["pagination"]["page_size"] == 500
    assert config["endpoints"]["staff"]["method"] == "GET"
    assert get_connector_class("rest") is RestConnector
    assert "auth.token" in RestConnector.secret_fields


def test_config_errors_name_the_key():
    with pytest.raises(ValidationError) as caught:
        RestSourceSchema().load({"connector": "rest", "url": BASE, "provides": ["staff", "org_units"],
                                 "endpoints": {"staff": {"path": "/staff"}}})
    assert caught.value.messages == {"endpoints": ["no endpoint for org_units"]}
    with pytest.raises(ValidationError) as caught:
        RestSourceSchema().load({"connector": "rest", "url": BASE, "provides": ["staff"],
                                 "endpoints": {"staff": {"path": "/s"}},
                                 "pagination": {"type": "cursor"}})
    assert caught.value.messages == {"pagination": {"cursor_path": ["required for pagination type cursor"]}}


# --------------------------------------------------------------------------- pagination styles


@responses.activate
def test_page_number_with_total_records_weaver_envelope():
    people = make_people(45)
    api = serve(PagedApi(people, style="page_number"))
    pages = read_all(make_connector({"records_path": "data.dataList"}, pagination=WEAVER_PAGING))

    assert [len(p.records) for p in pages] == [20, 20, 5]
    assert workcodes(pages) == [p["workcode"] for p in people]
    assert [c["page"] for c in api.calls] == ["1", "2", "3"]
    assert {c["page_size"] for c in api.calls} == {"20"}
    assert [p.info["page"] for p in pages] == [1, 2, 3]
    assert all(p.cursor is None for p in pages)


@responses.activate
def test_page_number_without_totals_stops_at_short_or_empty_page():
    api = serve(PagedApi(make_people(40), style="page_number"))
    paging = {**WEAVER_PAGING, "total_records_path": None}
    pages = read_all(make_connector({"records_path": "data.dataList"}, pagination=paging))

    # 40 = two full pages; the third (empty) request ends the stream and yields nothing.
    assert [len(p.records) for p in pages] == [20, 20]
    assert len(api.calls) == 3


@responses.activate
def test_offset_pagination():
    api = serve(PagedApi(make_people(25), style="offset"))
    pages = read_all(make_connector(
        {"records_path": "items"},
        pagination={"type": "offset", "page_size": 10, "total_records_path": "total"}))

    assert [len(p.records) for p in pages] == [10, 10, 5]
    assert [(c["offset"], c["limit"]) for c in api.calls] == [("0", "10"), ("10", "10"), ("20", "10")]


@responses.activate
def test_cursor_pagination_feishu_style():
    people = make_people(7)
    api = serve(PagedApi(people, style="cursor"))
    pages = read_all(make_connector(
        {"records_path": "data.items"},
        pagination={"type": "cursor", "cursor_param": "page_token", "cursor_path": "data.page_token",
                    "has_more_path": "data.has_more", "size_param": "page_size", "page_size": 3}))

    assert workcodes(pages) == [p["workcode"] for p in people]
    assert [c.get("page_token") for c in api.calls] == [None, "tok3", "tok6"]


@responses.activate
def test_next_link_odata_and_link_header():
    people = make_people(12)
    serve(PagedApi(people, style="next_link", default_page_size=5))
    pages = read_all(make_connector({"records_path": "d.results"},
                                    pagination={"type": "next_link", "next_link_path": "d.__next"}))
    assert [len(p.records) for p in pages] == [5, 5, 2]
    assert workcodes(pages) == [p["workcode"] for p in people]

    responses.reset()
    api = serve(PagedApi(people, style="link_header", default_page_size=5))
    pages = read_all(make_connector(pagination={"type": "next_link", "next_link_path": "link-header"}))
    assert workcodes(pages) == [p["workcode"] for p in people]
    assert [c.get("after") for c in api.calls] == [None, "5", "10"]


@responses.activate
def test_no_pagination_single_request_bare_list():
    responses.get(STAFF, json=[{"workcode": "E1"}, {"workcode": "E2"}])
    pages = read_all(make_connector())
    assert workcodes(pages) == ["E1", "E2"] and len(responses.calls) == 1


@responses.activate
def test_endpoint_pagination_overrides_source_pagination():
    api = serve(PagedApi(make_people(3), style="offset"))
    pages = read_all(make_connector(
        {"records_path": "items", "pagination": {"type": "offset", "page_size": 2}},
        pagination=WEAVER_PAGING))
    assert [len(p.records) for p in pages] == [2, 1]
    assert "page" not in api.calls[0] and api.calls[0]["limit"] == "2"


@responses.activate
def test_post_endpoint_sends_params_as_json_body():
    bodies = []

    def dingtalk(request):
        body = json.loads(request.body)
        bodies.append(body)
        more = body["cursor"] == 0
        return 200, {}, json.dumps({"errcode": 0, "result": {
            "has_more": more, "next_cursor": 100 if more else None,
            "list": [{"userid": f"u{body['cursor']}"}]}})

    responses.add_callback("POST", STAFF, callback=dingtalk)
    pages = read_all(make_connector(
        {"method": "POST", "records_path": "result.list", "params": {"dept_id": 1}},
        pagination={"type": "cursor", "cursor_path": "result.next_cursor", "start": 0,
                    "has_more_path": "result.has_more", "size_param": "size", "page_size": 100}))
    assert [r["userid"] for p in pages for r in p.records] == ["u0", "u100"]
    assert bodies == [{"dept_id": 1, "size": 100, "cursor": 0},
                      {"dept_id": 1, "size": 100, "cursor": 100}]


# --------------------------------------------------------------------------- streaming, incremental


@responses.activate
def test_read_streams_one_request_per_page():
    serve(PagedApi(make_people(60), style="page_number"))
    pages = make_connector({"records_path": "data.dataList"}, pagination=WEAVER_PAGING).read("staff")
    first = next(pages)
    assert len(first.records) == 20 and len(responses.calls) == 1
    pages.close()


@responses.activate
def test_incremental_param_and_cursor_field():
    api = serve(PagedApi(make_people(30), style="page_number"))
    connector = make_connector({"records_path": "data.dataList", "incremental_param": "modified_since",
                                "cursor_field": "modified", "params": {"status": "all"}},
                               pagination=WEAVER_PAGING)
    pages = read_all(connector, since="2024-05-01 00:00:00")

    assert {c["modified_since"] for c in api.calls} == {"2024-05-01 00:00:00"}
    assert {c["status"] for c in api.calls} == {"all"}
    # make_people: person n is modified on day 1 + n % 28; page 1 holds 1..20, page 2 21..30.
    assert [p.cursor for p in pages] == ["2024-05-21 10:00:00", "2024-05-28 10:00:00"]

    api.calls.clear()
    read_all(connector)
    assert "modified_since" not in api.calls[0]


# --------------------------------------------------------------------------- truncation, protocol


@responses.activate
def test_short_page_in_the_middle_is_truncated_before_it_is_yielded():
    serve(PagedApi(make_people(60), style="page_number", drop_from_page=2))
    pages = make_connector({"records_path": "data.dataList"}, pagination=WEAVER_PAGING).read("staff")

    assert len(next(pages).records) == 20
    with pytest.raises(SourceError) as caught:
        next(pages)
    err = caught.value
    assert (err.error_class, err.source, err.kind) == ("truncated", "hr", "staff")
    assert "page 2 of 3 has 10 records, expected 20" in err.message


@responses.activate
def test_total_pages_says_more_but_page_comes_back_empty():
    responses.get(STAFF, json={"data": [{"workcode": f"E{i}"} for i in range(2)], "total_pages": 3})
    responses.get(STAFF, json={"data": [], "total_pages": 3})
    paging = {"type": "page_number", "page_size": 2, "total_pages_path": "total_pages"}
    with pytest.raises(SourceError) as caught:
        read_all(make_connector({"records_path": "data"}, pagination=paging))
    assert caught.value.error_class == "truncated" and "page 2 of 3 has 0 records" in caught.value.message


@responses.activate
def test_announced_total_differs_from_received():
    serve(PagedApi(make_people(40), style="page_number", announce_extra=3))
    with pytest.raises(SourceError) as caught:
        read_all(make_connector({"records_path": "data.dataList"}, pagination=WEAVER_PAGING))
    assert caught.value.error_class == "truncated"
    assert caught.value.message == "received 40 records, the source announced 43"


@responses.activate
def test_empty_source_with_total_zero_is_not_an_error():
    api = serve(PagedApi([], style="page_number"))
    assert read_all(make_connector({"records_path": "data.dataList"}, pagination=WEAVER_PAGING)) == []
    assert len(api.calls) == 1


@responses.activate
def test_missing_records_path_is_protocol_error_with_vendor_reason():
    responses.get(STAFF, json={"code": "0", "msg": "token无效或已过期"})
    with pytest.raises(SourceError) as caught:
        read_all(make_connector({"records_path": "data.dataList"}))
    err = caught.value
    assert err.error_class == "protocol"
    assert "records_path 'data.dataList' not found" in err.message and "token无效或已过期" in err.message


@responses.activate
def test_records_that_are_not_objects_are_protocol_errors():
    responses.get(STAFF, json={"data": ["E1", "E2"]})
    responses.get(STAFF, json={"data": {"workcode": "E1"}})
    connector = make_connector({"records_path": "data"})
    for expected in ("item 0 at records_path 'data'", "records_path 'data' of"):
        with pytest.raises(SourceError) as caught:
            read_all(connector)
        assert caught.value.error_class == "protocol" and expected in caught.value.message


@responses.activate
def test_server_ignoring_page_param_is_caught():
    serve(PagedApi(make_people(50), style="page_number", ignore_paging=True))
    paging = {**WEAVER_PAGING, "total_records_path": None}
    with pytest.raises(SourceError) as caught:
        read_all(make_connector({"records_path": "data.dataList"}, pagination=paging))
    assert caught.value.error_class == "protocol" and "repeats the previous page" in caught.value.message
    assert len(responses.calls) == 2


@responses.activate
def test_same_cursor_twice_is_caught():
    responses.get(STAFF, json={"items": [{"id": 1}], "next": "abc"})
    responses.get(STAFF, json={"items": [{"id": 2}], "next": "abc"})
    with pytest.raises(SourceError) as caught:
        read_all(make_connector({"records_path": "items"},
                                pagination={"type": "cursor", "cursor_path": "next"}))
    assert caught.value.error_class == "protocol" and "same cursor twice" in caught.value.message


@responses.activate
def test_max_pages_bound():
    serve(PagedApi(make_people(100), style="offset"))
    with pytest.raises(SourceError) as caught:
        read_all(make_connector({"records_path": "items"},
                                pagination={"type": "offset", "page_size": 10, "max_pages": 3}))
    assert caught.value.error_class == "truncated" and "stopped after 3 pages" in caught.value.message
    assert len(responses.calls) == 3


@responses.activate
def test_transient_503_mid_pull_is_retried(monkeypatch):
    sleeps: list[float] = []
    monkeypatch.setattr("connectors.http.time.sleep", sleeps.append)
    api = PagedApi(make_people(30), style="page_number")
    failed = []

    def flaky(request):
        if "page=2" in request.url and not failed:
            failed.append(True)
            return 503, {}, "<html>Service Unavailable</html>"
        return api(request)

    responses.add_callback("GET", STAFF, callback=flaky)
    pages = read_all(make_connector({"records_path": "data.dataList"}, pagination=WEAVER_PAGING))
    assert [len(p.records) for p in pages] == [20, 10] and len(sleeps) == 1


@responses.activate
def test_check_reads_the_first_page_only():
    serve(PagedApi(make_people(60), style="page_number"))
    make_connector({"records_path": "data.dataList"}, pagination=WEAVER_PAGING).check()
    assert len(responses.calls) == 1


# -- a page's cursor ------------------------------------------------------------------------

def _folded(cursor: Any, values: list[Any]) -> Any:
    for value in values:
        cursor = _later(cursor, value)
    return cursor


@pytest.mark.parametrize("cursor, values, latest", [
    (None, ["2024-03-01T08:00:00", "2024-05-01T00:00:00", "2024-04-30T23:59:59"], "2024-05-01T00:00:00"),
    ("2024-06-01", ["2024-03-01", None, "2024-05-01"], "2024-06-01"),
    (None, [1700000000000, 1600000000000, 1700000000001], 1700000000001),
    (None, ["999", "1700000000000", "15"], "1700000000000"),  # numbers as text: numerically
    (None, [" -5", "-7", "1e-5"], "1e-5"),  # a sign or an exponent still reads as a number
    (None, ["2024-01-01", "20240101", "2024-01-02 00:00:00"], "20240101"),  # a mix: the fold's answer
    (None, ["nan", "5", "3"], "5"),  # NaN loses every comparison in the fold
    (None, [None, None], None),
    ("2024-01-01", [], "2024-01-01"),
])
def test_a_pages_cursor_is_the_folds_answer(cursor: Any, values: list[Any], latest: Any) -> None:
    assert _latest(cursor, values) == _folded(cursor, values) == latest


def test_a_pages_cursor_agrees_with_the_fold_on_random_mixes() -> None:
    import random

    rng = random.Random(6)
    kinds = [lambda: None, lambda: rng.randint(-10**13, 10**13), lambda: str(rng.randint(0, 10**13)),
             lambda: f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
             lambda: f"2024-{rng.randint(1, 12):02d}-01T{rng.randint(0, 23):02d}:00:00",
             lambda: rng.choice(["", "n/a", " -3", "1e-5", "nan", "inf", "1_000", "2024-01-01e"]),
             lambda: rng.random()]
    for _ in range(3000):
        pool = rng.sample(kinds, rng.randint(1, 3))
        values = [rng.choice(pool)() for _ in range(rng.randint(0, 8))]
        cursor = rng.choice(pool)()
        assert _latest(cursor, values) == _folded(cursor, values), (cursor, values)
